"""Crop offsets, their inclusive range, and per-sample crops that keep every stacked frame aligned."""

from __future__ import annotations

import pytest
import torch as th

from sb3_gaara.common.crops import center_crop, center_offset, crop, random_crop, random_crop_offsets


def test_center_offset_of_the_paper():
    # 100 px renders, 84 px crops (ALGORITHM.md "Data").
    assert center_offset(100, 84) == 8
    assert center_offset(20, 16) == 2
    # Odd margins round down: 5 px, 2 px crop -> offset 1 (pixels 1 and 2).
    assert center_offset(5, 2) == 1
    assert center_offset(84, 84) == 0


def test_center_crop_values():
    obs = th.arange(25).reshape(1, 1, 5, 5)
    expected = th.tensor([[6, 7, 8], [11, 12, 13], [16, 17, 18]])
    assert th.equal(center_crop(obs, 3)[0, 0], expected)
    # The 100 -> 84 crop of the paper starts at row and column 8.
    big = th.arange(100 * 100).reshape(1, 1, 100, 100)
    cropped = center_crop(big, 84)
    assert cropped.shape == (1, 1, 84, 84)
    assert cropped[0, 0, 0, 0].item() == 8 * 100 + 8
    assert cropped[0, 0, -1, -1].item() == 91 * 100 + 91


def test_center_crop_keeps_leading_dims_and_dtype():
    obs = th.randint(0, 256, (2, 3, 6, 20, 20), dtype=th.uint8)
    cropped = center_crop(obs, 16)
    assert cropped.shape == (2, 3, 6, 16, 16)
    assert cropped.dtype == th.uint8
    assert th.equal(cropped, obs[..., 2:18, 2:18])


def test_center_crop_of_full_size_is_identity():
    obs = th.randint(0, 256, (2, 6, 16, 16), dtype=th.uint8)
    assert th.equal(center_crop(obs, 16), obs)


def test_crop_values_by_hand():
    obs = th.arange(2 * 16).reshape(2, 1, 4, 4)
    top, left = th.tensor([1, 0]), th.tensor([2, 1])
    out = crop(obs, top, left, 2)
    assert th.equal(out[0, 0], th.tensor([[6, 7], [10, 11]]))
    assert th.equal(out[1, 0], th.tensor([[16 + 1, 16 + 2], [16 + 5, 16 + 6]]))


def test_crop_shares_the_offset_across_channels_and_matches_slicing():
    generator = th.Generator().manual_seed(0)
    obs = th.randint(0, 256, (5, 6, 20, 20), dtype=th.uint8, generator=generator)
    top = th.tensor([0, 4, 2, 1, 3])
    left = th.tensor([4, 0, 2, 3, 1])
    out = crop(obs, top, left, 16)
    assert out.shape == (5, 6, 16, 16)
    assert out.dtype == th.uint8
    assert out.is_contiguous()
    for i in range(5):
        t, l_ = int(top[i]), int(left[i])
        # Every channel (all stacked frames) of sample i is cut at the same place.
        assert th.equal(out[i], obs[i, :, t : t + 16, l_ : l_ + 16])


def test_random_crop_offsets_cover_the_inclusive_range():
    # 100 px, 84 px crop: offsets 0 .. 16 *inclusive* (the reference code never draws 16).
    generator = th.Generator().manual_seed(0)
    top, left = random_crop_offsets(5000, 100, 100, 84, generator=generator)
    assert top.shape == (5000,) and left.shape == (5000,)
    assert set(top.tolist()) == set(range(17))
    assert set(left.tolist()) == set(range(17))
    # Top and left are drawn independently, not as one shared value.
    assert not th.equal(top, left)


def test_random_crop_offsets_of_a_rectangular_image():
    generator = th.Generator().manual_seed(1)
    top, left = random_crop_offsets(2000, 18, 21, 16, generator=generator)
    assert set(top.tolist()) == {0, 1, 2}
    assert set(left.tolist()) == set(range(6))


def test_random_crop_offsets_when_the_crop_is_the_image():
    top, left = random_crop_offsets(7, 16, 16, 16)
    assert th.equal(top, th.zeros(7, dtype=top.dtype))
    assert th.equal(left, th.zeros(7, dtype=left.dtype))


def test_random_crop_returns_the_crop_at_its_offsets():
    generator = th.Generator().manual_seed(3)
    obs = th.randint(0, 256, (64, 6, 20, 20), dtype=th.uint8, generator=generator)
    out, top, left = random_crop(obs, 16, generator=th.Generator().manual_seed(4))
    assert th.equal(out, crop(obs, top, left, 16))
    assert int(top.min()) >= 0 and int(top.max()) <= 4
    assert int(left.min()) >= 0 and int(left.max()) <= 4
    # One offset per sample: 64 samples do not all share one offset.
    assert len(set(zip(top.tolist(), left.tolist(), strict=True))) > 1


def test_random_crop_is_reproducible_with_a_generator():
    obs = th.randint(0, 256, (8, 6, 20, 20), dtype=th.uint8)
    first = random_crop(obs, 16, generator=th.Generator().manual_seed(5))
    second = random_crop(obs, 16, generator=th.Generator().manual_seed(5))
    for a, b in zip(first, second, strict=True):
        assert th.equal(a, b)


def test_crop_larger_than_image_is_refused():
    obs = th.zeros(2, 6, 12, 20, dtype=th.uint8)
    with pytest.raises(ValueError, match=r"Cannot crop 16x16 pixels out of a 12x20 image.*image_size"):
        center_crop(obs, 16)
    with pytest.raises(ValueError, match=r"Cannot crop 16x16"):
        random_crop_offsets(2, 12, 20, 16)
    with pytest.raises(ValueError, match=r"Cannot crop 16x16"):
        crop(obs, th.zeros(2, dtype=th.long), th.zeros(2, dtype=th.long), 16)


def test_crop_needs_one_offset_per_sample_and_a_batch():
    obs = th.zeros(3, 6, 20, 20, dtype=th.uint8)
    with pytest.raises(ValueError, match=r"one top and one left offset per sample \(3\)"):
        crop(obs, th.zeros(2, dtype=th.long), th.zeros(2, dtype=th.long), 16)
    with pytest.raises(ValueError, match=r"\(batch, channels, height, width\)"):
        crop(obs[0], th.zeros(1, dtype=th.long), th.zeros(1, dtype=th.long), 16)

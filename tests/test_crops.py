"""Crop offsets, their inclusive range, and per-sample crops that keep every stacked frame aligned."""

from __future__ import annotations

import pytest
import torch as th

from sb3_gaara.common.crops import center_crop, center_offset, crop, random_crop, random_crop_offsets, random_shift, shift


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


# --- random shifts (DrQ) ---------------------------------------------------------------------------------------


def _shift_by_definition(image: th.Tensor, top: int, left: int, pad: int) -> th.Tensor:
    """One (C, H, W) image padded by ``pad`` with edge replication, cropped back at (top, left)."""
    height, width = image.shape[-2:]
    padded = th.nn.functional.pad(image[None].double(), (pad, pad, pad, pad), mode="replicate")[0]
    return padded[:, top : top + height, left : left + width]


@pytest.mark.parametrize("dtype", [th.uint8, th.float32])
def test_shift_is_replicate_padding_then_crop_for_every_offset(dtype):
    pad = 4
    offsets = [(top, left) for top in range(2 * pad + 1) for left in range(2 * pad + 1)]  # the whole range, 81 pairs
    images = th.randint(0, 256, (len(offsets), 6, 10, 12), generator=th.Generator().manual_seed(0)).to(dtype)
    top = th.tensor([o[0] for o in offsets])
    left = th.tensor([o[1] for o in offsets])
    shifted = shift(images, top, left, pad)
    assert shifted.shape == images.shape and shifted.dtype == dtype and shifted.is_contiguous()
    for b, (row, col) in enumerate(offsets):
        assert th.equal(shifted[b].double(), _shift_by_definition(images[b], row, col, pad)), (row, col)
    assert th.equal(shift(images, th.full_like(top, pad), th.full_like(left, pad), pad), images)  # the middle: no move
    assert th.equal(shift(images, th.zeros_like(top), th.zeros_like(left), 0), images)


def test_shift_by_hand():
    image = th.arange(9, dtype=th.uint8).reshape(1, 1, 3, 3)  # [[0 1 2] [3 4 5] [6 7 8]]
    # pad 1, offset (0, 2): one row down (the top row repeated) and one column left (the right column repeated)
    out = shift(image, th.tensor([0]), th.tensor([2]), pad=1)
    assert out[0, 0].tolist() == [[1, 2, 2], [1, 2, 2], [4, 5, 5]]


def test_random_shift_draws_each_offset_uniformly_per_sample_and_shares_it_across_channels():
    pad, batch = 4, 4000
    generator = th.Generator().manual_seed(3)
    images = th.randint(0, 256, (batch, 9, 12, 12), generator=th.Generator().manual_seed(1), dtype=th.uint8)
    out = random_shift(images, pad=pad, generator=generator)
    replay = th.Generator().manual_seed(3)  # the same draws: rows first, then columns
    top = th.randint(0, 2 * pad + 1, (batch,), generator=replay)
    left = th.randint(0, 2 * pad + 1, (batch,), generator=replay)
    assert th.equal(out, shift(images, top, left, pad))
    assert set(top.tolist()) == set(left.tolist()) == set(range(2 * pad + 1))  # 0 .. 2 * pad inclusive
    counts = th.bincount(top * (2 * pad + 1) + left, minlength=(2 * pad + 1) ** 2).double()
    assert counts.min() > 0.5 * batch / 81 and counts.max() < 1.5 * batch / 81  # every pair, about equally often
    for b in range(3):  # the same offset for every stacked frame of a sample
        for frame in range(3):
            channels = slice(3 * frame, 3 * frame + 3)
            expected = _shift_by_definition(images[b, channels], int(top[b]), int(left[b]), pad)
            assert th.equal(out[b, channels].double(), expected)


def test_random_shift_keeps_float_batches_and_is_exported():
    import sb3_gaara

    images = th.rand(5, 3, 8, 8)
    out = sb3_gaara.random_shift(images, pad=2)
    assert out.dtype == th.float32 and out.shape == images.shape


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: random_shift(th.zeros(2, 3, 8, 8), pad=-1), "pad must be a non-negative integer"),
        (lambda: random_shift(th.zeros(3, 8, 8)), r"\(batch, channels, height, width\)"),
        (lambda: shift(th.zeros(2, 3, 8, 8), th.tensor([0, 9]), th.tensor([0, 0]), pad=4), r"0 \.\. 2 \* pad = 8"),
        (lambda: shift(th.zeros(2, 3, 8, 8), th.tensor([0]), th.tensor([0]), pad=4), "one top and one left offset"),
    ],
)
def test_bad_shift_arguments_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()

"""The auxiliary losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch as th

from sb3_gaara.common.losses import preprocess_reconstruction_target, reconstruction_loss
from sb3_gaara.gaara.comparison import anneal_comparison_lambda, comparison_logits, info_nce_loss


def test_five_bit_target_floor_part_with_isolated_noise():
    obs = th.tensor([0, 7, 8, 255], dtype=th.uint8)
    target = preprocess_reconstruction_target(obs, generator=th.Generator().manual_seed(0))
    noise = th.rand(4, generator=th.Generator().manual_seed(0)) / 32
    # floor(x / 8) / 32 - 0.5: 0 and 7 share the lowest bin, 8 opens the next, 255 is in the last (31).
    expected_floor = th.tensor([-0.5, -0.5, 1 / 32 - 0.5, 31 / 32 - 0.5])
    assert th.allclose(target - noise, expected_floor, atol=1e-7, rtol=0)
    assert target.dtype == th.float32


def test_five_bit_target_noise_stays_inside_its_bin():
    obs = th.tensor([0, 7, 8, 255], dtype=th.uint8).repeat(10_000)
    target = preprocess_reconstruction_target(obs, generator=th.Generator().manual_seed(1))
    floors = th.tensor([-0.5, -0.5, 1 / 32 - 0.5, 31 / 32 - 0.5]).repeat(10_000)
    noise = target - floors
    assert float(noise.min()) >= 0.0
    assert float(noise.max()) < 1 / 32 + 1e-7
    # Uniform over the bin: it is not constant and spreads over most of [0, 1/32).
    assert float(noise.max() - noise.min()) > 0.9 / 32
    assert float(noise.mean()) == pytest.approx(1 / 64, abs=2e-4)
    # The whole target lies in [-0.5, 0.5).
    assert float(target.min()) >= -0.5 and float(target.max()) < 0.5


def test_five_bit_target_of_float_images_equals_uint8():
    obs = th.tensor([[0, 7, 8, 255, 100, 129]], dtype=th.uint8)
    as_uint8 = preprocess_reconstruction_target(obs, generator=th.Generator().manual_seed(2))
    as_float = preprocess_reconstruction_target(obs.float(), generator=th.Generator().manual_seed(2))
    assert th.equal(as_uint8, as_float)


def test_five_bit_target_in_channels_last_draws_the_noise_in_memory_order():
    obs = th.randint(0, 256, (2, 3, 4, 5), dtype=th.uint8, generator=th.Generator().manual_seed(4))
    target = preprocess_reconstruction_target(obs, generator=th.Generator().manual_seed(3), memory_format=th.channels_last)
    assert target.is_contiguous(memory_format=th.channels_last) and not target.is_contiguous()
    floors = th.div(obs, 8, rounding_mode="floor").float() / 32 - 0.5
    noise = th.rand(obs.numel(), generator=th.Generator().manual_seed(3)) / 32
    assert th.allclose((target - floors).permute(0, 2, 3, 1).reshape(-1), noise, atol=1e-7, rtol=0)


def test_other_bit_depths():
    # 3 bits: bins of 32 values, 8 bins; 255 -> bin 7 -> 7/8 - 0.5.
    obs = th.tensor([31, 32, 255], dtype=th.uint8)
    target = preprocess_reconstruction_target(obs, bits=3, generator=th.Generator().manual_seed(0))
    noise = th.rand(3, generator=th.Generator().manual_seed(0)) / 8
    assert th.allclose(target - noise, th.tensor([-0.5, 1 / 8 - 0.5, 7 / 8 - 0.5]), atol=1e-7, rtol=0)


def test_reconstruction_loss_by_hand():
    reconstruction = th.tensor([[1.0, 2.0], [0.0, -1.0]])
    target = th.tensor([[0.0, 0.0], [0.0, 1.0]])
    latent = th.tensor([[3.0, 4.0], [1.0, 0.0]])
    # MSE = (1 + 4 + 0 + 4) / 4 = 2.25; latent penalty = mean(0.5 * [25, 1]) = 6.5.
    loss = reconstruction_loss(reconstruction, target, latent, decoder_latent_lambda=0.1)
    assert loss.item() == pytest.approx(2.25 + 0.1 * 6.5, abs=1e-6)
    assert reconstruction_loss(reconstruction, target, latent, decoder_latent_lambda=0.0).item() == pytest.approx(2.25)


def test_reconstruction_loss_gradient_reaches_the_latent():
    latent = th.tensor([[3.0, 4.0]], requires_grad=True)
    reconstruction_loss(th.zeros(1, 2), th.zeros(1, 2), latent, decoder_latent_lambda=2.0).backward()
    # d/dz of 2 * 0.5 * ||z||^2 = 2 z.
    assert th.allclose(latent.grad, th.tensor([[6.0, 8.0]]))


def test_comparison_logits_by_hand():
    z_anchor = th.tensor([[1.0, 2.0], [0.0, 1.0]])
    z_positive = th.tensor([[1.0, 0.0], [1.0, 1.0]])
    weight = th.tensor([[1.0, 0.0], [2.0, 1.0]])
    # z_a W = [[5, 2], [2, 1]]; (z_a W) z_pos^T = [[5, 7], [2, 3]]; minus each row's max -> [[-2, 0], [-1, 0]].
    logits = comparison_logits(z_anchor, z_positive, weight)
    assert th.equal(logits, th.tensor([[-2.0, 0.0], [-1.0, 0.0]]))


def test_comparison_logits_are_bilinear_not_symmetric():
    z_anchor = th.tensor([[1.0, 0.0], [0.0, 1.0]])
    z_positive = th.tensor([[1.0, 0.0], [0.0, 1.0]])
    weight = th.tensor([[1.0, 2.0], [3.0, 4.0]])
    # With identity codes the logits are W itself (shifted), so W^T would give other logits.
    assert th.equal(comparison_logits(z_anchor, z_positive, weight), th.tensor([[-1.0, 0.0], [-1.0, 0.0]]))
    assert th.equal(comparison_logits(z_anchor, z_positive, weight.T), th.tensor([[-2.0, 0.0], [-2.0, 0.0]]))


def test_info_nce_by_hand():
    logits = comparison_logits(
        th.tensor([[1.0, 2.0], [0.0, 1.0]]), th.tensor([[1.0, 0.0], [1.0, 1.0]]), th.tensor([[1.0, 0.0], [2.0, 1.0]])
    )
    # Row 0 = [-2, 0], positive at column 0: -log(e^-2 / (e^-2 + e^0)) = log(1 + e^2).
    # Row 1 = [-1, 0], positive at column 1: -log(e^0 / (e^-1 + e^0)) = log(1 + e^-1).
    expected = (math.log(1 + math.exp(2)) + math.log(1 + math.exp(-1))) / 2
    assert info_nce_loss(logits).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_is_shift_invariant_and_minimal_on_a_sharp_diagonal():
    raw = th.tensor([[5.0, 7.0], [2.0, 3.0]])
    shifted = raw - raw.max(dim=1, keepdim=True).values
    assert info_nce_loss(raw).item() == pytest.approx(info_nce_loss(shifted).item(), rel=1e-6)
    assert info_nce_loss(th.tensor([[50.0, 0.0], [0.0, 50.0]])).item() == pytest.approx(0.0, abs=1e-6)
    # Uniform logits over B columns: log(B).
    assert info_nce_loss(th.zeros(4, 4)).item() == pytest.approx(math.log(4), rel=1e-6)


def test_anneal_sequence_and_floor():
    c, sequence = 1.0, []
    for _ in range(4):
        c = anneal_comparison_lambda(c, decay=0.25, minimum=0.5)
        sequence.append(c)
    assert sequence == [0.75, 0.5, 0.5, 0.5]
    # Decay 0 keeps a fixed weight.
    assert anneal_comparison_lambda(0.7, decay=0.0, minimum=0.5) == 0.7


def test_anneal_with_the_paper_settings_reaches_the_floor_after_half_a_million_steps():
    c = 1.0
    for _ in range(499_990):
        c = anneal_comparison_lambda(c, decay=1e-6, minimum=0.5)
    assert c == pytest.approx(1.0 - 499_990 * 1e-6, abs=1e-9)
    assert c > 0.5
    for _ in range(20):
        c = anneal_comparison_lambda(c, decay=1e-6, minimum=0.5)
    assert c == 0.5

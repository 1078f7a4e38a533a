"""The reconstruction loss that several families share (SAC+AE's regularized autoencoder: GAARA's decoder, the AD(a, 1)
variants' decoder), as small pure functions.

Each function takes tensors and returns a scalar loss (or the tensor it builds on), with no module state, so that tests
can check it against values computed by hand. GAARA's comparison loss lives in :mod:`sb3_gaara.gaara.comparison`.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F


def preprocess_reconstruction_target(
    obs: th.Tensor,
    bits: int = 5,
    generator: th.Generator | None = None,
    memory_format: th.memory_format = th.contiguous_format,
) -> th.Tensor:
    """Reconstruction target of SAC+AE (Yarats et al. 2019, §6.1), following Glow / Kingma & Dhariwal 2018.

    Pixels are reduced from 8 to ``bits`` bits, dequantized with uniform noise inside each bin and centered:
    ``floor(x / 2**(8 - bits)) / 2**bits + U(0, 1 / 2**bits) - 0.5``. Fewer bits keep the decoder from
    spending capacity on imperceptible detail; the noise makes the target continuous.

    :param obs: uint8 images, or float images already in ``[0, 255]``
    :param memory_format: layout of the returned tensor. Give the decoder output's (``th.channels_last``
        with ``GAARAPolicy(channels_last=True)``): a loss between tensors of two layouts runs several times
        slower on the CPU and its gradient needs another full-size copy. The noise is drawn in memory order.
    :return: float target in ``[-0.5, 0.5)``
    """
    # In place, bit-identical to the formula: u / 32 and floor(x / 8) / 32 are exact (scaling by a power of
    # two), so their sum rounds once, like the formula's. uint8 images are floor-divided by a bit shift in
    # uint8 (exact): no full-size float temporary.
    bins = 2**bits
    target = th.empty(obs.shape, dtype=th.float32, device=obs.device, memory_format=memory_format)
    target.uniform_(0.0, 1.0 / bins, generator=generator)
    shift = 8 - bits
    target.add_(obs >> shift if obs.dtype == th.uint8 else obs.div(2**shift, rounding_mode="floor"), alpha=1.0 / bins)
    return target.sub_(0.5)


def reconstruction_loss(
    reconstruction: th.Tensor,
    target: th.Tensor,
    latent: th.Tensor,
    decoder_latent_lambda: float,
) -> th.Tensor:
    """RAE loss (SAC+AE eq. 8 without the weight decay, which the decoder's optimizer applies).

    ``MSE(reconstruction, target) + decoder_latent_lambda * mean(0.5 * ||z||^2)``: the L2 penalty on the
    latent keeps the deterministic autoencoder's code bounded, which is what makes it a regularized AE.
    """
    latent_penalty = (0.5 * latent.pow(2).sum(dim=1)).mean()
    return F.mse_loss(reconstruction, target) + decoder_latent_lambda * latent_penalty

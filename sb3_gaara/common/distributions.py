"""Diagonal Gaussians in closed form: the KL and log-likelihood terms of the latent-model families' evidence lower
bounds (SLAC's sequential latent variable model, Dreamer's RSSM), as pure functions of tensors."""

from __future__ import annotations

import math

import torch as th


def gaussian_kl(mean_q: th.Tensor, std_q: th.Tensor, mean_p: th.Tensor, std_p: th.Tensor) -> th.Tensor:
    """``KL(N(mean_q, std_q^2) || N(mean_p, std_p^2))`` per element, in closed form:

    ``log(std_p / std_q) + (std_q^2 + (mean_q - mean_p)^2) / (2 std_p^2) - 1/2``.

    The ELBO's KL terms are sums of these over the latent's dimensions: the Gaussians are diagonal.
    """
    variance_ratio = (std_q / std_p).pow(2)
    mean_term = ((mean_q - mean_p) / std_p).pow(2)
    return 0.5 * (variance_ratio + mean_term - 1.0) - th.log(std_q / std_p)


def gaussian_log_prob(value: th.Tensor, mean: th.Tensor, std: th.Tensor | float) -> th.Tensor:
    """``log N(value; mean, std^2)`` per element: ``-((value - mean) / std)^2 / 2 - log std - log(2 pi) / 2``."""
    std_t = th.as_tensor(std, dtype=mean.dtype, device=mean.device)
    return -0.5 * ((value - mean) / std_t).pow(2) - th.log(std_t) - 0.5 * math.log(2.0 * math.pi)

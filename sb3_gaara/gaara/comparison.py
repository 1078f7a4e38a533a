"""SAC+GAARA's comparison (§4.2): the bilinear similarity between an anchor's and a positive's codes, its InfoNCE
loss, and the annealing of its weight (§4.4). Only the GAARA family compares views, so these live in its room.
"""

from __future__ import annotations

import torch as th
import torch.nn.functional as F
from torch import nn


def comparison_logits(z_anchor: th.Tensor, z_positive: th.Tensor, weight: th.Tensor) -> th.Tensor:
    """Bilinear similarities ``z_a W z_pos^T`` (SAC+GAARA eq. 6), each row shifted by its maximum.

    Subtracting the row maximum leaves the softmax unchanged and keeps ``exp`` from overflowing
    (CURL's ``compute_logits``).

    :param z_anchor: ``(B, D)`` anchor codes (online encoder, with gradient)
    :param z_positive: ``(B, D)`` positive codes (target encoder, no gradient)
    :param weight: ``(D, D)`` learnable matrix ``W``
    :return: ``(B, B)`` logits; the positive of row ``i`` is column ``i``
    """
    logits = z_anchor @ weight @ z_positive.T
    return logits - logits.max(dim=1, keepdim=True).values


def info_nce_loss(logits: th.Tensor) -> th.Tensor:
    """InfoNCE (eq. 2): cross-entropy of each row against its diagonal entry, the other rows being negatives."""
    labels = th.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels)


def anneal_comparison_lambda(current: float, decay: float, minimum: float) -> float:
    """One annealing step of the comparison weight (SAC+GAARA §4.4): ``max(minimum, current - decay)``.

    Algorithm 1 line 8 of the paper prints the assignment ``alpha = 1e-6``; its text and code mean a
    decrement by ``1e-6`` per comparison update, floored at ``minimum``.
    """
    return max(minimum, current - decay)


class ComparisonModule(nn.Module):
    """The comparison module of SAC+GAARA §4.2: a learnable bilinear similarity ``q^T W k``.

    ``W`` starts uniform in ``[0, 1)``, as in CURL; the logits are computed by
    :func:`comparison_logits`.
    """

    def __init__(self, features_dim: int = 50) -> None:
        super().__init__()
        self.W = nn.Parameter(th.rand(features_dim, features_dim))

    def forward(self, z_anchor: th.Tensor, z_positive: th.Tensor) -> th.Tensor:
        return comparison_logits(z_anchor, z_positive, self.W)

"""How :class:`~sb3_gaara.gaara.gaara_sac.GAARASAC` applies a loss (``model.optimize``): zero_grad, backward, step,
with its two options: a step skipped when the loss or a gradient is not finite (``skip_nonfinite_updates``), and a
step scaled by a factor (``comparison_anneal="lr"``).
"""

from __future__ import annotations

import torch as th


def apply_loss(
    loss: th.Tensor,
    optimizer: th.optim.Optimizer,
    skip_nonfinite: bool = False,
    step_scale: float | th.Tensor | None = None,
) -> bool:
    """Apply ``loss`` with ``optimizer`` (zero_grad, backward, step).

    :param skip_nonfinite: when the loss or a gradient is not finite (one device synchronisation to know it), drop
        the gradients and take no step
    :param step_scale: multiply the optimizer's step by this factor, which for Adam without weight decay is
        multiplying its learning rates: ``p <- p_before + s (p_after - p_before)``
    :return: whether the step was taken
    """
    optimizer.zero_grad()
    loss.backward()
    if skip_nonfinite and not is_finite(loss, optimizer):
        optimizer.zero_grad()
        return False
    if step_scale is None:
        optimizer.step()
        return True
    params = [param for group in optimizer.param_groups for param in group["params"]]
    before = [param.detach().clone() for param in params]
    optimizer.step()
    with th.no_grad():
        for param, old in zip(params, before, strict=True):
            param.sub_(old).mul_(step_scale).add_(old)
    return True


def is_finite(loss: th.Tensor, optimizer: th.optim.Optimizer) -> bool:
    """Whether ``loss`` and every gradient held by ``optimizer`` are finite (one device sync)."""
    checks = [th.isfinite(loss).all()]
    checks += [th.isfinite(p.grad).all() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    return bool(th.stack(checks).all())

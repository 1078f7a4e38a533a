"""Returns and planning over a learned model: Dreamer's lambda-return and the cross-entropy method.

Both are pure functions of tensors, used by :class:`~sb3_gaara.dreamer.Dreamer` (the value's target, the actor's
objective, the ``"cem"`` and ``"dreamer_mpc"`` planners) and usable alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch as th


def lambda_returns(rewards: th.Tensor, values: th.Tensor, discounts: th.Tensor, lambda_: float) -> th.Tensor:
    """TD(lambda) returns of imagined trajectories (Dreamer, Hafner et al. 2020, eq. 6, in its recursive form).

    ``R_t = r_t + d_t * ((1 - lambda) * v_{t+1} + lambda * R_{t+1})`` for ``t < H`` and ``R_H = v_H``: ``lambda = 1``
    gives the ``H``-step return bootstrapped by ``v_H``, ``lambda = 0`` the one-step TD targets. A discount of 0 at
    step ``t`` (an episode that ends there) cuts everything after it from ``R_t``.

    :param rewards: ``(H, B)`` the reward of each step ``t``
    :param values: ``(H + 1, B)`` the value of the state each step starts from; the last row is the bootstrap ``v_H``
    :param discounts: ``(H, B)`` ``gamma`` times the probability of continuing after step ``t``
    :param lambda_: the mixing weight, in ``[0, 1]`` (Dreamer: 0.95)
    :return: ``(H, B)`` the returns ``R_0 .. R_{H-1}``, differentiable in all three inputs
    """
    if rewards.ndim < 1 or rewards.shape != discounts.shape:
        raise ValueError(
            f"rewards and discounts must have the same shape (H, B), got {tuple(rewards.shape)} and {tuple(discounts.shape)}."
        )
    if values.shape != (rewards.shape[0] + 1, *rewards.shape[1:]):
        raise ValueError(
            f"values must have one row more than rewards (the bootstrap v_H last): expected "
            f"{(rewards.shape[0] + 1, *rewards.shape[1:])}, got {tuple(values.shape)}."
        )
    if not 0.0 <= lambda_ <= 1.0:
        raise ValueError(f"lambda_ must lie in [0, 1] (Dreamer: 0.95), got {lambda_!r}.")
    # The recursion runs backwards; the part that does not depend on R_{t+1} is computed for all t at once.
    bootstrapped = rewards + discounts * (1.0 - lambda_) * values[1:]
    returns = []
    following = values[-1]
    for t in reversed(range(rewards.shape[0])):
        following = bootstrapped[t] + discounts[t] * lambda_ * following
        returns.append(following)
    return th.stack(returns[::-1])


def cem_plan(
    objective: Callable[[th.Tensor], th.Tensor],
    horizon: int,
    action_dim: int,
    iterations: int,
    candidates: int,
    top_k: int,
    init_mean: th.Tensor | None = None,
    init_std: float | th.Tensor = 1.0,
    low: float = -1.0,
    high: float = 1.0,
    generator: th.Generator | None = None,
    device: th.device | str | None = None,
) -> th.Tensor:
    """The cross-entropy method over action sequences (PlaNet, Hafner et al. 2019, §3 and Algorithm 2).

    A diagonal Gaussian over ``(horizon, action_dim)`` plans starts at ``init_mean`` (zeros if ``None``) and
    ``init_std``; each of ``iterations`` rounds draws ``candidates`` plans from it, clipped to ``[low, high]``, scores
    them with ``objective`` and refits the mean and standard deviation to the ``top_k`` best. Dreamer's MPC (the
    ``"dreamer_mpc"`` planner) starts the Gaussian at the actor's own imagined plan instead of zeros.

    :param objective: maps ``(candidates, horizon, action_dim)`` plans to ``(candidates,)`` scores (higher is better);
        called without gradient
    :param horizon: steps per plan (PlaNet: 12)
    :param action_dim: action dimensions
    :param iterations: refits of the Gaussian (PlaNet: 10)
    :param candidates: plans drawn per iteration (PlaNet: 1000)
    :param top_k: best plans the Gaussian is refitted to (PlaNet: 100)
    :param init_mean: ``(horizon, action_dim)`` initial mean, ``None`` for zeros
    :param init_std: initial standard deviation, a number or a ``(horizon, action_dim)`` tensor
    :param low: lower bound of every action
    :param high: upper bound of every action
    :param generator: torch generator of the draws (``None``: torch's global one)
    :param device: device of the plans (``None``: ``init_mean``'s, else the CPU)
    :return: ``(horizon, action_dim)`` the final mean plan, clipped to ``[low, high]``; act with its first row
    """
    for name, value, minimum in (
        ("horizon", horizon, 1),
        ("action_dim", action_dim, 1),
        ("iterations", iterations, 1),
        ("candidates", candidates, 1),
        ("top_k", top_k, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"cem_plan's {name} must be an integer >= {minimum}, got {value!r}.")
    if top_k > candidates:
        raise ValueError(f"cem_plan keeps top_k={top_k} of {candidates} candidates: top_k must be at most candidates.")
    if not low < high:
        raise ValueError(f"cem_plan needs low < high, got low={low!r}, high={high!r}.")
    if device is None:
        device = init_mean.device if init_mean is not None else th.device("cpu")
    shape = (horizon, action_dim)
    if init_mean is None:
        mean = th.zeros(shape, device=device)
    else:
        if tuple(init_mean.shape) != shape:
            raise ValueError(f"init_mean must have shape (horizon, action_dim) = {shape}, got {tuple(init_mean.shape)}.")
        mean = init_mean.detach().to(device=device, dtype=th.float32).clone()
    std = th.as_tensor(init_std, dtype=th.float32, device=device).expand(shape).clone()
    with th.no_grad():
        for _ in range(iterations):
            noise = th.randn((candidates, *shape), generator=generator, device=device)
            plans = (mean + std * noise).clamp(low, high)
            scores = objective(plans)
            if tuple(scores.shape) != (candidates,):
                raise ValueError(
                    f"cem_plan's objective must return one score per plan, shape ({candidates},), got {tuple(scores.shape)}."
                )
            elite = plans[th.topk(scores, top_k, sorted=False).indices]
            mean = elite.mean(dim=0)
            std = elite.std(dim=0, unbiased=False) if top_k > 1 else th.zeros_like(std)
    return mean.clamp(low, high)

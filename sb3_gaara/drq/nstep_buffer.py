"""N-step returns from the frame-once replay buffer, with the semantics of SB3 2.9's ``NStepReplayBuffer``.

DrQ-v2 bootstraps its critic from ``n = 3`` steps ahead. SB3's ``NStepReplayBuffer`` computes such returns at
sampling time from a plain ``ReplayBuffer``, which stores two full frame stacks per transition. Pixel replay is
bound by memory, so :class:`NStepPixelReplayBuffer` computes the same returns on top of
:class:`~sb3_gaara.common.buffers.AugmentedPixelReplayBuffer`, where every frame is stored once: the next
observation of an n-step transition is only a different row of frame slots (those of the transition ``k - 1``
steps later), so no image is stored twice and none is copied until the crop.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from stable_baselines3.common.vec_env import VecNormalize

from sb3_gaara.common.buffers import AugmentedPixelReplayBuffer, AugmentedReplayBufferSamples, SampledTransitions


class NStepSampledTransitions(NamedTuple):
    """:class:`~sb3_gaara.common.buffers.SampledTransitions` of n-step transitions (numpy, no images).

    :param obs_index: ``(B, frame_stack)`` frame slots of the observations ``s_t``
    :param next_obs_index: frame slots of the bootstrap observations ``s_{t+k}``, ``k <= n_steps``
    :param actions: ``(B, action_dim)``, the actions ``a_t``
    :param dones: ``(B, 1)``, 1 where the n-step transition ends in a termination (not a truncation): no bootstrap
    :param rewards: ``(B, 1)``, the discounted returns ``sum_{j<k} gamma^j r_{t+j}``
    :param discounts: ``(B, 1)``, ``gamma^k``: the factor of the bootstrap value (SB3's ``discounts``)
    """

    obs_index: np.ndarray
    next_obs_index: np.ndarray
    actions: np.ndarray
    dones: np.ndarray
    rewards: np.ndarray
    discounts: np.ndarray


class NStepPixelReplayBuffer(AugmentedPixelReplayBuffer):
    """:class:`~sb3_gaara.common.buffers.AugmentedPixelReplayBuffer` that samples n-step transitions.

    A sampled transition at ``t`` sums the rewards of up to ``n_steps`` consecutive transitions of its env,
    ``R = sum_{j<k} gamma^j r_{t+j}``, and bootstraps from the next observation of the ``k``-th, ``s_{t+k}``,
    with ``gamma^k`` (``samples.discounts``). The sum stops early, inclusive, at the first transition that ends
    its episode, by termination *or* time-limit truncation, and at the newest transition of the buffer, which
    the next ``add()`` may continue with another episode. ``dones`` is 1 only when that last transition
    terminated (``done * (1 - timeout)``), so a truncated return still bootstraps from the truncation's terminal
    observation. These are exactly SB3 2.9's ``NStepReplayBuffer`` rules (same ``np.random`` draws, same
    values); ``tests/test_drqv2.py`` compares both buffers on the same data.

    Frames stay stored once: ``next_observations`` is rebuilt from the frame slots of transition ``t + k - 1``'s
    next observation, and cropped on the storage device as in the parent class.

    :param n_steps: number of rewards summed (1: one-step returns, the parent's samples plus ``discounts = gamma``)
    :param gamma: discount factor of the sum and of ``discounts``

    The other parameters are :class:`~sb3_gaara.common.buffers.AugmentedPixelReplayBuffer`'s; SB3's
    ``optimize_memory_usage`` is not supported (neither is it by SB3's ``NStepReplayBuffer``).
    """

    def __init__(self, *args: Any, n_steps: int = 3, gamma: float = 0.99, **kwargs: Any) -> None:
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise ValueError(
                f"n_steps must be a positive integer number of rewards to sum (1: one-step returns; DrQ-v2 uses 3), "
                f"got {n_steps!r}."
            )
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma}.")
        super().__init__(*args, **kwargs)
        if self.optimize_memory_usage:
            raise ValueError(
                "NStepPixelReplayBuffer does not support optimize_memory_usage=True (nor does SB3's NStepReplayBuffer); "
                "it would save nothing anyway, since frames are stored once. Leave it False."
            )
        self.n_steps = int(n_steps)
        self.gamma = float(gamma)

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> AugmentedReplayBufferSamples:  # type: ignore[override]
        """SB3's n-step sample, cropped (see the parent's ``sample``), with ``discounts`` set."""
        return self.crop(self.sample_transitions(batch_size, env))

    def sample_transitions(self, batch_size: int, env: VecNormalize | None = None) -> NStepSampledTransitions:  # type: ignore[override]
        """Draw ``batch_size`` transitions with SB3's ``np.random`` calls and compute their n-step returns (host)."""
        return super().sample_transitions(batch_size, env)  # type: ignore[return-value]  # our _get_samples below

    def crop(self, transitions: NStepSampledTransitions) -> AugmentedReplayBufferSamples:  # type: ignore[override]
        """The parent's crops of ``transitions``, with their ``discounts`` on ``device``."""
        one_step = SampledTransitions(
            obs_index=transitions.obs_index,
            next_obs_index=transitions.next_obs_index,
            actions=transitions.actions,
            dones=transitions.dones,
            rewards=transitions.rewards,
        )
        return super().crop(one_step)._replace(discounts=self.to_torch(transitions.discounts))

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> NStepSampledTransitions:
        # The same draw of env indices as SB3's (NStep)ReplayBuffer, so all of them return the same transitions.
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        if env is not None and env.norm_obs:
            raise ValueError("VecNormalize(norm_obs=True) would turn uint8 images into floats: use norm_obs=False.")
        n_steps = self.n_steps
        # (B, n) rows of the n transitions that may follow each sampled one, wrapping around the ring.
        rows = (batch_inds[:, None] + np.arange(n_steps)) % self.buffer_size
        envs = env_indices[:, None]
        dones = self.dones[rows, envs]
        timeouts = self.timeouts[rows, envs]
        # Where a sum must stop: an episode's end, or the newest transition (the next add() may start another
        # episode there, or, once the ring is full, overwrite the oldest one that comes after it).
        stops = (dones > 0) | (timeouts > 0) | (rows == (self.pos - 1) % self.buffer_size)
        # k - 1: index of the last summed transition (the first stop, or n - 1 when there is none).
        last = np.where(stops.any(axis=1), stops.argmax(axis=1), n_steps - 1)
        summed = np.arange(n_steps) <= last[:, None]
        powers = self.gamma ** np.arange(n_steps, dtype=np.float32)
        rewards = self._normalize_reward(self.rewards[rows, envs], env)
        returns = (rewards * powers * summed).sum(axis=1, keepdims=True)
        discounts = (self.gamma ** (last + 1).astype(np.float32)).reshape(-1, 1)

        final_rows = rows[np.arange(len(batch_inds)), last]
        final_dones = self.dones[final_rows, env_indices] * (1 - self.timeouts[final_rows, env_indices])
        return NStepSampledTransitions(
            obs_index=self.obs_frame_index[batch_inds, env_indices],
            next_obs_index=self.next_obs_frame_index[final_rows, env_indices],
            actions=self.actions[batch_inds, env_indices, :],
            dones=final_dones.reshape(-1, 1).astype(np.float32),
            rewards=returns.astype(np.float32),
            discounts=discounts.astype(np.float32),
        )

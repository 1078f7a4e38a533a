"""Replay buffer that serves the crops SAC+GAARA trains on."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from sb3_gaara.crops import center_crop, crop, random_crop_offsets
from sb3_gaara.preprocessing import check_pixel_observation_space

ANCHOR_CROPS = ("center", "random")


class AugmentedReplayBufferSamples(NamedTuple):
    """SB3's ``ReplayBufferSamples`` plus the two views of the contrastive pair.

    ``observations``, ``next_observations`` and ``obs_anchor`` are center crops (``obs_anchor`` is a
    random crop instead for the §5.2 ``anchor_crop="random"`` ablation); ``obs_pos`` is a random crop
    of the same observation. Images stay uint8: the policy scales them, which keeps batches small.
    """

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    obs_anchor: th.Tensor
    obs_pos: th.Tensor
    # SB3's n-step field, kept so that code written for ReplayBufferSamples reads this tuple too.
    discounts: th.Tensor | None = None


class AugmentedPixelReplayBuffer(ReplayBuffer):
    """SB3 ``ReplayBuffer`` of full-size pixel observations that samples cropped views.

    Observations are stored at render size (e.g. ``9 x 100 x 100``) and cropped to ``image_size`` at
    sample time, on the training device, with one random offset per sample shared by every stacked frame.

    :param buffer_size: maximum number of transitions
    :param observation_space: channel-first uint8 image space
    :param action_space: action space
    :param device: device of the sampled tensors
    :param n_envs: number of parallel environments
    :param optimize_memory_usage: SB3's variant that stores each observation once
    :param handle_timeout_termination: treat time-limit truncation as non-terminal (SB3 semantics)
    :param image_size: side of the crops (84)
    :param anchor_crop: ``"center"`` (SAC+GAARA) or ``"random"`` (the first version, §5.2)
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        image_size: int = 84,
        anchor_crop: str = "center",
    ) -> None:
        check_pixel_observation_space(observation_space, image_size)
        if anchor_crop not in ANCHOR_CROPS:
            raise ValueError(f"anchor_crop must be one of {ANCHOR_CROPS}, got {anchor_crop!r}.")
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=optimize_memory_usage,
            handle_timeout_termination=handle_timeout_termination,
        )
        self.image_size = image_size
        self.anchor_crop = anchor_crop

    def _stacks(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full-size uint8 observation and next-observation stacks of the chosen transitions."""
        obs = self.observations[batch_inds, env_indices]
        if self.optimize_memory_usage:
            next_obs = self.observations[(batch_inds + 1) % self.buffer_size, env_indices]
        else:
            next_obs = self.next_observations[batch_inds, env_indices]
        return obs, next_obs

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> AugmentedReplayBufferSamples:
        # Same draw of env indices as SB3's ReplayBuffer._get_samples, so both return the same transitions.
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        if env is not None and env.norm_obs:
            raise ValueError("VecNormalize(norm_obs=True) would turn uint8 images into floats: use norm_obs=False.")
        obs_np, next_obs_np = self._stacks(batch_inds, env_indices)
        obs = th.as_tensor(obs_np).to(self.device)
        next_obs = th.as_tensor(next_obs_np).to(self.device)
        return self._augment(
            obs,
            next_obs,
            actions=self.to_torch(self.actions[batch_inds, env_indices, :]),
            dones=self.to_torch(
                (self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])).reshape(-1, 1)
            ),
            rewards=self.to_torch(self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env)),
        )

    def _augment(
        self, obs: th.Tensor, next_obs: th.Tensor, actions: th.Tensor, dones: th.Tensor, rewards: th.Tensor
    ) -> AugmentedReplayBufferSamples:
        """Crop full-size stacks (already on the training device) into the sampled views."""
        batch_size, _, height, width = obs.shape
        observations = center_crop(obs, self.image_size)
        top, left = random_crop_offsets(batch_size, height, width, self.image_size, device=obs.device)
        obs_pos = crop(obs, top, left, self.image_size)
        if self.anchor_crop == "center":
            obs_anchor = observations
        else:
            # §5.2: the anchor is a second, independent random crop.
            top, left = random_crop_offsets(batch_size, height, width, self.image_size, device=obs.device)
            obs_anchor = crop(obs, top, left, self.image_size)
        return AugmentedReplayBufferSamples(
            observations=observations,
            actions=actions,
            next_observations=center_crop(next_obs, self.image_size),
            dones=dones,
            rewards=rewards,
            obs_anchor=obs_anchor,
            obs_pos=obs_pos,
        )

"""What every agent that acts on a state carried across steps (SLAC's history, Dreamer's latent state) needs from
SB3's off-policy loop: the episode starts of the training envs, and the frames of an observation as ``predict``
gets it."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.preprocessing import maybe_transpose
from stable_baselines3.common.utils import is_vectorized_observation


class TracksEpisodeStarts(OffPolicyAlgorithm):
    """Mixin before an SB3 off-policy algorithm whose ``_sample_action`` carries a state per training env: SB3 sets
    ``_last_episode_starts`` only at the start of ``learn``, so after each step the envs whose episode ended are
    recorded as starting a new one (their state restarts at the next action)."""

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """SB3's ``_store_transition``, then the dones as the next step's episode starts."""
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
        self._last_episode_starts = np.asarray(dones, dtype=bool).copy()


def observation_frames(observation: Any, observation_space: spaces.Space, algorithm: str) -> tuple[np.ndarray, bool]:
    """``(n_envs, C, H, W)`` uint8 frames of an observation as ``predict`` gets it (one env's or a VecEnv's,
    channel-first or -last; ``observation_space`` is the policy's channel-first one), and whether it was vectorized.

    :param algorithm: the algorithm's name, for the error on a dict observation
    """
    if isinstance(observation, dict):
        raise ValueError(f"{algorithm} acts on single image observations, got a dict with keys {list(observation)}.")
    observation = maybe_transpose(np.asarray(observation), observation_space)
    vectorized = is_vectorized_observation(observation, observation_space)
    shape = observation_space.shape
    assert shape is not None
    return observation.reshape((-1, *shape)).astype(np.uint8, copy=False), vectorized

"""Sequences of consecutive steps from the frame-once store: what SLAC's model and agent train on.

SLAC samples sequences of ``S`` observations and the ``S - 1`` actions and rewards between them (the paper: 8
observations). :class:`SequenceReplayBuffer` is the package's :class:`~sb3_gaara.common.buffers.AugmentedPixelReplayBuffer`
(each frame stored once, 12 KB per transition for 64 px RGB frames) read along time instead of per transition: the
observations of a sequence starting at transition ``t`` are those of transitions ``t .. t + S - 2`` and the next
observation of the last one, gathered from the frame store by their slots. No frame is stored twice and no
full-size stack is kept per transition.

**Episode boundaries.** A sequence never spans two episodes: its first ``S - 2`` transitions must not end an episode
(``done``, termination or truncation); the last may (its next observation is the terminal one SB3 keeps). The public
SLAC code builds its sequences inside each episode the same way; the first ``S - 1`` steps of an episode appear only
as the beginning of later sequences. The buffer's write position is a boundary too: a sequence never wraps from the
newest transition to the oldest.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecNormalize

from sb3_gaara.common.buffers import AugmentedPixelReplayBuffer
from sb3_gaara.common.preprocessing import channel_first_shape

#: rounds of redrawing the sequences that cross a boundary before falling back to listing every valid start
MAX_REDRAWS = 32


class SequenceSamples(NamedTuple):
    """A batch of sequences of ``S`` observations (tensors on the buffer's ``device``).

    :param observations: ``(B, S, C, H, W)`` uint8 frames, oldest first
    :param actions: ``(B, S - 1, action_dim)`` the actions between them
    :param rewards: ``(B, S - 1, 1)`` (normalized like SB3's when a ``VecNormalize`` is given)
    :param dones: ``(B, S - 1, 1)`` ``done * (1 - timeout)``: 1 where the step ended the episode in a terminal state
        (SB3's ``handle_timeout_termination``); only the last step of a sequence can be 1
    """

    observations: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    dones: th.Tensor


class SequenceReplayBuffer(AugmentedPixelReplayBuffer):
    """Replay of single frames stored once, sampled as sequences of ``sequence_length`` observations (module docstring).

    Transitions are added as to any SB3 buffer (``add``); :meth:`sample` returns :class:`SequenceSamples`. Sequences
    start uniformly among the transitions of uniformly drawn envs (``np.random``, seeded like SB3's buffers); a draw
    that crosses an episode end or the write position is drawn again.

    :param buffer_size: maximum number of transitions
    :param observation_space: channel-first uint8 frames (one frame per observation for SLAC; stacked frames are
        stored once per distinct frame too)
    :param action_space: action space
    :param device: device of the sampled tensors
    :param n_envs: number of parallel environments
    :param optimize_memory_usage: refused: the frame store already keeps each frame once
    :param handle_timeout_termination: time-limit truncation is not a terminal state (SB3 semantics)
    :param sequence_length: observations per sequence ``S`` (8)
    :param storage_device: where the frames live (``None``: host memory; see ``AugmentedPixelReplayBuffer``)
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
        sequence_length: int = 8,
        storage_device: th.device | str | None = None,
    ) -> None:
        if optimize_memory_usage:
            raise ValueError(
                "SequenceReplayBuffer stores each frame once already: optimize_memory_usage=True would save nothing. "
                "Leave it False."
            )
        if isinstance(sequence_length, bool) or not isinstance(sequence_length, (int, np.integer)) or sequence_length < 2:
            raise ValueError(
                f"sequence_length must be an integer of at least 2 observations (SLAC: 8), got {sequence_length!r}."
            )
        if isinstance(observation_space, spaces.Box) and len(observation_space.shape or ()) == 3:
            _, height, width = channel_first_shape(observation_space)
            image_size = min(height, width)
        else:
            image_size = 1  # the parent's checks name what is wrong with the space
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            handle_timeout_termination=handle_timeout_termination,
            image_size=image_size,
            storage_device=storage_device,
        )
        # A buffer too small for one sequence is allowed (rl-zoo3's enjoy builds models with buffer_size=1 to act):
        # sampling from it says what to change.
        self.sequence_length = int(sequence_length)

    def bytes_per_transition(self) -> float:
        """Bytes of the buffer per stored transition (frames, indices and SB3's arrays), 0 when empty."""
        stored = (self.buffer_size if self.full else self.pos) * self.n_envs
        return self.nbytes() / stored if stored else 0.0

    # ------------------------------------------------------------------------------------------ sampling

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> SequenceSamples:  # type: ignore[override]
        """``batch_size`` sequences of ``sequence_length`` observations, each inside one episode."""
        starts, env_indices = self.sample_starts(batch_size)
        return self.sequences(starts, env_indices, env)

    def sample_starts(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Buffer indices of the first transitions of ``batch_size`` valid sequences, and their envs.

        The first draw is uniform over the starts whose ``S - 1`` transitions do not wrap past the write position;
        the draws whose sequence crosses an episode end are drawn again (at most :data:`MAX_REDRAWS` rounds, then
        among the listed valid starts).
        """
        transitions = self.sequence_length - 1
        stored = self.buffer_size if self.full else self.pos
        if stored < transitions:
            raise ValueError(
                f"The replay buffer holds {stored} transitions per env, fewer than the {transitions} of one sequence of "
                f"{self.sequence_length} observations: collect more steps before training (learning_starts >= "
                f"{transitions}) and keep buffer_size >= {transitions} per env."
            )
        starts = np.zeros(batch_size, dtype=np.int64)
        env_indices = np.zeros(batch_size, dtype=np.int64)
        pending = np.arange(batch_size)
        for _ in range(MAX_REDRAWS):
            offsets = np.random.randint(0, stored - transitions + 1, size=len(pending))
            starts[pending] = (offsets + self.pos) % self.buffer_size if self.full else offsets
            env_indices[pending] = np.random.randint(0, self.n_envs, size=len(pending))
            pending = pending[self._crosses_episode_end(starts[pending], env_indices[pending])]
            if len(pending) == 0:
                return starts, env_indices
        valid = self._valid_starts()
        if len(valid) == 0:
            raise ValueError(
                f"No sequence of {self.sequence_length} observations lies inside one episode: the episodes in the replay "
                f"buffer are shorter than {transitions} steps. Lower sequence_length or use longer episodes."
            )
        chosen = valid[np.random.randint(0, len(valid), size=len(pending))]
        starts[pending], env_indices[pending] = chosen[:, 0], chosen[:, 1]
        return starts, env_indices

    def _crosses_episode_end(self, starts: np.ndarray, env_indices: np.ndarray) -> np.ndarray:
        """Whether any of the first ``S - 2`` transitions of each sequence ends its episode."""
        inner = (starts[:, None] + np.arange(self.sequence_length - 2)) % self.buffer_size
        return self.dones[inner, env_indices[:, None]].any(axis=1)

    def _valid_starts(self) -> np.ndarray:
        """``(n, 2)`` every ``(start, env)`` of a valid sequence."""
        transitions = self.sequence_length - 1
        stored = self.buffer_size if self.full else self.pos
        offsets = np.arange(stored - transitions + 1)
        starts = (offsets + self.pos) % self.buffer_size if self.full else offsets
        pairs = np.stack(np.meshgrid(starts, np.arange(self.n_envs), indexing="ij"), axis=-1).reshape(-1, 2)
        return pairs[~self._crosses_episode_end(pairs[:, 0], pairs[:, 1])]

    def sequence_frame_index(self, starts: np.ndarray, env_indices: np.ndarray) -> np.ndarray:
        """``(B, S, frame_stack)`` frame slots of the sequences' observations, oldest first."""
        steps = (starts[:, None] + np.arange(self.sequence_length - 1)) % self.buffer_size
        envs = env_indices[:, None]
        last = self.next_obs_frame_index[steps[:, -1], env_indices][:, None]
        return np.concatenate([self.obs_frame_index[steps, envs], last], axis=1)

    def sequences(self, starts: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None = None) -> SequenceSamples:
        """The sequences that start at buffer indices ``starts`` of envs ``env_indices``."""
        if self._frames is None:
            raise ValueError("The replay buffer is empty: add transitions first.")
        if env is not None and env.norm_obs:
            raise ValueError("VecNormalize(norm_obs=True) would turn uint8 images into floats: use norm_obs=False.")
        steps = (starts[:, None] + np.arange(self.sequence_length - 1)) % self.buffer_size
        envs = env_indices[:, None]
        index = self.sequence_frame_index(starts, env_indices)
        batch = len(starts)
        if isinstance(self._frames, np.ndarray):
            images = th.from_numpy(self._frames[index])
        else:
            images = self._frames[th.as_tensor(index, dtype=th.long, device=self._frames.device)]
        images = images.reshape(batch, self.sequence_length, *self.obs_shape).to(self.device)
        dones = self.dones[steps, envs] * (1 - self.timeouts[steps, envs])
        rewards = self._normalize_reward(self.rewards[steps, envs], env)
        return SequenceSamples(
            observations=images,
            actions=self.to_torch(self.actions[steps, envs]),
            rewards=self.to_torch(rewards[..., None]),
            dones=self.to_torch(dones[..., None]),
        )

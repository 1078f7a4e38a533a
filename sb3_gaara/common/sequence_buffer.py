"""Sequences of consecutive steps from the frame-once store: what SLAC's model and agent train on.

SLAC samples sequences of ``S`` observations and the ``S - 1`` actions and rewards between them (the paper: 8
observations). :class:`SequenceReplayBuffer` is the package's :class:`~sb3_gaara.common.buffers.AugmentedPixelReplayBuffer`
(each frame stored once, 12 KB per transition for 64 px RGB frames) read along time instead of per transition: the
sequence that ends with transition ``t`` holds the observations of transitions ``t - S + 2 .. t`` and the next
observation of ``t``, gathered from the frame store by their slots. No frame is stored twice and no full-size stack is
kept per transition.

**Episode boundaries.** Sequences are drawn by their last transition, uniformly over the stored transitions (SB3's
draw), so every step is trained on equally often, the first steps of an episode included. A sequence never spans two
episodes: the steps before the first observation of its last transition's episode (or before the oldest stored
transition) are *padding*, zero actions and rewards flagged by ``observed = 0``. Their frames are zeros (the store's
permanent zero slot; Dreamer's buffer) or, with ``pad_with_first_frame`` (SLAC's), copies of the sequence's first
observed frame, as the original SLAC code fills an episode's history (its ``filter_before_first_step`` repeats the
first step and zeroes the actions before it). Either way the padding is exactly the history the actor acts on at an
episode's first steps (:class:`~sb3_gaara.slac.policies.SLACHistory`), so the actor trains on the inputs it acts on;
the models restart their filters at the first observed step and their losses skip the padding.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecNormalize

from sb3_gaara.common.buffers import ZERO_SLOT, AugmentedPixelReplayBuffer
from sb3_gaara.common.preprocessing import channel_first_shape


class SequenceSamples(NamedTuple):
    """A batch of sequences of ``S`` observations (tensors on the buffer's ``device``).

    :param observations: ``(B, S, C, H, W)`` uint8 frames, oldest first; before the episode's first observation,
        zeros or (``pad_with_first_frame``) copies of the first observed frame
    :param actions: ``(B, S - 1, action_dim)`` the actions between them (zeros in the padding)
    :param rewards: ``(B, S - 1, 1)`` (normalized like SB3's when a ``VecNormalize`` is given; zeros in the padding)
    :param dones: ``(B, S - 1, 1)`` ``done * (1 - timeout)``: 1 where the step ended the episode in a terminal state
        (SB3's ``handle_timeout_termination``); only the last step of a sequence can be 1
    :param observed: ``(B, S)`` float32, 1 for the observations of the last step's episode, 0 for the padding before
        it (a prefix: once 1, 1 to the end; the last two are always 1)
    """

    observations: th.Tensor
    actions: th.Tensor
    rewards: th.Tensor
    dones: th.Tensor
    observed: th.Tensor


class SequenceReplayBuffer(AugmentedPixelReplayBuffer):
    """Replay of single frames stored once, sampled as sequences of ``sequence_length`` observations (module docstring).

    Transitions are added as to any SB3 buffer (``add``); :meth:`sample` returns :class:`SequenceSamples` whose last
    transitions are drawn with exactly SB3's ``ReplayBuffer.sample`` calls (``np.random``, seeded alike).

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
    :param pad_with_first_frame: fill the padding before a sequence's first observed step with that step's frame
        instead of zeros (SLAC: its actor's history at an episode's start holds copies of the first frame, as in the
        original code); the actions, rewards and ``observed`` flags of the padding are zeros either way
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
        pad_with_first_frame: bool = False,
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
        self.pad_with_first_frame = bool(pad_with_first_frame)

    def bytes_per_transition(self) -> float:
        """Bytes of the buffer per stored transition (frames, indices and SB3's arrays), 0 when empty."""
        stored = (self.buffer_size if self.full else self.pos) * self.n_envs
        return self.nbytes() / stored if stored else 0.0

    # ------------------------------------------------------------------------------------------ sampling

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> SequenceSamples:  # type: ignore[override]
        """``batch_size`` sequences of ``sequence_length`` observations, each ending with a uniformly drawn transition
        (SB3's draw of transitions and envs), padded before its episode's first observation (module docstring)."""
        if self._frames is None:
            raise ValueError("The replay buffer is empty: add transitions before sampling (learning_starts >= 1).")
        upper_bound = self.buffer_size if self.full else self.pos
        ends = np.random.randint(0, upper_bound, size=batch_size)
        env_indices = np.random.randint(0, high=self.n_envs, size=(batch_size,))
        return self.sequences(ends, env_indices, env)

    def sequence_steps(self, ends: np.ndarray, env_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Buffer indices ``(B, S - 1)`` of the sequences' transitions, oldest first, and whether each belongs to the
        episode of the last one (``False``: padding).

        Walking back from the last transition, a step is padding once an earlier step ended an episode (``done``,
        termination or truncation) or the walk passes the oldest stored transition."""
        transitions = self.sequence_length - 1
        back = np.arange(transitions - 1, -1, -1)  # steps back from the last transition, oldest first
        steps = (ends[:, None] - back) % self.buffer_size
        available = (ends - self.pos) % self.buffer_size if self.full else ends  # stored transitions older than the end
        dones = self.dones[steps, env_indices[:, None]].astype(bool)
        dones[:, -1] = False  # the last transition may end the episode: its next observation is the terminal one
        # A step belongs to the episode iff no step from it to the last one (excluded) ended an episode.
        ended_after = np.flip(np.cumsum(np.flip(dones, axis=1), axis=1), axis=1) > 0
        observed = ~ended_after & (back[None, :] <= available[:, None])
        return steps, observed

    def sequences(self, ends: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None = None) -> SequenceSamples:
        """The sequences that end with transitions ``ends`` of envs ``env_indices`` (buffer indices)."""
        if self._frames is None:
            raise ValueError("The replay buffer is empty: add transitions before sampling (learning_starts >= 1).")
        if env is not None and env.norm_obs:
            raise ValueError("VecNormalize(norm_obs=True) would turn uint8 images into floats: use norm_obs=False.")
        steps, observed_steps = self.sequence_steps(ends, env_indices)
        envs = env_indices[:, None]
        frame_index = self.obs_frame_index[steps, envs]
        if self.pad_with_first_frame:
            # The observed steps are a suffix that always holds the last transition: argmax finds its first step.
            first = frame_index[np.arange(len(ends)), observed_steps.argmax(axis=1)]
            frame_index = np.where(observed_steps[:, :, None], frame_index, first[:, None])
        else:
            frame_index = np.where(observed_steps[:, :, None], frame_index, ZERO_SLOT)
        last = self.next_obs_frame_index[ends, env_indices][:, None]
        index = np.concatenate([frame_index, last], axis=1)
        batch = len(ends)
        if isinstance(self._frames, np.ndarray):
            images = th.from_numpy(self._frames[index])
        else:
            images = self._frames[th.as_tensor(index, dtype=th.long, device=self._frames.device)]
        images = images.reshape(batch, self.sequence_length, *self.obs_shape).to(self.device)
        keep = observed_steps.astype(np.float32)
        dones = self.dones[steps, envs] * (1 - self.timeouts[steps, envs]) * keep
        rewards = self._normalize_reward(self.rewards[steps, envs], env) * keep
        actions = self.actions[steps, envs] * keep[:, :, None]
        observed = np.concatenate([keep, np.ones((batch, 1), dtype=np.float32)], axis=1)
        return SequenceSamples(
            observations=images,
            actions=self.to_torch(actions),
            rewards=self.to_torch(rewards[..., None]),
            dones=self.to_torch(dones[..., None]),
            observed=self.to_torch(observed),
        )

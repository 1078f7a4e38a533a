"""Replay buffer that stores each rendered frame once and serves the crops SAC+GAARA trains on.

Pixel RL is bound by replay memory. SB3's ``ReplayBuffer`` (like the CURL, SAC+AE and DrQ reference
code) stores the observation and the next observation of every transition as full frame stacks:
``2 x 9 x 100 x 100`` bytes = 180 KB per transition for three stacked 100 px RGB frames, 126 GB for the
paper's 700k transitions. Yet each environment step renders a single new ``3 x 100 x 100`` frame (30 KB).
:class:`AugmentedPixelReplayBuffer` stores every distinct frame once and rebuilds the stacks, already
cropped, from per-transition frame indices when it samples.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from numpy.lib.stride_tricks import as_strided
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecNormalize

from sb3_gaara.common.crops import center_offset, random_crop_offsets
from sb3_gaara.common.durability import deferred_keyboard_interrupt
from sb3_gaara.common.preprocessing import check_pixel_observation_space

try:  # Check the memory the frames will need, as SB3's ReplayBuffer does
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

ANCHOR_CROPS = ("center", "random")
#: the views of the contrastive pair a sample can carry besides the observations (``AuxiliaryLoss.views``'s names)
CONTRASTIVE_VIEWS = ("anchor", "positive")
#: frame slot that holds the all-zero frame every episode start refers to (``VecFrameStack`` pads with zeros)
ZERO_SLOT = 0
#: frame slots reserved beyond one per transition, as a fraction of the transitions: the reset frame of each
#: episode needs one more slot, so 2% covers episodes of 50 steps and more without growing the store
FRAME_MARGIN = 0.02
#: factor by which the frame store grows when episodes are shorter than the margin allows
FRAME_GROWTH = 1.25


class SampledTransitions(NamedTuple):
    """The host-side part of a sample: which frames, and the transitions' small arrays (numpy, no images).

    :param obs_index: ``(B, frame_stack)`` frame slots of the observations, oldest first
    :param next_obs_index: the same for the next observations
    :param actions: ``(B, action_dim)``
    :param dones: ``(B, 1)``, ``done * (1 - timeout)`` (SB3's ``handle_timeout_termination``)
    :param rewards: ``(B, 1)``, normalized like SB3's when a ``VecNormalize`` is given
    """

    obs_index: np.ndarray
    next_obs_index: np.ndarray
    actions: np.ndarray
    dones: np.ndarray
    rewards: np.ndarray


class AugmentedReplayBufferSamples(NamedTuple):
    """SB3's ``ReplayBufferSamples`` plus the two views of the contrastive pair, when the buffer draws them.

    ``observations`` and ``next_observations`` are center crops. ``obs_anchor`` and ``obs_pos`` are set only
    for the views the buffer was built to draw (``contrastive_views``), and are ``None`` otherwise: only
    the contrastive losses of the GAARA family read them. ``obs_anchor`` is ``observations`` itself (the
    center crop; the §5.2 ``anchor_crop="random"`` ablation draws a random crop instead); ``obs_pos`` is a
    random crop of the same observation. Images stay uint8: the policy scales them, which keeps batches small.
    The image fields are strided views into one gathered block of crop windows (like
    :func:`sb3_gaara.common.crops.center_crop`, they are not contiguous): use ``reshape``, not ``view``.
    """

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    obs_anchor: th.Tensor | None
    obs_pos: th.Tensor | None
    # SB3's n-step field, kept so that code written for ReplayBufferSamples reads this tuple too.
    discounts: th.Tensor | None = None


def check_contrastive_views(views: Iterable[str]) -> tuple[str, ...]:
    """``views`` as a tuple in :data:`CONTRASTIVE_VIEWS`'s order, or a ``ValueError`` naming the valid ones."""
    if isinstance(views, str):
        raise ValueError(f"contrastive_views is a collection of view names, got the string {views!r}: write ({views!r},).")
    views = tuple(views)
    unknown = sorted(set(views) - set(CONTRASTIVE_VIEWS))
    if unknown:
        raise ValueError(
            f"contrastive_views must name views of {CONTRASTIVE_VIEWS} (or none, for samples without them), got {unknown}."
        )
    return tuple(view for view in CONTRASTIVE_VIEWS if view in views)


def infer_frame_stack(channels: int) -> int:
    """Number of stacked frames in an observation of ``channels`` channels: RGB frames (3 channels) when
    ``channels`` divides by 3, grayscale frames (1 channel) otherwise.

    The guess only decides how much memory the buffer saves, never what it returns: frames are shared
    between transitions only when they are byte-equal (see :class:`AugmentedPixelReplayBuffer`).
    """
    return channels // 3 if channels % 3 == 0 else channels


class AugmentedPixelReplayBuffer(ReplayBuffer):
    """SB3 ``ReplayBuffer`` of pixel observations that stores each frame once and samples cropped views.

    **Storage.** An observation is a channel-first stack of ``frame_stack`` frames, oldest first, as SB3's
    ``VecFrameStack`` builds it. Distinct frames live once in a frame store ``(slots, c, H, W)``; each
    transition keeps, per env, the slots of the ``frame_stack`` frames of its observation and of its next
    observation (``obs_frame_index``, ``next_obs_frame_index``). In steady state one frame per transition
    is stored (30 KB at ``3 x 100 x 100``) instead of SB3's two full stacks (180 KB).

    **Bit-identity by construction.** ``add()`` relies on no stacking convention. A frame of the new
    transition reuses a stored slot only when it is *byte-equal* to the frame that slot holds:

    * frame ``j`` of ``obs`` against frame ``j`` of the previous ``next_obs`` of the same env (the same
      step seen twice; at an episode start, or after a truncation whose ``next_obs`` is the terminal
      observation, the frames differ and the new ones are stored);
    * frame ``j`` of ``next_obs`` against frame ``j + 1`` of ``obs`` (the stack shifted by one step);
    * an all-zero frame (``VecFrameStack``'s padding at episode start) against the permanent zero slot;
    * frame ``j`` of ``obs`` against frame ``j - 1`` of ``obs`` (the first frame repeated at episode start, as
      the ``dmc-*`` envs' ``frame_stack`` and the papers' code stack).

    Anything else is stored. Every stack the buffer returns is therefore the one that was added, for any
    frame stacking (``frame_stack=1`` included), truncated terminal observations, several envs and
    arbitrary user data; a wrong ``frame_stack`` costs memory, never correctness.

    **Slot lifetime.** Each slot counts the live transitions' references to it. When the ring overwrites
    a transition, its references are dropped and slots that reach zero go to a free list; new frames take
    free slots first. A slot is thus never overwritten while a live transition points at it, whatever the
    episode lengths. The store starts with ``(buffer_size + frame_stack + 1) * n_envs`` slots plus
    ``FRAME_MARGIN`` and grows by ``FRAME_GROWTH`` when short episodes (each one stores one reset frame)
    need more, copying the frames once.

    **Memory stays lazy.** The store is allocated at the first ``add()``, so that building a buffer to load a
    model for inference costs nothing. On the host it is ``np.zeros``, whose pages the OS maps only when
    written: it costs what has been written. A device store (``storage_device``) is allocated whole. The
    only buffer-size arrays besides SB3's actions, rewards, dones and timeouts are the two ``int32`` index
    arrays (``2 * frame_stack * 4`` bytes per transition).

    **Save and load.** SB3's ``save_replay_buffer`` pickles the buffer: only the used slots are written, as a
    host array, and loading rebuilds the store on ``storage_device`` (on the CPU when a saved CUDA device is
    missing). Frame reuse resumes where it stopped.

    **Sampling.** ``sample()`` draws ``batch_inds`` and ``env_indices`` with exactly the ``np.random``
    calls of SB3's ``ReplayBuffer`` (``optimize_memory_usage`` included), then the crop offsets with
    ``th.randint`` on the storage device, for the ``contrastive_views`` only (no view, no draw: the observations
    are center crops): seeded alike, it returns SB3's sample cropped by :mod:`sb3_gaara.common.crops`. Crop
    windows are gathered straight from the frame store, with no Python loop over samples and no full-size stack
    ever built (see :meth:`_gather_windows`); the image fields of the
    sample are strided views of the gathered windows.

    :param buffer_size: maximum number of transitions
    :param observation_space: channel-first uint8 image space (SB3 transposes channel-last images with
        ``VecTransposeImage`` before they reach the buffer)
    :param action_space: action space
    :param device: device of the sampled tensors
    :param n_envs: number of parallel environments
    :param optimize_memory_usage: SB3's meaning: the next observation of a transition is the observation of
        the following one (the newest transition keeps its own). It saves no memory here, where frames are
        stored once anyway, and is kept so that results match SB3's buffer with the same setting.
    :param handle_timeout_termination: treat time-limit truncation as non-terminal (SB3 semantics:
        ``dones * (1 - timeouts)``)
    :param image_size: side of the crops (84)
    :param anchor_crop: ``"center"`` (SAC+GAARA) or ``"random"`` (the first version, §5.2)
    :param frame_stack: frames per observation; ``None`` infers it with :func:`infer_frame_stack`
        (9 channels: 3 RGB frames)
    :param storage_device: where the frames live. ``None`` (default): host memory, cropped by numpy, then
        moved to ``device``. A torch device (``"cuda"``, ``"cpu"``, or ``"auto"`` for ``device``): a torch
        tensor on that device, cropped there by batched indexing, so that sampling on a GPU never copies
        images from the host. On a CPU-only machine keep ``None``: numpy gathers the windows about 10x faster
        than torch's CPU indexing kernel (``"cpu"`` runs the device code path, which tests use).
    :param contrastive_views: the views of the contrastive pair each sample carries, of ``"anchor"`` and
        ``"positive"`` (the names ``AuxiliaryLoss.views`` declares); the others are ``None``. Empty by default:
        only the GAARA family's contrastive losses read them (``GAARASAC`` passes its variant's), and a view not
        asked for costs no crop and no random draw, so that the algorithms that read neither keep their random
        stream to themselves.
    """

    obs_frame_index: np.ndarray
    next_obs_frame_index: np.ndarray

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
        frame_stack: int | None = None,
        storage_device: th.device | str | None = None,
        contrastive_views: Iterable[str] = (),
    ) -> None:
        channels, height, width = check_pixel_observation_space(observation_space, image_size)
        assert isinstance(observation_space, spaces.Box)
        if not is_image_space_channels_first(observation_space):
            raise ValueError(
                f"AugmentedPixelReplayBuffer stores channel-first images, got observation shape {observation_space.shape}. "
                "SB3 algorithms transpose channel-last images (VecTransposeImage) before the buffer sees them; "
                "when building the buffer yourself, pass the transposed space (e.g. VecTransposeImage(env).observation_space)."
            )
        if anchor_crop not in ANCHOR_CROPS:
            raise ValueError(f"anchor_crop must be one of {ANCHOR_CROPS}, got {anchor_crop!r}.")
        views = check_contrastive_views(contrastive_views)
        frame_stack = infer_frame_stack(channels) if frame_stack is None else frame_stack
        if isinstance(frame_stack, bool) or not isinstance(frame_stack, (int, np.integer)) or frame_stack < 1:
            raise ValueError(f"frame_stack must be a positive integer or None, got {frame_stack!r}.")
        if channels % frame_stack != 0:
            raise ValueError(
                f"frame_stack={frame_stack} does not divide the {channels} channels of the observations: each of the "
                f"stacked frames must have the same number of channels (e.g. 3 RGB frames = 9 channels)."
            )
        # ReplayBuffer.__init__ would allocate SB3's two full-stack arrays: run BaseBuffer's and SB3 2.9's
        # remaining ReplayBuffer lines instead.
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        if optimize_memory_usage and handle_timeout_termination:
            raise ValueError(
                "ReplayBuffer does not support optimize_memory_usage = True "
                "and handle_timeout_termination = True simultaneously."
            )
        self.optimize_memory_usage = optimize_memory_usage
        self.actions = np.zeros(
            (self.buffer_size, self.n_envs, self.action_dim), dtype=self._maybe_cast_dtype(action_space.dtype)
        )
        self.rewards = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.dones = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.handle_timeout_termination = handle_timeout_termination
        self.timeouts = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)

        self.image_size = image_size
        self.anchor_crop = anchor_crop
        self.contrastive_views = views
        self.frame_stack = int(frame_stack)
        self.frame_shape = (channels // self.frame_stack, height, width)
        if storage_device is None:
            self.storage_device: th.device | None = None
        else:
            self.storage_device = self.device if storage_device == "auto" else get_device(storage_device)
        self.obs_frame_index = np.zeros((self.buffer_size, self.n_envs, self.frame_stack), dtype=np.int32)
        self.next_obs_frame_index = np.zeros((self.buffer_size, self.n_envs, self.frame_stack), dtype=np.int32)

        # Frame store, allocated by the first add(): slots [0, _n_frame_slots) have been used, slot 0 is zeros.
        self._frame_capacity = self.n_envs * (self.buffer_size + self.frame_stack + 1) + 1
        self._frame_capacity += int(np.ceil(FRAME_MARGIN * self.n_envs * self.buffer_size))
        self._frames: np.ndarray | th.Tensor | None = None
        self._frame_refs: np.ndarray | None = None  # live references per slot
        self._n_frame_slots = 1
        self._free_slots: deque[int] = deque()
        # Host copy of each env's last next observation (frame-flattened) and its slots, to reuse frames
        # by comparing on the host, without reading the store back from the device.
        self._last_next_frames: np.ndarray | None = None
        self._last_next_index = np.zeros((self.n_envs, self.frame_stack), dtype=np.int64)

    # ------------------------------------------------------------------------------------------ sizes

    @property
    def frame_nbytes(self) -> int:
        """Bytes of one stored frame."""
        return int(np.prod(self.frame_shape))

    def _transition_arrays_nbytes(self) -> int:
        arrays = (self.actions, self.rewards, self.dones, self.timeouts, self.obs_frame_index, self.next_obs_frame_index)
        return sum(array.nbytes for array in arrays)

    def nbytes(self) -> int:
        """Bytes the buffer occupies: per-transition arrays, frames and their bookkeeping.

        Host storage counts the slots written so far (the OS maps the store's pages lazily, so slots never
        written cost nothing); device storage counts the whole allocated store.
        """
        slots = 0
        if self._frames is not None:
            slots = self._n_frame_slots if self.storage_device is None else self._frame_capacity
        last_next = 0 if self._last_next_frames is None else self._last_next_frames.nbytes
        return self._transition_arrays_nbytes() + slots * (self.frame_nbytes + 8) + last_next

    def bytes_per_transition(self) -> float:
        """:meth:`nbytes` divided by the capacity in transitions (``buffer_size * n_envs``); read it when full."""
        return self.nbytes() / (self.buffer_size * self.n_envs)

    # ------------------------------------------------------------------------------------------ adding

    # A Ctrl-C between the reference-count updates below would free slots that live transitions still use, and
    # rl-zoo3 saves the buffer after a Ctrl-C to resume from it: the interrupt waits until the add is done.
    @deferred_keyboard_interrupt
    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        obs = self._check_images(obs, "obs")
        next_obs = self._check_images(next_obs, "next_obs")
        # Reshape to handle multi-dim and discrete action spaces, see SB3 GH #970 #1392
        action = np.asarray(action).reshape((self.n_envs, self.action_dim))
        if self._frames is None:
            self._warn_if_memory_is_short()
            self._allocate_frames(self._frame_capacity)
        assert self._frame_refs is not None

        obs_frames = obs.reshape(self.n_envs, self.frame_stack, -1)
        next_frames = next_obs.reshape(self.n_envs, self.frame_stack, -1)
        obs_index, next_index, new_frames = self._match_frames(obs_frames, next_frames)

        # Reused slots first gain this transition's references, then the overwritten transition drops its own:
        # with buffer_size=1 the overwritten transition is the previous one, whose frames are being reused.
        index = np.concatenate([obs_index, next_index], axis=1)
        self._reference(index[index > ZERO_SLOT])
        if self.full:
            self._release(self.pos)
        if new_frames:
            slots = self._allocate_slots(len(new_frames))
            self._write_frames(slots, np.stack(new_frames).reshape(len(new_frames), *self.frame_shape))
            is_new = index < 0
            index[is_new] = slots[-index[is_new] - 1]
            # A new frame counts one reference per place it stands for (obs frame j+1 is also next_obs frame j).
            self._reference(index[is_new])
        obs_index, next_index = index[:, : self.frame_stack], index[:, self.frame_stack :]

        self.obs_frame_index[self.pos] = obs_index
        self.next_obs_frame_index[self.pos] = next_index
        if self._last_next_frames is None:
            self._last_next_frames = np.empty_like(next_frames)
        self._last_next_frames[...] = next_frames
        self._last_next_index[...] = next_index

        # SB3 2.9 ReplayBuffer.add from here on.
        self.actions[self.pos] = np.array(action)
        self.rewards[self.pos] = np.array(reward)
        self.dones[self.pos] = np.array(done)
        if self.handle_timeout_termination:
            self.timeouts[self.pos] = np.array([info.get("TimeLimit.truncated", False) for info in infos])
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0

    def _check_images(self, images: np.ndarray, name: str) -> np.ndarray:
        """``images`` as a ``(n_envs, C, H, W)`` array of the space's dtype, or a ``ValueError`` saying what is wrong."""
        array = np.asarray(images)
        expected = (self.n_envs, *self.obs_shape)
        if array.shape == self.obs_shape and self.n_envs == 1:
            array = array[None]  # SB3's buffer broadcasts a single env's observation too
        if array.shape != expected:
            raise ValueError(
                f"{name} must hold one channel-first observation per env, shape (n_envs, C, H, W) = {expected}, "
                f"got {array.shape}. Channel-last images must be transposed first (SB3's VecTransposeImage)."
            )
        if array.dtype != self.observation_space.dtype:
            raise ValueError(
                f"{name} must be {self.observation_space.dtype} images like the observation space, got dtype {array.dtype}: "
                "store the original (unnormalized) images."
            )
        return array

    def _match_frames(
        self, obs_frames: np.ndarray, next_frames: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        """Slots of the frames of a new transition, per env; ``-1 - i`` for ``new_frames[i]``, not stored yet.

        :param obs_frames: ``(n_envs, frame_stack, c * H * W)`` frames of ``obs``
        :param next_frames: the same for ``next_obs``
        """
        assert self._frame_refs is not None
        n_envs, stack = obs_frames.shape[:2]
        obs_zero = np.logical_not(obs_frames.any(axis=2))
        next_zero = np.logical_not(next_frames.any(axis=2))
        # Frame j of next_obs is frame j + 1 of obs when the env stacks frames (the stack moved one step).
        next_is_shifted: np.ndarray = (next_frames[:, :-1] == obs_frames[:, 1:]).all(axis=2)
        if self._last_next_frames is not None:
            # Frame j of obs is frame j of the previous next_obs when the env did not reset in between. The previous
            # transition is live, so its slots are; the check guards the invariant that a slot no live transition
            # references may be recycled at any moment and must never be reused.
            last_index = self._last_next_index
            last_alive = (last_index == ZERO_SLOT) | (self._frame_refs[last_index] > 0)
            obs_is_last: np.ndarray = (obs_frames == self._last_next_frames).all(axis=2) & last_alive
        else:
            obs_is_last = np.zeros((n_envs, stack), dtype=bool)

        obs_index = np.empty((n_envs, stack), dtype=np.int64)
        next_index = np.empty((n_envs, stack), dtype=np.int64)
        new_frames: list[np.ndarray] = []
        # Frame j of obs is frame j - 1 of obs when a stack repeats its first frame at reset (the papers' stacking).
        obs_repeats: np.ndarray = (obs_frames[:, 1:] == obs_frames[:, :-1]).all(axis=2)
        for env in range(n_envs):
            for j in range(stack):
                if obs_is_last[env, j]:
                    obs_index[env, j] = self._last_next_index[env, j]
                elif obs_zero[env, j]:
                    obs_index[env, j] = ZERO_SLOT
                elif j > 0 and obs_repeats[env, j - 1]:
                    obs_index[env, j] = obs_index[env, j - 1]
                else:
                    new_frames.append(obs_frames[env, j])
                    obs_index[env, j] = -len(new_frames)
            for j in range(stack):
                if j + 1 < stack and next_is_shifted[env, j]:
                    next_index[env, j] = obs_index[env, j + 1]
                elif next_zero[env, j]:
                    next_index[env, j] = ZERO_SLOT
                else:
                    new_frames.append(next_frames[env, j])
                    next_index[env, j] = -len(new_frames)
        return obs_index, next_index, new_frames

    def _reference(self, slots: np.ndarray) -> None:
        """Count one more live reference to each of ``slots`` (repeated slots count once per occurrence)."""
        assert self._frame_refs is not None
        np.add.at(self._frame_refs, slots, 1)

    def _release(self, pos: int) -> None:
        """Drop the references of the transitions at ``pos`` (about to be overwritten); free unreferenced slots."""
        assert self._frame_refs is not None
        index = np.concatenate([self.obs_frame_index[pos], self.next_obs_frame_index[pos]], axis=1).ravel()
        index = index[index != ZERO_SLOT]
        np.subtract.at(self._frame_refs, index, 1)
        self._free_slots.extend(np.unique(index[self._frame_refs[index] == 0]).tolist())

    def _allocate_slots(self, count: int) -> np.ndarray:
        """``count`` slots that no live transition references: freed ones first, then never-used ones."""
        slots = np.empty(count, dtype=np.int64)
        for i in range(count):
            if self._free_slots:
                slots[i] = self._free_slots.popleft()
                continue
            if self._n_frame_slots == self._frame_capacity:
                self._grow_frames()
            slots[i] = self._n_frame_slots
            self._n_frame_slots += 1
        return slots

    def _warn_if_memory_is_short(self) -> None:
        """SB3's warning when the full buffer will not fit in host memory, given at the first ``add()``: a buffer
        built to load a model for acting (``enjoy``) never stores a frame, so it never warns."""
        if psutil is None or self.storage_device is not None:
            return
        expected = self._frame_capacity * self.frame_nbytes + self._transition_arrays_nbytes()
        available = psutil.virtual_memory().available
        if expected > available:
            warnings.warn(
                "This system does not have apparently enough memory to store the complete "
                f"replay buffer {expected / 1e9:.2f}GB > {available / 1e9:.2f}GB"
            )

    # ------------------------------------------------------------------------------------------ the frame store

    def _allocate_frames(self, capacity: int) -> None:
        """Allocate a store of ``capacity`` slots (host: pages mapped lazily by the OS) and copy the used slots over."""
        if capacity >= np.iinfo(np.int32).max:
            raise ValueError(f"The frame store would need {capacity} slots, more than int32 frame indices can address.")
        shape = (capacity, *self.frame_shape)
        frames: np.ndarray | th.Tensor
        try:
            if self.storage_device is None:
                frames = np.zeros(shape, dtype=self.observation_space.dtype)
            else:
                frames = th.empty(shape, dtype=th.uint8, device=self.storage_device)
                frames[ZERO_SLOT] = 0
        except (MemoryError, RuntimeError) as error:  # th.cuda.OutOfMemoryError is a RuntimeError
            where = "host memory" if self.storage_device is None else f"{self.storage_device} memory"
            raise MemoryError(
                f"The replay buffer's frame store ({capacity} frames of {self.frame_shape}, "
                f"{capacity * self.frame_nbytes / 1e9:.1f} GB) does not fit in {where}: lower buffer_size "
                f"(now {self.buffer_size * self.n_envs} transitions)."
            ) from error
        refs = np.zeros(capacity, dtype=np.int64)
        if self._frames is not None:
            assert self._frame_refs is not None
            if isinstance(frames, np.ndarray):
                frames[: self._n_frame_slots] = self._frames[: self._n_frame_slots]
            else:
                frames[: self._n_frame_slots] = self._frames[: self._n_frame_slots]  # type: ignore[assignment]
            refs[: self._n_frame_slots] = self._frame_refs[: self._n_frame_slots]
        self._frames, self._frame_refs, self._frame_capacity = frames, refs, capacity

    def _grow_frames(self) -> None:
        self._allocate_frames(max(self._frame_capacity + 1, int(self._frame_capacity * FRAME_GROWTH)))

    def _write_frames(self, slots: np.ndarray, frames: np.ndarray) -> None:
        if isinstance(self._frames, np.ndarray):
            self._frames[slots] = frames
        else:
            assert self._frames is not None
            device = self._frames.device
            self._frames[th.as_tensor(slots, device=device)] = th.as_tensor(frames).to(device)

    def reset(self) -> None:
        super().reset()
        self._n_frame_slots = 1
        self._free_slots.clear()
        if self._frame_refs is not None:
            self._frame_refs[:] = 0
        self._last_next_frames = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickle only the slots used so far, as a host array (SB3's ``save_replay_buffer`` pickles the buffer)."""
        state = self.__dict__.copy()
        if self._frames is not None:
            used = self._frames[: self._n_frame_slots]
            state["_frames"] = used.cpu().numpy() if isinstance(used, th.Tensor) else used
            assert self._frame_refs is not None
            state["_frame_refs"] = self._frame_refs[: self._n_frame_slots]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the full-capacity store on the storage device (the CPU when a saved CUDA device is missing)."""
        frames, refs = state.pop("_frames"), state.pop("_frame_refs")
        # Buffers pickled before contrastive_views existed drew both views for every algorithm: they load with the
        # constructor's default (none), and the model that reads views declares them again when it loads the buffer.
        state.setdefault("contrastive_views", ())
        self.__dict__.update(state)
        self._frames, self._frame_refs = None, None
        if self.storage_device is not None:
            self.storage_device = get_device(self.storage_device)
        if frames is not None:
            self._allocate_frames(self._frame_capacity)
            assert self._frames is not None and self._frame_refs is not None
            self._write_frames(np.arange(len(frames)), frames)
            self._frame_refs[: len(refs)] = refs

    def move_frames(self, storage_device: th.device | str | None) -> None:
        """Keep the frames in ``storage_device`` from now on (a torch device, ``"auto"`` for ``device``, or ``None``
        for host memory), moving the stored ones there: e.g. a replay buffer saved by a CPU run, loaded by a
        ``cuda_graphs=True`` model that crops on the GPU. The same path as a save and a load."""
        state = self.__getstate__()
        state["storage_device"] = (
            None if storage_device is None else self.device if storage_device == "auto" else storage_device
        )
        self.__setstate__(state)

    # ------------------------------------------------------------------------------------------ sampling

    def _next_frame_index(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> np.ndarray:
        """Slots of the next observations, with SB3's ``optimize_memory_usage`` meaning when it is set."""
        if not self.optimize_memory_usage:
            return self.next_obs_frame_index[batch_inds, env_indices]
        # SB3 stores next_obs in the following transition's observation slot, which the following add()
        # overwrites: only the newest transition still has its own next_obs.
        following = (batch_inds + 1) % self.buffer_size
        is_newest = (following == self.pos)[:, None]
        return np.where(
            is_newest, self.next_obs_frame_index[batch_inds, env_indices], self.obs_frame_index[following, env_indices]
        )

    def get_stacks(self, batch_inds: np.ndarray, env_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Full-size, uncropped ``(B, C, H, W)`` observations and next observations of the given transitions.

        What SB3's ``ReplayBuffer`` would hold in ``observations`` and ``next_observations`` (for tests,
        inspection and export; training samples crops with :meth:`sample`).
        """
        if self._frames is None:
            raise ValueError("The replay buffer is empty: add transitions first.")
        stacks = []
        for index in (self.obs_frame_index[batch_inds, env_indices], self._next_frame_index(batch_inds, env_indices)):
            if isinstance(self._frames, np.ndarray):
                frames = self._frames[index]
            else:
                frames = self._frames[th.as_tensor(index, dtype=th.long, device=self._frames.device)].cpu().numpy()
            stacks.append(frames.reshape(len(index), *self.obs_shape))
        return stacks[0], stacks[1]

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> AugmentedReplayBufferSamples:  # type: ignore[override]
        """SB3's ``sample``, cropped: :meth:`sample_transitions` draws the transitions, :meth:`crop` the views."""
        return self.crop(self.sample_transitions(batch_size, env))

    def sample_transitions(self, batch_size: int, env: VecNormalize | None = None) -> SampledTransitions:
        """Draw ``batch_size`` transitions with SB3's ``ReplayBuffer.sample`` (the same ``np.random`` calls) and
        return their host-side part: frame slots, actions, rewards and dones, no images.

        Split from :meth:`crop` so that a CUDA-graph update copies these few bytes into its static inputs and
        crops inside the graph (:class:`sb3_gaara.gaara.cuda_graphs.GraphedGradientStep`).
        """
        return super().sample(batch_size, env)  # type: ignore[return-value]  # our _get_samples below

    def draw_after_next_add(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw now the ``batch_inds`` and ``env_indices`` that :meth:`sample_transitions` would draw right after the
        next :meth:`add`: the same ``np.random`` calls, over the rows the buffer will hold then.

        This lets a gradient step start before the environment step whose transition the next ``add`` stores
        (``GAARASAC(overlap_env_step=True)``). Every drawn row except :attr:`pos` (the row that ``add`` writes, which
        then holds the newest transition) is already what it will be, with its frames: slots are never overwritten
        while a live transition refers to them. :meth:`gather_transitions` turns the draw into the sample.
        """
        if self.optimize_memory_usage:
            raise ValueError(
                "optimize_memory_usage=True makes a transition's next observation the following transition's, which the "
                "next add() writes: a batch cannot be drawn before it. Use optimize_memory_usage=False."
            )
        # SB3 2.9 BaseBuffer.sample and ReplayBuffer._get_samples, with the upper bound after one more add().
        upper_bound = self.buffer_size if self.full or self.pos + 1 == self.buffer_size else self.pos + 1
        batch_inds = np.random.randint(0, upper_bound, size=batch_size)
        env_indices = np.random.randint(0, high=self.n_envs, size=(batch_size,))
        return batch_inds, env_indices

    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env: VecNormalize | None = None
    ) -> SampledTransitions:
        # Same draw of env indices as SB3's ReplayBuffer._get_samples, so both return the same transitions.
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        return self.gather_transitions(batch_inds, env_indices, env)

    def gather_transitions(
        self, batch_inds: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None = None
    ) -> SampledTransitions:
        """The host-side part of the transitions at rows ``batch_inds`` of envs ``env_indices`` (what
        :meth:`sample_transitions` returns once it has drawn them)."""
        if env is not None and env.norm_obs:
            raise ValueError("VecNormalize(norm_obs=True) would turn uint8 images into floats: use norm_obs=False.")
        return SampledTransitions(
            obs_index=self.obs_frame_index[batch_inds, env_indices],
            next_obs_index=self._next_frame_index(batch_inds, env_indices),
            actions=self.actions[batch_inds, env_indices, :],
            dones=(self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])).reshape(-1, 1),
            rewards=self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env),
        )

    def crop(self, transitions: SampledTransitions) -> AugmentedReplayBufferSamples:
        """The sample of ``transitions``: their small arrays moved to ``device``, their views cropped out of the
        frame store on the storage device."""
        obs_index, next_obs_index = transitions.obs_index, transitions.next_obs_index
        if np.array_equal(next_obs_index[:, :-1], obs_index[:, 1:]):
            # Stacked frames: the next observation is the observation shifted by one frame, so the two center
            # crops are overlapping views of frame_stack + 1 windows instead of 2 * frame_stack.
            stack_index, next_first = np.concatenate([obs_index, next_obs_index[:, -1:]], axis=1), 1
        else:
            stack_index, next_first = np.concatenate([obs_index, next_obs_index], axis=1), obs_index.shape[1]
        if self.storage_device is not None:
            stack_index = th.as_tensor(stack_index, dtype=th.long, device=self.storage_device)  # type: ignore[assignment]
        return self.crop_views(
            stack_index,
            next_first,
            actions=self.to_torch(transitions.actions),
            dones=self.to_torch(transitions.dones),
            rewards=self.to_torch(transitions.rewards),
        )

    def crop_views(
        self,
        stack_index: np.ndarray | th.Tensor,
        next_first: int,
        actions: th.Tensor,
        dones: th.Tensor,
        rewards: th.Tensor,
    ) -> AugmentedReplayBufferSamples:
        """Crop the sampled stacks out of the frame store, on the storage device, into the sampled views.

        Everything here runs on tensors already on their devices, without a host round trip, so that a CUDA
        graph can hold it.

        :param stack_index: ``(B, n)`` slots of the frames to crop, oldest first: the observation's
            ``frame_stack`` frames, then the next observation's from column ``next_first`` on (numpy for a
            host store, a long tensor on the storage device otherwise)
        :param next_first: column of ``stack_index`` where the next observation's frames begin
        """
        batch_size, n_stack = stack_index.shape
        stack = self.frame_stack
        _, height, width = self.frame_shape
        size = self.image_size
        device = th.device("cpu") if self.storage_device is None else self.storage_device
        obs_index = stack_index[:, :stack]
        center = center_offset(height, size) * width + center_offset(width, size)
        index = [stack_index]
        start = [th.full((batch_size, n_stack), center, device=device)]
        # The random crops of the views asked for, the positive's first; the center anchor is the observations.
        # §5.2's random anchor is a second, independent random crop.
        random_views = [view for view in ("positive", "anchor") if view in self.contrastive_views]
        if self.anchor_crop == "center" and "anchor" in random_views:
            random_views.remove("anchor")
        first_window: dict[str, int] = {}  # the first window of each view drawn
        for view in random_views:
            top, left = random_crop_offsets(batch_size, height, width, size, device=device)
            first_window[view] = n_stack + stack * len(first_window)
            index.append(obs_index)
            start.append((top * width + left)[:, None].expand(-1, stack))
        if isinstance(stack_index, th.Tensor):
            all_index: np.ndarray | th.Tensor = th.cat(index, dim=1)  # type: ignore[arg-type]
        else:
            all_index = np.concatenate(index, axis=1)
        windows = self._gather_windows(all_index, th.cat(start, dim=1)).to(self.device)

        def window_view(first: int) -> th.Tensor:
            """``(B, frame_stack * c, size, size)`` view of the ``frame_stack`` windows from ``first`` on."""
            _, n_windows, channels, length = windows.shape
            return windows.as_strided(
                (batch_size, stack * channels, size, size),
                (n_windows * channels * length, length, width, 1),
                windows.storage_offset() + first * channels * length,
            )

        observations = window_view(0)
        obs_anchor = obs_pos = None
        if "anchor" in self.contrastive_views:
            obs_anchor = window_view(first_window["anchor"]) if "anchor" in first_window else observations
        if "positive" in self.contrastive_views:
            obs_pos = window_view(first_window["positive"])
        return AugmentedReplayBufferSamples(
            observations=observations,
            actions=actions,
            next_observations=window_view(next_first),
            dones=dones,
            rewards=rewards,
            obs_anchor=obs_anchor,
            obs_pos=obs_pos,
        )

    def _gather_windows(self, index: np.ndarray | th.Tensor, start: th.Tensor) -> th.Tensor:
        """Gather crop windows of frames, one contiguous copy per window and channel.

        The ``size x size`` crop at (top, left) of an ``H x W`` channel is contained in the contiguous run of
        ``(size - 1) * W + size`` bytes that starts at its first pixel ``top * W + left``: viewing each
        channel as overlapping runs indexed by their start offset turns the crop into a fancy-index
        gather of whole runs (memcpy-speed, where per-pixel gathers are several times slower). The caller
        views each run as ``size`` rows of stride ``W``; the ``W - size`` bytes after each row are unused.

        :param index: ``(B, n)`` slots of the frames to crop (numpy for a host store, else a long tensor on the
            storage device)
        :param start: ``(B, n)`` offsets ``top * W + left`` of the crops, on the storage device
        :return: ``(B, n, c, (size - 1) * W + size)`` uint8 tensor on the storage device
        """
        assert self._frames is not None
        slots, channels, height, width = self._frames.shape
        size = self.image_size
        length = (size - 1) * width + size
        n_starts = (height - size) * width + (width - size) + 1
        if isinstance(self._frames, np.ndarray):
            assert isinstance(index, np.ndarray)
            pixel, channel, slot = self._frames.strides[3], self._frames.strides[1], self._frames.strides[0]
            runs = as_strided(
                self._frames, (slots, channels, n_starts, length), (slot, channel, pixel, pixel), writeable=False
            )
            return th.from_numpy(runs[index[:, :, None], np.arange(channels), start.numpy()[:, :, None]])
        device = self._frames.device
        runs_t = self._frames.as_strided(
            (slots, channels, n_starts, length), (channels * height * width, height * width, 1, 1)
        )
        index_t = th.as_tensor(index, dtype=th.long, device=device)
        return runs_t[index_t[:, :, None], th.arange(channels, device=device), start[:, :, None]]

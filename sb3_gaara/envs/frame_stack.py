"""Frame stacking as the papers' code does it: the last ``k`` frames along the channel axis, oldest first, and
at reset the first frame repeated ``k`` times.

SB3's ``VecFrameStack`` (rl-zoo3's ``frame_stack`` key) pads the stack with black frames at reset instead. The
GAARA, SAC+AE, CURL and DrQ reference code repeat the first frame, so the ``dmc-*`` and ``PixelReach-v0``
environments stack that way themselves (their ``frame_stack`` keyword, built on :class:`FrameStacker`), and
:class:`FrameStack` does the same for any other environment with a ``Box`` observation space.
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def check_frame_stack(frame_stack: int) -> int:
    """``frame_stack`` as an ``int``, or a ``ValueError`` if it is not a positive integer."""
    if isinstance(frame_stack, bool) or not isinstance(frame_stack, (int, np.integer)) or frame_stack < 1:
        raise ValueError(f"frame_stack must be a positive integer, got {frame_stack!r}")
    return int(frame_stack)


def channel_axis(space: spaces.Box, channels_first: bool | None = None) -> int:
    """The axis along which frames of ``space`` stack: 0 for vectors and channel-first images, -1 for channel-last
    images. ``channels_first=None`` guesses as SB3 does (the smallest dimension of an image is its channels)."""
    if len(space.shape) != 3:
        return 0
    if channels_first is None:
        channels_first = int(np.argmin(space.shape)) == 0
    return 0 if channels_first else -1


class FrameStacker:
    """The stack of the last ``frame_stack`` frames, concatenated along ``axis``, oldest first.

    :meth:`reset` fills the stack with its frame (the first frame repeated ``frame_stack`` times) and :meth:`push`
    drops the oldest frame for a new one. Both return a new array, which the caller may keep or change.

    :param frame_stack: frames per observation
    :param axis: the channel axis of a frame (0 channel-first, -1 channel-last)
    """

    def __init__(self, frame_stack: int, axis: int = 0) -> None:
        self.frame_stack = check_frame_stack(frame_stack)
        self.axis = axis
        self._frames: deque[np.ndarray] = deque(maxlen=self.frame_stack)

    def stacked_space(self, space: spaces.Box) -> spaces.Box:
        """The observation space of the stacks of frames of ``space`` (bounds repeated along the axis)."""
        low = np.concatenate([space.low] * self.frame_stack, axis=self.axis)
        high = np.concatenate([space.high] * self.frame_stack, axis=self.axis)
        return spaces.Box(low=low, high=high, dtype=space.dtype)  # type: ignore[arg-type]

    def reset(self, frame: np.ndarray) -> np.ndarray:
        """The first stack of an episode: ``frame`` repeated ``frame_stack`` times."""
        first = np.array(frame)  # one copy: the stack only reads its frames
        self._frames.clear()
        self._frames.extend([first] * self.frame_stack)
        return self.stack()

    def push(self, frame: np.ndarray) -> np.ndarray:
        """The stack after a step: the oldest frame out, ``frame`` in last."""
        if len(self._frames) != self.frame_stack:
            raise gym.error.ResetNeeded("Call reset() before step(): the frame stack is empty.")
        self._frames.append(np.array(frame))
        return self.stack()

    def stack(self) -> np.ndarray:
        """The current stack, as a new array."""
        return np.concatenate(list(self._frames), axis=self.axis)


class FrameStack(gym.Wrapper[np.ndarray, Any, np.ndarray, Any]):
    """Stack the last ``frame_stack`` observations of ``env`` along their channel axis, the first one repeated at reset.

    For an env with ``(3, H, W)`` frames, ``FrameStack(env, 3)`` observes ``(9, H, W)``: oldest frame first, and
    after ``reset()`` the first frame three times, as the papers' code stacks (SB3's ``VecFrameStack`` pads with
    black frames instead). Channel-last ``(H, W, 3)`` frames stack to ``(H, W, 9)``, vectors to a vector ``k`` times
    longer. ``render()`` is the env's, one frame. The ``dmc-*`` and ``PixelReach-v0`` envs take a ``frame_stack``
    keyword that does the same without a wrapper.

    :param env: an env with a ``Box`` observation space
    :param frame_stack: observations per stack
    :param channels_first: whether image frames are channel-first; ``None`` guesses from the space (the smallest
        dimension is the channels', as SB3 assumes)
    """

    def __init__(self, env: gym.Env, frame_stack: int, channels_first: bool | None = None) -> None:
        super().__init__(env)
        if not isinstance(env.observation_space, spaces.Box):
            raise ValueError(f"FrameStack needs a Box observation space, got {env.observation_space}")
        self.stacker = FrameStacker(frame_stack, channel_axis(env.observation_space, channels_first))
        self.observation_space = self.stacker.stacked_space(env.observation_space)

    @property
    def frame_stack(self) -> int:
        return self.stacker.frame_stack

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self.stacker.reset(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self.stacker.push(obs), reward, terminated, truncated, info

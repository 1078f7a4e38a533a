"""PixelReach: a point mass that must reach a goal, seen only through small rendered RGB frames.

The CPU-scale stand-in for the DeepMind Control tasks. It keeps what matters to a pixel agent
(channel-first uint8 frames larger than the crops, action repeat, a goal that must be read from
the image, episodes that end by truncation) and drops what is slow (MuJoCo, OpenGL, 100 px
frames, 1000-step episodes), so that "GAARA learns from pixels" can be checked in minutes on two
CPU cores.

* State: the mass's position ``p`` and the goal ``g`` in ``[-1, 1]^2``, both drawn uniformly at
  each reset (the goal moves between episodes, so the policy must read it from the pixels).
* Action: a velocity in ``[-1, 1]^2``; each simulator step moves the mass by ``max_speed * action``
  (clipped to the arena). No inertia: one frame holds the whole state.
* Reward: ``-||p - g||`` per simulator step, summed over the ``action_repeat`` steps of an agent step.
  A random policy scores about ``-episode_length`` (it hovers near its start, about 1 away from the
  goal); a policy that heads straight to the goal scores about ``-5`` with the defaults.
* Episodes: ``episode_length`` simulator steps, then ``truncated=True`` (no terminal states, as in
  the DeepMind Control suite).
* Observation: ``(3, size, size)`` uint8. The arena is drawn ``margin`` pixels inside the frame so
  that every position stays inside the center crop the agent acts and trains on; the mass is a
  red disk, the goal a green one, anti-aliased so that sub-pixel moves change the image. With
  ``frame_stack=k``, the last ``k`` frames ``(3k, size, size)``, oldest first, the first frame repeated
  ``k`` times at reset (as the ``dmc-*`` envs stack).
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_gaara.envs.frame_stack import FrameStacker, check_frame_stack

#: Gymnasium id registered by :func:`register_pixel_reach`.
PIXEL_REACH_ID = "PixelReach-v0"

_BACKGROUND = np.array([24, 24, 32], dtype=np.float32)
_ARENA = np.array([48, 48, 64], dtype=np.float32)
_GOAL = np.array([40, 210, 80], dtype=np.float32)
_MASS = np.array([240, 60, 50], dtype=np.float32)


class PixelReachEnv(gym.Env[np.ndarray, np.ndarray]):
    """Point-mass reach rendered with numpy (see the module docstring for the task).

    :param size: side of the rendered frame in pixels (40; train with ``image_size=32`` crops)
    :param margin: pixels between the frame's edge and the arena; keep it at least
        ``(size - image_size) // 2`` plus the disk radius so that the center crop sees the whole arena
    :param radius: radius of the mass and goal disks in pixels
    :param action_repeat: simulator steps per agent step, the action held and rewards summed (2)
    :param episode_length: simulator steps per episode (50), i.e. ``episode_length / action_repeat``
        agent steps
    :param max_speed: distance covered per simulator step at full action (0.1, arena side 2)
    :param frame_stack: frames per observation, stacked along the channels, oldest first, the first frame repeated
        at reset (1: single frames)
    :param render_mode: ``None`` or ``"rgb_array"`` (``render()`` returns the last frame as ``(H, W, 3)``)
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        size: int = 40,
        margin: int = 7,
        radius: float = 2.5,
        action_repeat: int = 2,
        episode_length: int = 50,
        max_speed: float = 0.1,
        frame_stack: int = 1,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        for name, value in (("size", size), ("action_repeat", action_repeat), ("episode_length", episode_length)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= margin < size / 2 - radius:
            raise ValueError(f"margin={margin} leaves no arena in a {size} px frame with disks of radius {radius}.")
        if max_speed <= 0:
            raise ValueError(f"max_speed must be positive, got {max_speed}")
        self.size = int(size)
        self.margin = int(margin)
        self.radius = float(radius)
        self.action_repeat = int(action_repeat)
        self.episode_length = int(episode_length)
        self.max_speed = float(max_speed)
        self.render_mode = render_mode
        self.frame_stack = check_frame_stack(frame_stack)
        self.observation_space = spaces.Box(0, 255, shape=(3, self.size, self.size), dtype=np.uint8)
        #: the stack of the last ``frame_stack`` frames (``None`` without stacking)
        self._stacker: FrameStacker | None = None
        if self.frame_stack > 1:
            self._stacker = FrameStacker(self.frame_stack, axis=0)
            self.observation_space = self._stacker.stacked_space(self.observation_space)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        # Pixel centres, and the static part of every frame (background with the arena drawn on it).
        coords = np.arange(self.size, dtype=np.float32) + 0.5
        self._rows, self._cols = np.meshgrid(coords, coords, indexing="ij")
        inside = (
            (self._rows >= self.margin)
            & (self._rows <= self.size - self.margin)
            & (self._cols >= self.margin)
            & (self._cols <= self.size - self.margin)
        )
        self._canvas = np.where(inside[..., None], _ARENA, _BACKGROUND).astype(np.float32)
        self._position = np.zeros(2)
        self._goal = np.zeros(2)
        self._elapsed_steps = 0
        self._last_frame: np.ndarray | None = None

    def _to_pixels(self, point: np.ndarray) -> tuple[float, float]:
        """(row, col) of an arena point; y grows upwards in the arena, rows downwards in the image."""
        span = self.size - 2 * self.margin
        col = self.margin + (point[0] + 1.0) / 2.0 * span
        row = self.margin + (1.0 - point[1]) / 2.0 * span
        return row, col

    def _disk(self, point: np.ndarray) -> np.ndarray:
        """Coverage in ``[0, 1]`` of an anti-aliased disk centred on ``point`` (one-pixel soft edge)."""
        row, col = self._to_pixels(point)
        distance = np.sqrt((self._rows - row) ** 2 + (self._cols - col) ** 2)
        return np.clip(self.radius + 0.5 - distance, 0.0, 1.0)[..., None]

    def _render_frame(self) -> np.ndarray:
        frame = self._canvas
        goal = self._disk(self._goal)
        frame = frame * (1.0 - goal) + _GOAL * goal
        mass = self._disk(self._position)
        frame = frame * (1.0 - mass) + _MASS * mass
        self._last_frame = np.round(frame).astype(np.uint8)
        return np.ascontiguousarray(self._last_frame.transpose(2, 0, 1))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a new start and goal (``seed`` reseeds the draw); return the first frame."""
        super().reset(seed=seed)
        self._position = self.np_random.uniform(-1.0, 1.0, size=2)
        self._goal = self.np_random.uniform(-1.0, 1.0, size=2)
        self._elapsed_steps = 0
        frame = self._render_frame()
        obs = frame if self._stacker is None else self._stacker.reset(frame)
        return obs, {"distance": float(np.linalg.norm(self._position - self._goal))}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Hold ``action`` for ``action_repeat`` simulator steps, summing the rewards ``-distance``."""
        velocity = np.clip(np.asarray(action, dtype=np.float64).reshape(2), -1.0, 1.0) * self.max_speed
        reward = 0.0
        truncated = False
        for _ in range(self.action_repeat):
            self._position = np.clip(self._position + velocity, -1.0, 1.0)
            reward -= float(np.linalg.norm(self._position - self._goal))
            self._elapsed_steps += 1
            if self._elapsed_steps >= self.episode_length:
                truncated = True
                break
        distance = float(np.linalg.norm(self._position - self._goal))
        frame = self._render_frame()
        obs = frame if self._stacker is None else self._stacker.push(frame)
        return obs, reward, False, truncated, {"distance": distance}

    def __getstate__(self) -> dict[str, Any]:
        """The env's attributes for ``pickle``: the whole state is numpy (positions, goal, step counter, frame stack,
        random generator), so a copy continues bit-exactly, as a resumed study run must.

        gymnasium draws the random generator of an env never seeded at its first use; it is drawn here, before
        pickling, so that an env pickled before its first reset also resets to the same start and goal as its copy.
        """
        _ = self.np_random  # gymnasium draws the generator when it is first read
        return self.__dict__.copy()

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """The last frame as ``(H, W, 3)`` for ``render_mode="rgb_array"``."""
        if self.render_mode != "rgb_array":
            return None
        if self._last_frame is None:
            raise gym.error.ResetNeeded("Call reset() before render().")
        return self._last_frame.copy()


def register_pixel_reach() -> str:
    """Register :data:`PIXEL_REACH_ID` (idempotent: an id already registered is left as it is); return the id.

    Only an entry-point string is recorded, so registering imports nothing heavy.
    """
    if PIXEL_REACH_ID not in gym.registry:
        gym.register(id=PIXEL_REACH_ID, entry_point="sb3_gaara.envs.pixel_reach:PixelReachEnv")
    return PIXEL_REACH_ID

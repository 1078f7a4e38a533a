"""DeepMind Control suite tasks as Gymnasium environments with pixel observations.

The observation protocol is the one of the PlaNet benchmark as used by SAC+AE, CURL, DrQ and
SAC+GAARA: one RGB frame of 100x100 pixels per agent step, the same action repeated a
per-domain number of simulator steps (rewards summed), and 1000 simulator steps per episode,
ending as a truncation (the tasks have no terminal states; a time limit is not a failure, so
the critic must bootstrap through it). With ``frame_stack=k`` the observation is the last ``k``
frames along the channel axis, oldest first, and at reset the first frame repeated ``k`` times, as
the papers' code stacks (SB3's ``VecFrameStack`` pads with black frames instead, and still works:
the default ``frame_stack=1`` observes single frames).

The simulation, the dm_env -> Gymnasium conversion, seeding and the interactive viewer come
from shimmy's ``DmControlCompatibilityV0``; this class adds pixels, action repeat, action
normalisation and the episode length.

Environments pickle (``pickle``, ``cloudpickle``, ``copy.deepcopy``) at any point of an episode and continue
bit-exactly: see :meth:`DMCEnv.__getstate__`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_gaara.envs.frame_stack import FrameStacker, channel_axis, check_frame_stack
from sb3_gaara.envs.tasks import EPISODE_LENGTH, check_task, default_action_repeat, default_camera_id

if TYPE_CHECKING:
    from shimmy.dm_control_compatibility import DmControlCompatibilityV0


class RenderingBackendError(RuntimeError):
    """MuJoCo could not render: no usable OpenGL backend in this process."""


def _gl_fix_hint() -> str:
    current = os.environ.get("MUJOCO_GL")
    return (
        f"MuJoCo renders through the OpenGL backend named by the MUJOCO_GL environment variable "
        f"(now {'MUJOCO_GL=' + current if current else 'unset'}); it is read once, when dm_control is first imported, "
        "so set it before starting Python:\n"
        "  - headless Linux (GPU driver or Mesa on the CPU): export MUJOCO_GL=egl "
        "(Debian/Ubuntu packages: libegl1 libgl1-mesa-dri; MUJOCO_EGL_DEVICE_ID picks the GPU);\n"
        "  - headless without EGL: export MUJOCO_GL=osmesa (package: libosmesa6; slow, CPU only);\n"
        "  - desktop with a display: export MUJOCO_GL=glfw.\n"
        "Alternatively pass from_pixels=False to use state observations, which need no rendering."
    )


def _choose_headless_gl_backend() -> None:
    """Select EGL when nothing is configured and there is no display.

    Left unset, dm_control tries GLFW first; on a headless Linux machine the ``glfw`` module
    still imports, so dm_control settles on it and the first render fails with "an OpenGL
    platform library has not been loaded". EGL works there with a GPU driver or Mesa. This
    runs when an environment is built, not at import time, and only while the choice can
    still take effect (before dm_control's renderer is imported). A value set by the user is
    always kept.
    """
    if os.environ.get("MUJOCO_GL") or not sys.platform.startswith("linux"):
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if "dm_control._render" in sys.modules:
        return
    os.environ["MUJOCO_GL"] = "egl"


def _import_dm_control() -> tuple[Any, type[DmControlCompatibilityV0]]:
    """Import ``dm_control.suite`` and shimmy's wrapper, turning OpenGL set-up failures into a clear error.

    dm_control loads the OpenGL backend named by MUJOCO_GL at import time, so a missing or
    broken backend (e.g. ``MUJOCO_GL=osmesa`` without libOSMesa) surfaces here as an
    unrelated-looking ``AttributeError`` or ``RuntimeError`` from PyOpenGL.
    """
    try:
        from dm_control import suite
        from shimmy.dm_control_compatibility import DmControlCompatibilityV0
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] in {"dm_control", "shimmy", "mujoco"}:
            raise ModuleNotFoundError(
                f"DeepMind Control environments need {error.name!r}: pip install 'shimmy[dm-control]' dm_control mujoco",
                name=error.name,
            ) from error
        raise RenderingBackendError(f"Importing dm_control failed ({error!r}).\n{_gl_fix_hint()}") from error
    except (RuntimeError, AttributeError, ImportError, OSError) as error:
        raise RenderingBackendError(f"Importing dm_control failed ({error!r}).\n{_gl_fix_hint()}") from error
    return suite, DmControlCompatibilityV0


def _as_size(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    """Normalise an ``int`` or ``(height, width)`` argument and check it is positive."""
    height, width = (value, value) if isinstance(value, (int, np.integer)) else value
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(height), int(width)


def _positive_int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def has_display() -> bool:
    """Whether a window can open here: on Linux only with ``DISPLAY`` or ``WAYLAND_DISPLAY`` set."""
    return not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class _DeprecatedSetTotalMass(logging.Filter):
    """Drop dm_control's absl warning "compiler attribute 'settotalmass' is deprecated".

    dm_control's own model files (cheetah, walker, ...) still use the attribute, so MuJoCo 3 warns at every
    environment creation about files no user can change. Only that message is dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "compiler attribute 'settotalmass' is deprecated" not in record.getMessage()


def _quiet_known_dm_control_warnings() -> None:
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(existing, _DeprecatedSetTotalMass) for existing in absl_logger.filters):
        absl_logger.addFilter(_DeprecatedSetTotalMass())


#: MuJoCo model arrays up to this size are pickled whole with an env; larger ones (textures, meshes, height fields)
#: only where they changed since the env was built, and otherwise checked against the rebuilt model by a digest.
_MODEL_ARRAY_INLINE_BYTES = 1 << 16


def _model_arrays(model: Any) -> dict[str, np.ndarray]:
    """Every array of a ``mujoco.MjModel``, by attribute name (views: writing them changes the model)."""
    arrays = {}
    for name in dir(model):
        if not name.startswith("_"):
            value = getattr(model, name)
            if isinstance(value, np.ndarray):
                arrays[name] = value
    return arrays


def _digest(array: np.ndarray) -> bytes:
    """A digest of an array's bytes, to tell whether a large model array changed (not for security)."""
    return hashlib.sha1(np.ascontiguousarray(array).data, usedforsecurity=False).digest()


def _large_model_array_digests(model: Any) -> dict[str, bytes]:
    return {name: _digest(array) for name, array in _model_arrays(model).items() if array.nbytes > _MODEL_ARRAY_INLINE_BYTES}


class DMCEnv(gym.Env[np.ndarray, np.ndarray]):
    """A DeepMind Control suite task with pixel (or state) observations and action repeat.

    Registered as ``dmc-<domain>-<task>`` (see :func:`sb3_gaara.envs.register_dmc_envs`);
    every keyword below can be passed to ``gym.make`` or rl-zoo3's ``--env-kwargs``.

    :param domain_name: suite domain, e.g. ``"cheetah"``.
    :param task_name: task of that domain, e.g. ``"run"``.
    :param from_pixels: observe an RGB frame (uint8) instead of the flattened physical state (float32).
    :param height: height of the observed frame in pixels.
    :param width: width of the observed frame in pixels.
    :param camera_id: camera of the observed frame; default 0, 2 for the quadruped (camera 0 loses it).
    :param action_repeat: simulator steps per agent step, the action held and rewards summed;
        default from the PlaNet benchmark table (cartpole 8, reacher/cheetah/ball_in_cup 4, others 2).
    :param episode_length: simulator steps per episode (before action repeat); the episode then
        ends with ``truncated=True``.
    :param channels_first: observe frames as ``(3, H, W)`` (what SB3's CNN policies and
        ``VecFrameStack`` expect without a transpose) rather than ``(H, W, 3)``.
    :param frame_stack: frames per observation, stacked along the channel axis, oldest first:
        ``(3k, H, W)`` (``(H, W, 3k)`` channel-last), and at reset the first frame repeated ``k`` times,
        as in the papers' code (3 in the papers; state vectors stack to a ``k`` times longer vector).
    :param render_mode: ``None``, ``"rgb_array"`` (``render()`` returns a frame) or ``"human"``
        (a MuJoCo viewer window, needs a display).
    :param render_size: ``(height, width)`` of frames returned by ``render()``; defaults to the
        observation size, in which case the latest observed frame is returned without rendering again.
    :param task_kwargs: passed to ``dm_control.suite.load`` (e.g. ``{"random": 0}``); the episode
        length is enforced here, so the suite's own ``time_limit`` is disabled unless given.
    :param environment_kwargs: passed to ``dm_control.suite.load`` (e.g. ``{"flat_observation": True}``).
    """

    @property  # type: ignore[override]
    def metadata(self) -> dict[str, Any]:
        """gymnasium's metadata: ``"human"`` is declared only where a window can open (:func:`has_display`).

        Checkers that render in every declared mode (gymnasium's ``check_env``) then pass on a headless machine.
        It is a property because ``gymnasium.make`` reads a class's plain ``metadata`` and, for a ``"human"`` it
        does not list, wraps the env in its pygame ``HumanRendering`` window, which fails on a headless machine
        without saying why; past a property, ``render_mode="human"`` reaches the constructor, which says what to
        do instead.
        """
        return self._metadata

    @metadata.setter
    def metadata(self, value: dict[str, Any]) -> None:
        self._metadata = value

    def __init__(
        self,
        domain_name: str,
        task_name: str,
        *,
        from_pixels: bool = True,
        height: int = 100,
        width: int = 100,
        camera_id: int | None = None,
        action_repeat: int | None = None,
        episode_length: int = EPISODE_LENGTH,
        channels_first: bool = True,
        frame_stack: int = 1,
        render_mode: str | None = None,
        render_size: int | tuple[int, int] | None = None,
        task_kwargs: Mapping[str, Any] | None = None,
        environment_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        check_task(domain_name, task_name)
        #: the constructor's arguments, from which an unpickled env rebuilds its simulation (see __getstate__)
        self._init_kwargs: dict[str, Any] = {
            "domain_name": domain_name,
            "task_name": task_name,
            "from_pixels": from_pixels,
            "height": height,
            "width": width,
            "camera_id": camera_id,
            "action_repeat": action_repeat,
            "episode_length": episode_length,
            "channels_first": channels_first,
            "frame_stack": frame_stack,
            "render_mode": render_mode,
            "render_size": render_size,
            "task_kwargs": None if task_kwargs is None else dict(task_kwargs),
            "environment_kwargs": None if environment_kwargs is None else dict(environment_kwargs),
        }
        self._metadata = {
            "render_modes": ["rgb_array", "human"] if has_display() else ["rgb_array"],
            "render_fps": 25,
        }
        if render_mode == "human" and not has_display():
            raise ValueError(
                "render_mode='human' opens a MuJoCo viewer window and needs a display, but neither DISPLAY nor "
                "WAYLAND_DISPLAY is set. On a headless machine use render_mode='rgb_array' (rl-zoo3: "
                "python -m rl_zoo3.record_video) or skip rendering (python -m rl_zoo3.enjoy --no-render)."
            )
        if render_mode is not None and render_mode not in ("rgb_array", "human"):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.domain_name = domain_name
        self.task_name = task_name
        self.from_pixels = bool(from_pixels)
        self.height, self.width = _as_size((height, width), "height/width")
        self.camera_id = default_camera_id(domain_name) if camera_id is None else int(camera_id)
        self.action_repeat = _positive_int(
            default_action_repeat(domain_name) if action_repeat is None else action_repeat, "action_repeat"
        )
        self.episode_length = _positive_int(episode_length, "episode_length")
        self.channels_first = bool(channels_first)
        self.frame_stack = check_frame_stack(frame_stack)
        self.render_mode = render_mode
        self.render_size = (self.height, self.width) if render_size is None else _as_size(render_size, "render_size")

        _choose_headless_gl_backend()
        _quiet_known_dm_control_warnings()
        suite, compatibility_env = _import_dm_control()
        task_kwargs = {"time_limit": float("inf"), **(task_kwargs or {})}
        dm_env = suite.load(
            domain_name,
            task_name,
            task_kwargs=task_kwargs,
            environment_kwargs=dict(environment_kwargs) if environment_kwargs else None,
        )
        # shimmy opens its viewer only for "human"; frames for "rgb_array" are rendered here so that
        # observations and videos share one code path (and one error message).
        self._dmc = compatibility_env(dm_env, render_mode="human" if render_mode == "human" else None)
        self._closed = False
        #: digests of the model's large arrays as built, before any episode changed them (see __getstate__)
        self._model_digests = _large_model_array_digests(self._dmc.physics.model.ptr)

        n_cameras = int(self._dmc.physics.model.ncam)
        if (self.from_pixels or render_mode == "rgb_array") and not 0 <= self.camera_id < n_cameras:
            self._dmc.close()
            raise ValueError(
                f"camera_id={self.camera_id} does not exist in DeepMind Control domain {domain_name!r}, "
                f"which has cameras 0..{n_cameras - 1}"
            )

        action_spec = dm_env.action_spec()
        self._action_low = np.broadcast_to(action_spec.minimum, action_spec.shape).astype(np.float64)
        self._action_high = np.broadcast_to(action_spec.maximum, action_spec.shape).astype(np.float64)
        # Squashing policies (SAC) act in [-1, 1]; the suite's bounds happen to be [-1, 1] too, but
        # rescaling keeps that an implementation detail of dm_control rather than an assumption here.
        self.action_space = spaces.Box(-1.0, 1.0, shape=action_spec.shape, dtype=np.float32)

        if self.from_pixels:
            frame_shape = (3, self.height, self.width) if self.channels_first else (self.height, self.width, 3)
            self.observation_space: spaces.Box = spaces.Box(0, 255, shape=frame_shape, dtype=np.uint8)
        else:
            n_state = sum(int(np.prod(spec.shape)) for spec in dm_env.observation_spec().values())
            self.observation_space = spaces.Box(-np.inf, np.inf, shape=(n_state,), dtype=np.float32)
        #: the stack of the last ``frame_stack`` observations (``None`` without stacking)
        self._stacker: FrameStacker | None = None
        if self.frame_stack > 1:
            self._stacker = FrameStacker(self.frame_stack, channel_axis(self.observation_space, self.channels_first))
            self.observation_space = self._stacker.stacked_space(self.observation_space)

        self.metadata = {**self.metadata, "render_fps": 1.0 / (dm_env.control_timestep() * self.action_repeat)}
        self._elapsed_steps = 0
        self._last_frame: np.ndarray | None = None

    @property
    def physics(self) -> Any:
        """The dm_control ``Physics`` of the task (for inspection and custom rendering)."""
        return self._dmc.physics

    def _render_frame(self, height: int, width: int) -> np.ndarray:
        try:
            return self._dmc.physics.render(height=height, width=width, camera_id=self.camera_id)
        except Exception as error:  # any failure here is the GL context's: arguments were validated above
            raise RenderingBackendError(
                f"Rendering {self.domain_name}-{self.task_name} failed ({error!r}).\n{_gl_fix_hint()}"
            ) from error

    def _observation(self, state: Mapping[str, Any]) -> np.ndarray:
        if not self.from_pixels:
            return np.concatenate([np.asarray(value, dtype=np.float32).ravel() for value in state.values()])
        self._last_frame = self._render_frame(self.height, self.width)
        if self.channels_first:
            return np.ascontiguousarray(self._last_frame.transpose(2, 0, 1))
        return self._last_frame.copy()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` reseeds the task's random state (same seed, same initial state and frame)."""
        super().reset(seed=seed)
        state, info = self._dmc.reset(seed=seed)
        self._elapsed_steps = 0
        obs = self._observation(state)
        return (obs if self._stacker is None else self._stacker.reset(obs)), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Hold ``action`` for ``action_repeat`` simulator steps, summing the rewards."""
        scaled = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        dm_action = self._action_low + (scaled + 1.0) * 0.5 * (self._action_high - self._action_low)
        reward = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        state: Mapping[str, Any] = {}
        for _ in range(self.action_repeat):
            state, step_reward, terminated, truncated, info = self._dmc.step(dm_action)
            reward += float(step_reward)
            self._elapsed_steps += 1
            if self._elapsed_steps >= self.episode_length and not terminated:
                truncated = True
            if terminated or truncated:
                break
        obs = self._observation(state)
        return (obs if self._stacker is None else self._stacker.push(obs)), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """Return an ``(H, W, 3)`` frame for ``render_mode="rgb_array"``; the viewer draws itself for ``"human"``."""
        if self.render_mode != "rgb_array":
            return None
        if self.from_pixels and self._last_frame is not None and self.render_size == (self.height, self.width):
            return self._last_frame.copy()
        return self._render_frame(*self.render_size)

    def __getstate__(self) -> dict[str, Any]:
        """The env's state for ``pickle``: a checkpointed study run, resumed, continues exactly as if never stopped.

        An unpickled env gives bit-identical observations, rewards, ``terminated`` / ``truncated`` and infos for the
        same actions, and the same initial states and frames at its later ``reset()`` calls without a seed (the
        random states continue), whether it was pickled before its first reset, mid-episode or right after an
        episode's end and reset. OpenGL contexts cannot be pickled: the unpickled env rebuilds the dm_control
        environment from the constructor's arguments and then restores

        * the env's own attributes: the frame stack's frames, the step counter of the episode, the last frame,
          gymnasium's ``np_random`` and its seed (drawn here if the env never drew it, as reading it would);
        * the full MuJoCo simulation state, ``mujoco.mj_getState`` with ``mjSTATE_INTEGRATION`` (time, positions,
          velocities, actuator activations and history, the constraint solver's warm-start accelerations, controls,
          applied forces, equality constraints' activity, mocap poses, user data, plugin state), after which
          ``mj_step1`` recomputes the quantities that depend on positions and velocities, as dm_control's step
          leaves them (rendering reads them);
        * the MuJoCo model where an episode changed it (tasks move their targets in the model: reacher, finger,
          fish, manipulator, swimmer...; quadruped's escape draws a new terrain in the height field): the model's
          options and its arrays, the small ones whole, the large ones (textures, meshes, height fields) only
          where they changed since the env was built; the others must be identical in the rebuilt model, or
          unpickling fails rather than continuing differently;
        * the task's attributes, among them its ``np.random.RandomState`` (``task.random``, which draws the initial
          states and is also shimmy's ``np_random``) and per-episode values;
        * dm_control's episode step counter and ``_reset_next_step``, and shimmy's gymnasium random state.

        A closed env unpickles closed.
        """
        _ = self.np_random  # gymnasium draws the generator of an env never seeded when it is first read
        state = {name: value for name, value in self.__dict__.items() if name != "_dmc"}
        state["_simulation"] = None if self._closed else self._simulation_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the dm_control environment and restore what :meth:`__getstate__` saved."""
        state = dict(state)
        simulation = state.pop("_simulation")
        DMCEnv.__init__(self, **state["_init_kwargs"])
        if simulation is None:
            self.close()
        else:
            self._restore_simulation(simulation, state["_model_digests"])
        self.__dict__.update(state)

    def _simulation_state(self) -> dict[str, Any]:
        import mujoco

        dm_env = self._dmc._env
        physics = dm_env.physics
        model, data = physics.model.ptr, physics.data.ptr
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        physics_state = np.empty(mujoco.mj_stateSize(model, spec), dtype=np.float64)
        mujoco.mj_getState(model, data, physics_state, spec)
        model_arrays = {
            name: array.copy()
            for name, array in _model_arrays(model).items()
            if array.nbytes <= _MODEL_ARRAY_INLINE_BYTES or _digest(array) != self._model_digests.get(name)
        }
        options: dict[str, Any] = {}
        for name in dir(model.opt):
            if not name.startswith("_"):
                value = getattr(model.opt, name)
                if isinstance(value, np.ndarray):
                    options[name] = value.copy()
                elif isinstance(value, (int, float)):
                    options[name] = value
        return {
            "physics_state": physics_state,
            "model_arrays": model_arrays,
            "model_options": options,
            "task": dict(dm_env.task.__dict__),
            "step_count": dm_env._step_count,
            "reset_next_step": dm_env._reset_next_step,
            "shimmy": {name: value for name, value in vars(self._dmc).items() if name in ("_np_random", "_np_random_seed")},
        }

    def _restore_simulation(self, simulation: dict[str, Any], model_digests: dict[str, bytes]) -> None:
        import mujoco

        dm_env = self._dmc._env
        physics = dm_env.physics
        model, data = physics.model.ptr, physics.data.ptr
        for name, value in simulation["model_options"].items():
            if isinstance(value, np.ndarray):
                np.copyto(getattr(model.opt, name), value)
            else:
                setattr(model.opt, name, value)
        arrays = _model_arrays(model)
        for name, value in simulation["model_arrays"].items():
            np.copyto(arrays[name], value)
        # self._model_digests are still the rebuilt model's, as built.
        for name, digest in model_digests.items():
            if name not in simulation["model_arrays"] and self._model_digests.get(name) != digest:
                raise RuntimeError(
                    f"Cannot restore {self.domain_name}-{self.task_name} exactly: its rebuilt MuJoCo model differs from "
                    f"the pickled env's in {name!r} (is the model built with unseeded randomness?)"
                )
        mujoco.mj_setState(model, data, simulation["physics_state"], mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_step1(model, data)
        dm_env.task.__dict__.update(simulation["task"])
        dm_env._step_count = simulation["step_count"]
        dm_env._reset_next_step = simulation["reset_next_step"]
        vars(self._dmc).update(simulation["shimmy"])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._dmc.close()
        super().close()

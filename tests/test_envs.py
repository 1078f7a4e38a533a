"""DeepMind Control pixel environments: registration, observations, action repeat, episodes, seeding, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from sb3_gaara.envs import ACTION_REPEAT, DMC_TASKS, EPISODE_LENGTH, FrameStack, dmc_env_id, register_dmc_envs
from sb3_gaara.envs.dmc import DMCEnv, RenderingBackendError, _choose_headless_gl_backend, has_display
from sb3_gaara.envs.pixel_reach import PixelReachEnv

REPO_ROOT = Path(__file__).resolve().parents[1]
ALL_IDS = register_dmc_envs()
# Some tests import dm_control directly, before any environment is built; choose the OpenGL backend
# first, as building an environment would, or dm_control settles on GLFW on a headless machine.
_choose_headless_gl_backend()


def _make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(env_id, disable_env_checker=True, **kwargs)


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (OpenGL backends are chosen once per process)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


def _headless_environ(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"}}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env.update(overrides)
    return env


def test_task_table_matches_installed_dm_control():
    from dm_control import suite

    assert tuple(DMC_TASKS) == tuple(suite.ALL_TASKS)


def test_ids_are_registered_lazily_and_idempotently():
    assert ALL_IDS == [f"dmc-{domain}-{task}" for domain, task in DMC_TASKS]
    assert {"dmc-cheetah-run", "dmc-walker-walk", "dmc-ball_in_cup-catch", "dmc-quadruped-run"} <= set(ALL_IDS)
    spec = gym.spec("dmc-cheetah-run")
    assert spec.entry_point == "sb3_gaara.envs.dmc:DMCEnv"
    assert spec.kwargs == {"domain_name": "cheetah", "task_name": "run"}
    assert register_dmc_envs() == ALL_IDS  # a second call changes nothing and does not warn about re-registration


def test_importing_the_package_registers_the_ids_without_loading_dm_control():
    result = _python(
        """
        import sys
        import gymnasium as gym
        import sb3_gaara
        assert "dmc-cheetah-run" in gym.registry, "sb3_gaara/__init__.py must call sb3_gaara.envs.register_dmc_envs()"
        loaded = [name for name in ("dm_control", "mujoco", "shimmy") if name in sys.modules]
        assert not loaded, loaded
        """,
        _headless_environ(),
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_every_id_constructs_and_renders(env_id: str):
    env = _make(env_id)
    try:
        assert env.observation_space == gym.spaces.Box(0, 255, (3, 100, 100), np.uint8)
        assert isinstance(env.action_space, gym.spaces.Box) and env.action_space.dtype == np.float32
        assert np.all(env.action_space.low == -1.0) and np.all(env.action_space.high == 1.0)
        obs, _ = env.reset(seed=0)
        assert obs.shape == (3, 100, 100) and obs.dtype == np.uint8
        assert obs.std() > 0, "blank frame: the camera shows nothing"
    finally:
        env.close()


@pytest.mark.parametrize("frame_stack", [1, 3])
def test_passes_gymnasium_and_sb3_env_checkers(frame_stack: int):
    import warnings

    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    # gymnasium's checker renders in every declared mode: "human" is declared only where a window can open.
    # Made through gymnasium.make, so that the checker can rebuild it (from its spec) in the other render modes.
    env = _make("dmc-cheetah-run", frame_stack=frame_stack, episode_length=40).unwrapped
    assert ("human" in env.metadata["render_modes"]) == has_display()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env)
        sb3_check_env(env)
    assert not [str(warning.message) for warning in caught if issubclass(warning.category, UserWarning)]
    env.close()


def test_pixel_observation_and_options():
    env = _make("dmc-cheetah-run")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (3, 100, 100) and obs.dtype == np.uint8
    assert isinstance(reward, float) and not terminated and not truncated
    env.close()

    env = _make("dmc-cheetah-run", height=64, width=80, channels_first=False, camera_id=1)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 80, 3) and env.observation_space.shape == (64, 80, 3)
    assert env.unwrapped.camera_id == 1
    env.close()


def test_state_observations():
    env = _make("dmc-cheetah-run", from_pixels=False)
    obs, _ = env.reset(seed=0)
    # cheetah: position (8) and velocity (9)
    assert obs.shape == (17,) and obs.dtype == np.float32
    assert env.observation_space.shape == (17,) and env.observation_space.dtype == np.float32
    env.close()


@pytest.mark.parametrize(
    ("env_id", "repeat"),
    [
        ("dmc-cartpole-swingup", 8),
        ("dmc-reacher-easy", 4),
        ("dmc-cheetah-run", 4),
        ("dmc-finger-spin", 2),
        ("dmc-ball_in_cup-catch", 4),
        ("dmc-walker-walk", 2),
        ("dmc-hopper-hop", 2),
    ],
)
def test_default_action_repeat(env_id: str, repeat: int):
    env = _make(env_id, from_pixels=False)
    assert env.unwrapped.action_repeat == repeat
    # videos play at the agent's rate
    assert env.metadata["render_fps"] == pytest.approx(1.0 / (env.unwrapped._dmc.control_timestep() * repeat))
    env.close()
    assert ACTION_REPEAT.get(env_id.split("-")[1], 2) == repeat


def test_default_camera_follows_the_quadruped():
    assert _make("dmc-quadruped-walk", from_pixels=False).unwrapped.camera_id == 2
    assert _make("dmc-walker-walk", from_pixels=False).unwrapped.camera_id == 0


def test_action_repeat_sums_rewards_of_the_repeated_simulator_steps():
    repeat = 3
    repeated = _make("dmc-walker-walk", from_pixels=False, action_repeat=repeat)
    single = _make("dmc-walker-walk", from_pixels=False, action_repeat=1)
    obs_repeated, _ = repeated.reset(seed=7)
    obs_single, _ = single.reset(seed=7)
    np.testing.assert_array_equal(obs_repeated, obs_single)
    rng = np.random.default_rng(0)
    for _ in range(5):
        action = rng.uniform(-1, 1, size=repeated.action_space.shape).astype(np.float32)
        obs_repeated, reward, *_ = repeated.step(action)
        rewards = []
        for _ in range(repeat):
            obs_single, single_reward, *_ = single.step(action)
            rewards.append(single_reward)
        assert reward == pytest.approx(sum(rewards), abs=1e-12)
        np.testing.assert_allclose(obs_repeated, obs_single)
    assert sum(rewards) > 0, "walker rewards are positive: a zero sum would make the check vacuous"


def test_pixel_frames_follow_the_state():
    env = _make("dmc-cheetah-run", action_repeat=4)
    obs, _ = env.reset(seed=0)
    next_obs, *_ = env.step(np.ones(env.action_space.shape, dtype=np.float32))
    assert not np.array_equal(obs, next_obs)


@pytest.mark.parametrize(("env_id", "agent_steps"), [("dmc-cartpole-swingup", 125), ("dmc-walker-walk", 500)])
def test_episode_is_1000_simulator_steps_and_ends_by_truncation(env_id: str, agent_steps: int):
    env = _make(env_id, from_pixels=False)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    for step in range(1, agent_steps + 1):
        _, _, terminated, truncated, _ = env.step(action)
        assert not terminated
        assert truncated == (step == agent_steps), step
    assert env.unwrapped._elapsed_steps == EPISODE_LENGTH


def test_episode_length_is_counted_in_simulator_steps():
    # 10 simulator steps with a repeat of 3: agent steps of 3, 3, 3 and a last one of 1.
    env = _make("dmc-cheetah-run", from_pixels=False, action_repeat=3, episode_length=10)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    truncations = [env.step(action)[3] for _ in range(4)]
    assert truncations == [False, False, False, True]
    assert env.unwrapped._elapsed_steps == 10
    env.reset()
    assert env.unwrapped._elapsed_steps == 0


def test_lqr_episodes_are_also_capped():
    # dm_control's LQR tasks have no time limit of their own.
    env = _make("dmc-lqr-lqr_2_1", from_pixels=False, episode_length=20)
    env.reset(seed=0)
    steps = 0
    terminated = truncated = False
    while not (terminated or truncated):
        _, _, terminated, truncated, _ = env.step(np.zeros(env.action_space.shape, dtype=np.float32))
        steps += 1
    assert truncated and steps == 10


def test_same_seed_same_first_frame():
    env = _make("dmc-reacher-easy")
    first, _ = env.reset(seed=123)
    again, _ = env.reset(seed=123)
    other, _ = env.reset(seed=124)
    np.testing.assert_array_equal(first, again)
    # reacher's target position is random: another seed shows another frame
    assert not np.array_equal(first, other)
    fresh = _make("dmc-reacher-easy")
    np.testing.assert_array_equal(fresh.reset(seed=123)[0], first)


def test_rgb_array_rendering():
    env = _make("dmc-cheetah-run", render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (100, 100, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, obs.transpose(1, 2, 0))

    big = _make("dmc-cheetah-run", render_mode="rgb_array", render_size=(120, 160))
    big.reset(seed=0)
    assert big.render().shape == (120, 160, 3)
    no_render = DMCEnv("cheetah", "run")
    no_render.reset(seed=0)
    assert no_render.render() is None


def test_human_rendering_without_display_says_what_to_do(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if not sys.platform.startswith("linux"):
        pytest.skip("display detection is Linux-specific")
    with pytest.raises(ValueError, match="--no-render"):
        _make("dmc-cheetah-run", render_mode="human")  # not gymnasium's HumanRendering (pygame) fallback
    assert _make("dmc-cheetah-run").unwrapped.metadata["render_modes"] == ["rgb_array"]
    monkeypatch.setenv("DISPLAY", ":0")
    assert _make("dmc-cheetah-run").unwrapped.metadata["render_modes"] == ["rgb_array", "human"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"domain_name": "cheetahh", "task_name": "run"}, "Valid domains: acrobot, ball_in_cup"),
        ({"domain_name": "cheetah", "task_name": "walk"}, "Valid tasks: run"),
        ({"domain_name": "cheetah", "task_name": "run", "action_repeat": 0}, "action_repeat must be a positive integer"),
        ({"domain_name": "cheetah", "task_name": "run", "episode_length": -1}, "episode_length"),
        ({"domain_name": "cheetah", "task_name": "run", "camera_id": 7}, r"cameras 0\.\.1"),
        ({"domain_name": "cheetah", "task_name": "run", "render_mode": "ansi"}, "render_mode must be one of"),
        ({"domain_name": "cheetah", "task_name": "run", "frame_stack": 0}, "frame_stack must be a positive integer"),
    ],
)
def test_invalid_arguments_name_the_valid_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DMCEnv(**kwargs)


def test_env_id_helper():
    assert dmc_env_id("ball_in_cup", "catch") == "dmc-ball_in_cup-catch"


def test_headless_machine_gets_egl_chosen_automatically():
    result = _python(
        """
        import os
        import gymnasium as gym
        from sb3_gaara.envs import register_dmc_envs
        register_dmc_envs()
        env = gym.make("dmc-cheetah-run")
        obs, _ = env.reset(seed=0)
        assert obs.std() > 0
        print("MUJOCO_GL=" + os.environ["MUJOCO_GL"])
        """,
        _headless_environ(),
    )
    assert result.returncode == 0, result.stderr
    assert "MUJOCO_GL=egl" in result.stdout


def test_user_choice_of_backend_is_kept_and_failures_explain_the_fix():
    # GLFW without a display cannot create a context: the error must say how to fix it.
    result = _python(
        """
        import os
        import gymnasium as gym
        from sb3_gaara.envs import register_dmc_envs
        from sb3_gaara.envs.dmc import RenderingBackendError
        register_dmc_envs()
        try:
            gym.make("dmc-cheetah-run").reset(seed=0)
        except RenderingBackendError as error:
            assert os.environ["MUJOCO_GL"] == "glfw"
            print(error)
        else:
            raise SystemExit("rendering without a display unexpectedly worked")
        """,
        _headless_environ(MUJOCO_GL="glfw"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for hint in ("MUJOCO_GL=glfw", "export MUJOCO_GL=egl", "MUJOCO_GL=osmesa", "libegl1", "from_pixels=False"):
        assert hint in result.stdout, hint
    assert issubclass(RenderingBackendError, RuntimeError)


# --- frame stacking as the papers' code does it -----------------------------------------------------------------


def _frames(env_id: str, n_steps: int, seed: int, **kwargs) -> tuple[list[np.ndarray], list[bool]]:
    """The single frames of an unstacked env over ``n_steps`` (a reset after a truncation counts as a step), and
    whether each observation starts an episode."""
    env = _make(env_id, **kwargs)
    obs, _ = env.reset(seed=seed)
    frames, starts = [obs], [True]
    action = np.full(env.action_space.shape, 0.5, dtype=np.float32)
    for _ in range(n_steps):
        obs, _, terminated, truncated, _ = env.step(action)
        frames.append(obs)
        starts.append(False)
        if terminated or truncated:
            obs, _ = env.reset()
            frames.append(obs)
            starts.append(True)
    env.close()
    return frames, starts


def _expected_stack(frames: list[np.ndarray], starts: list[bool], t: int, k: int, axis: int) -> np.ndarray:
    """The papers' stack at observation ``t``: the last ``k`` frames of its episode, oldest first, the episode's
    first frame repeated where the episode is younger than ``k``."""
    start = max(i for i in range(t + 1) if starts[i])
    return np.concatenate([frames[max(start, t - j)] for j in reversed(range(k))], axis=axis)


@pytest.mark.parametrize(
    ("channels_first", "stack_shape", "axis"), [(True, (9, 48, 64), 0), (False, (48, 64, 9), -1)], ids=["CHW", "HWC"]
)
def test_frame_stack_repeats_the_first_frame_and_keeps_the_oldest_first(channels_first, stack_shape, axis):
    # cheetah, action repeat 4, episodes of 12 simulator steps: truncated at the 3rd agent step, then a reset.
    kwargs = dict(height=48, width=64, channels_first=channels_first, episode_length=12)
    frames, starts = _frames("dmc-cheetah-run", 5, seed=3, **kwargs)
    assert starts == [True, False, False, False, True, False, False]
    env = _make("dmc-cheetah-run", frame_stack=3, **kwargs)
    assert env.observation_space == gym.spaces.Box(0, 255, stack_shape, np.uint8)
    obs, _ = env.reset(seed=3)
    observations = [obs]
    action = np.full(env.action_space.shape, 0.5, dtype=np.float32)
    for step in range(5):
        obs, _, terminated, truncated, _ = env.step(action)
        assert truncated == (step == 2) and not terminated
        observations.append(obs)
        if truncated:
            observations.append(env.reset()[0])
    assert len(observations) == len(frames)
    for t, obs in enumerate(observations):
        assert obs.shape == stack_shape and obs.dtype == np.uint8 and env.observation_space.contains(obs)
        np.testing.assert_array_equal(obs, _expected_stack(frames, starts, t, 3, axis), err_msg=f"observation {t}")
    # reset: the first frame three times; after 2 steps the stack is full of distinct frames, oldest first
    first = np.split(observations[0], 3, axis=axis)
    assert all(np.array_equal(first[0], frame) for frame in first[1:])
    np.testing.assert_array_equal(np.split(observations[2], 3, axis=axis)[0], frames[0])
    np.testing.assert_array_equal(np.split(observations[3], 3, axis=axis)[0], frames[1])
    assert not np.array_equal(frames[0], frames[1])
    # after the truncation the new episode starts again with its first frame three times
    after_reset = np.split(observations[4], 3, axis=axis)
    assert all(np.array_equal(frames[4], frame) for frame in after_reset)
    env.close()


def test_frame_stack_spaces_and_rendering():
    env = _make("dmc-cheetah-run", frame_stack=3, render_mode="rgb_array")
    assert env.observation_space == gym.spaces.Box(0, 255, (9, 100, 100), np.uint8)
    assert env.unwrapped.frame_stack == 3
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(env.action_space.sample())
    frame = env.render()  # one frame, the newest of the stack
    assert frame.shape == (100, 100, 3)
    np.testing.assert_array_equal(frame, obs[6:].transpose(1, 2, 0))
    env.close()
    assert _make("dmc-cheetah-run", frame_stack=2, channels_first=False).observation_space.shape == (100, 100, 6)
    assert _make("dmc-cheetah-run").observation_space.shape == (3, 100, 100)  # frame_stack=1: single frames
    state = _make("dmc-cheetah-run", from_pixels=False, frame_stack=2)  # state vectors stack end to end
    assert state.observation_space == gym.spaces.Box(-np.inf, np.inf, (34,), np.float32)
    obs, _ = state.reset(seed=0)
    np.testing.assert_array_equal(obs[:17], obs[17:])


def test_frame_stack_wrapper_and_pixel_reach_stack_alike():
    # PixelReach's own frame_stack keyword, the FrameStack wrapper, and the frames of the unstacked env.
    stacked = PixelReachEnv(frame_stack=3, episode_length=6)
    wrapped = FrameStack(PixelReachEnv(episode_length=6), 3)
    single = PixelReachEnv(episode_length=6)
    assert stacked.observation_space == wrapped.observation_space == gym.spaces.Box(0, 255, (9, 40, 40), np.uint8)
    frames, starts = [single.reset(seed=5)[0]], [True]
    observations = [stacked.reset(seed=5)[0]]
    np.testing.assert_array_equal(wrapped.reset(seed=5)[0], observations[0])
    action = np.array([0.7, -0.3], dtype=np.float32)
    for _ in range(7):  # episodes of 3 agent steps: two truncations, each followed by a reset
        obs, _, _, truncated, _ = stacked.step(action)
        np.testing.assert_array_equal(wrapped.step(action)[0], obs)
        frame, _, _, single_truncated, _ = single.step(action)
        assert truncated == single_truncated
        observations.append(obs)
        frames.append(frame)
        starts.append(False)
        if truncated:
            observations.append(stacked.reset()[0])
            np.testing.assert_array_equal(wrapped.reset()[0], observations[-1])
            frames.append(single.reset()[0])
            starts.append(True)
    assert starts.count(True) == 3
    for t, obs in enumerate(observations):
        np.testing.assert_array_equal(obs, _expected_stack(frames, starts, t, 3, 0), err_msg=f"observation {t}")
    rendering = PixelReachEnv(frame_stack=3, render_mode="rgb_array")
    obs, _ = rendering.reset(seed=0)
    np.testing.assert_array_equal(rendering.render(), obs[6:].transpose(1, 2, 0))  # one frame, the newest


def test_frame_stack_wrapper_spaces_and_errors():
    channel_last = gym.spaces.Box(0, 255, (20, 24, 3), np.uint8)

    class Env(gym.Env):
        def __init__(self, space: gym.spaces.Space) -> None:
            self.observation_space, self.action_space = space, gym.spaces.Box(-1, 1, (1,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return self.observation_space.sample(), {}

        def step(self, action):
            return self.observation_space.sample(), 0.0, False, False, {}

    assert FrameStack(Env(channel_last), 4).observation_space.shape == (20, 24, 12)
    assert FrameStack(Env(gym.spaces.Box(0, 255, (3, 20, 24), np.uint8)), 4).observation_space.shape == (12, 20, 24)
    vector = FrameStack(Env(gym.spaces.Box(np.array([-1, 0], np.float32), np.array([1, 2], np.float32))), 3)
    np.testing.assert_array_equal(vector.observation_space.low, [-1, 0, -1, 0, -1, 0])
    np.testing.assert_array_equal(vector.observation_space.high, [1, 2, 1, 2, 1, 2])
    with pytest.raises(gym.error.ResetNeeded):
        FrameStack(Env(channel_last), 2).step(np.zeros(1))
    with pytest.raises(ValueError, match="Box observation space"):
        FrameStack(Env(gym.spaces.Discrete(3)), 2)
    with pytest.raises(ValueError, match="frame_stack must be a positive integer"):
        FrameStack(Env(channel_last), 0)


def test_dm_control_settotalmass_warning_is_quiet_and_other_absl_warnings_are_kept(caplog):
    import logging

    absl_logger = logging.getLogger("absl")
    with caplog.at_level(logging.WARNING, logger="absl"):
        env = _make("dmc-cheetah-run")  # cheetah.xml sets settotalmass: MuJoCo 3 warns through absl
        env.reset(seed=0)
        absl_logger.warning("compiler attribute 'settotalmass' is deprecated and will be removed")
        absl_logger.warning("an unrelated absl warning")
    env.close()
    assert [record.getMessage() for record in caplog.records if record.name == "absl"] == ["an unrelated absl warning"]
    _make("dmc-walker-walk").close()  # the filter is installed once, however many envs are made
    assert sum(type(existing).__name__ == "_DeprecatedSetTotalMass" for existing in absl_logger.filters) == 1

"""Shared fixtures: a tiny channel-first uint8 image env and a tiny GAARASAC built on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger

from sb3_gaara import GAARASAC

#: observation of the fake env: 2 stacked RGB frames of 20 x 20 px, cropped to 16 px by the tiny models
OBS_SHAPE = (6, 20, 20)
IMAGE_SIZE = 16
LEARNING_STARTS = 10
BATCH_SIZE = 8


class FakeImageEnv(gym.Env):
    """Channel-first uint8 images, continuous actions, episodes of ``episode_length`` steps.

    Observations are drawn from the observation space (seeded by ``reset(seed=...)``), so the same env
    also serves the error tests with vector, dict or float observations and discrete actions.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        observation_space: spaces.Space | None = None,
        action_space: spaces.Space | None = None,
        episode_length: int = 5,
    ) -> None:
        super().__init__()
        self.observation_space = observation_space or spaces.Box(0, 255, OBS_SHAPE, dtype=np.uint8)
        self.action_space = action_space or spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self.episode_length = episode_length
        self._step = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self.observation_space.seed(seed)
        self._step = 0
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self._step += 1
        reward = -float(np.sum(np.square(action)))
        terminated = self._step >= self.episode_length
        return self.observation_space.sample(), reward, terminated, False, {}


class RecordingLogger(Logger):
    """SB3 logger without outputs that keeps every value ever recorded, per key (dumps clear ``name_to_value``)."""

    def __init__(self) -> None:
        super().__init__(folder=None, output_formats=[])
        self.history: dict[str, list[Any]] = {}

    def record(self, key: str, value: Any, exclude: str | tuple[str, ...] | None = None) -> None:
        self.history.setdefault(key, []).append(value)
        super().record(key, value, exclude)


def cpu_flags() -> set[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it does not exist)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


#: The test files whose slow tests take longest in all (the CPU-scale learning checks, several minutes each; the zoo's
#: ten subprocess runs), longest first, as measured by ``make test-slow`` (``--durations``). They are collected first,
#: so that pytest-xdist (one worker per CPU, whole files, ``--no-loadscope-reorder``) hands each free worker the
#: longest file left and the workers finish together instead of one waiting on a check that started last.
LONGEST_FILES_FIRST = (
    "test_zoo.py",
    "test_dreamer.py",
    "test_evaluation.py",
    "test_study.py",
    "test_slac.py",
    "test_examples.py",
    "test_study_ray.py",
    "test_benchmark.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FILES_FIRST.index(name) if name in LONGEST_FILES_FIRST else len(LONGEST_FILES_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the other files, is kept


#: bfloat16 convolutions are emulated, and about 4x slower than float32, on a CPU without these
NATIVE_BFLOAT16 = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread():
    # The nets are tiny: thread start-up costs more than it saves on a 2-core machine.
    previous = th.get_num_threads()
    th.set_num_threads(1)
    yield
    th.set_num_threads(previous)


def tiny_kwargs(**overrides: Any) -> dict[str, Any]:
    """Constructor arguments of a GAARASAC small enough to train in milliseconds on a CPU."""
    kwargs: dict[str, Any] = dict(
        image_size=IMAGE_SIZE,
        batch_size=BATCH_SIZE,
        learning_starts=LEARNING_STARTS,
        buffer_size=200,
        policy_kwargs=dict(net_arch=[32, 32]),
        seed=0,
        device="cpu",
        # One update per agent step from the start, so that tests count updates simply; the reference code's
        # initial burst (the default) has tests of its own.
        init_gradient_steps=0,
    )
    kwargs.update(overrides)
    return kwargs


def tiny_kwargs_for(algorithm: type, **overrides: Any) -> dict[str, Any]:
    """:func:`tiny_kwargs` without the arguments ``algorithm`` does not take (DrQv2 has no ``init_gradient_steps``)."""
    import inspect

    parameters = inspect.signature(algorithm).parameters
    return {key: value for key, value in tiny_kwargs(**overrides).items() if key in parameters}


#: SLAC's networks at test size (the paper's: 256 features, z1 of 32, z2 of 256, hidden layers of 256, 32 channels)
SLAC_TINY_POLICY_KWARGS = dict(
    features_dim=32, z1_dim=8, z2_dim=16, model_hidden_sizes=(32,), base_channels=4, net_arch=[32, 32]
)
#: Dreamer's networks at test size (the paper's: 32 channels, GRU of 200, stochastic state of 30, RSSM hidden layer of
#: 200, 3 dense layers of 300)
DREAMER_TINY_POLICY_KWARGS = dict(depth=4, deter_size=16, stoch_size=4, hidden_size=16, units=16, layers=1)


def tiny_observation_space(algorithm: type) -> spaces.Box:
    """The fake env's observations for ``algorithm``: single square frames of 16 px for SLAC (its encoder's least),
    single frames of 32 px for Dreamer (its CPU-scale size), 2 stacked frames of 20 px for the others."""
    name = algorithm.__name__
    if name == "Dreamer":
        return spaces.Box(0, 255, (3, 32, 32), dtype=np.uint8)
    if name == "SLAC":
        return spaces.Box(0, 255, (3, 16, 16), dtype=np.uint8)
    return spaces.Box(0, 255, OBS_SHAPE, dtype=np.uint8)


def tiny_model(algorithm: type, env: gym.Env | None = None, **overrides: Any) -> Any:
    """A tiny model of any algorithm of the package on ``env`` (default: the fake env with
    :func:`tiny_observation_space`): :func:`tiny_kwargs_for`, SLAC's and Dreamer's networks at test size, SLAC
    without model pretraining."""
    env = env if env is not None else FakeImageEnv(tiny_observation_space(algorithm))
    if algorithm.__name__ == "Dreamer":
        overrides = {"policy_kwargs": DREAMER_TINY_POLICY_KWARGS, **overrides}
    elif algorithm.__name__ == "SLAC":
        overrides = {"policy_kwargs": SLAC_TINY_POLICY_KWARGS, "model_pretraining_steps": 0, **overrides}
    return algorithm(policy="CnnPolicy", env=env, **tiny_kwargs_for(algorithm, **overrides))


@pytest.fixture
def make_env() -> Callable[..., FakeImageEnv]:
    """Factory: ``make_env(observation_space=None, action_space=None, episode_length=5)``."""
    return FakeImageEnv


@pytest.fixture
def make_model() -> Callable[..., GAARASAC]:
    """Factory: ``make_model(cls=GAARASAC, env=None, **overrides)`` builds a tiny model with a recording logger."""

    def _make(cls: type[GAARASAC] = GAARASAC, env: gym.Env | None = None, **overrides: Any) -> GAARASAC:
        model = cls("CnnPolicy", env if env is not None else FakeImageEnv(), **tiny_kwargs(**overrides))
        model.set_logger(RecordingLogger())
        return model

    return _make


@pytest.fixture
def filled_model(make_model) -> Callable[..., GAARASAC]:
    """Factory: a tiny model whose replay buffer holds ``learning_starts`` transitions and that has not trained yet.

    ``learn(learning_starts)`` collects the transitions through the public API; SB3 trains only once
    ``num_timesteps > learning_starts``, so ``_n_updates`` is still 0 and tests call ``model.train`` themselves.
    """

    def _make(cls: type[GAARASAC] = GAARASAC, **overrides: Any) -> GAARASAC:
        model = make_model(cls, **overrides)
        model.learn(total_timesteps=model.learning_starts)
        assert model._n_updates == 0
        return model

    return _make


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Exact, recursive equality of tensors, arrays, numbers and containers, naming the first difference."""
    if isinstance(a, th.Tensor):
        assert isinstance(b, th.Tensor) and a.shape == b.shape and a.dtype == b.dtype, where
        assert th.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), where
        np.testing.assert_array_equal(a, b, err_msg=where, strict=True)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: {sorted(map(str, a))} != {sorted(map(str, b))}"
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} != {b!r}"


def check_margin(
    label: str, rewards: list[float], task: Any, agent_steps: int, action_repeat: int, n_episodes: int, train_time: float
) -> None:
    """``rewards`` (the deterministic policy's returns) beat a random policy by more than 4 standard errors and close
    a third of the gap to a scripted policy that reads the true state."""
    from sb3_gaara.study import evaluate_random_policy

    trained_mean, trained_std = float(np.mean(rewards)), float(np.std(rewards))
    random_mean, random_std = evaluate_random_policy(task, n_episodes)
    # A scripted policy that reads the true state and heads straight to the goal: the task's ceiling.
    oracle_env = gym.make(task.env_id)
    oracle_returns = []
    for episode in range(n_episodes):
        oracle_env.reset(seed=10_000 + episode)
        base, total, done = oracle_env.unwrapped, 0.0, False
        while not done:
            action = np.clip((base._goal - base._position) / base.max_speed, -1.0, 1.0)
            _, reward, terminated, truncated, _ = oracle_env.step(action)
            total, done = total + float(reward), terminated or truncated
        oracle_returns.append(total)
    oracle_mean = float(np.mean(oracle_returns))
    closed = (trained_mean - random_mean) / (oracle_mean - random_mean)
    standard_error = np.sqrt((trained_std**2 + random_std**2) / n_episodes)
    print(
        f"\nPixelReach, {label} after {agent_steps} agent steps ({agent_steps * action_repeat} env steps, "
        f"{train_time:.0f} s): trained {trained_mean:.1f} ± {trained_std:.1f}, random {random_mean:.1f} ± "
        f"{random_std:.1f}, scripted {oracle_mean:.1f} ({n_episodes} episodes each); margin over random "
        f"{trained_mean - random_mean:.1f} = {(trained_mean - random_mean) / standard_error:.1f} standard errors, "
        f"{100 * closed:.0f}% of the gap to the scripted policy"
    )
    assert trained_mean - random_mean > 4 * standard_error, label
    assert closed > 1 / 3, label

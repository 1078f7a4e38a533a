"""Pickled environments continue bit-exactly: a study run checkpointed with its envs and resumed is the same run.

Each test pickles an env (mid-episode, right after an episode's end and its reset, or before any reset), then steps
the original and the copy side by side with the same random actions over more than one episode boundary, resetting
both without a seed (their random states continue), and compares everything they return with ``==``.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest

from sb3_gaara.envs.dmc import DMCEnv, _choose_headless_gl_backend
from sb3_gaara.envs.pixel_reach import PixelReachEnv
from sb3_gaara.study.catalogue import resolve_task
from sb3_gaara.study.run import make_train_env

_choose_headless_gl_backend()


def _assert_identical(expected: Any, actual: Any, where: str = "") -> None:
    """``expected == actual``, bit-exactly, recursively through dicts, tuples and arrays (dtypes included)."""
    if isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray) and actual.dtype == expected.dtype, where
        np.testing.assert_array_equal(actual, expected, err_msg=where, strict=True)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), where
        for key in expected:
            _assert_identical(expected[key], actual[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert type(actual) is type(expected) and len(actual) == len(expected), where
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            _assert_identical(left, right, f"{where}[{index}]")
    else:
        assert type(actual) is type(expected) and actual == expected, f"{where}: {expected!r} != {actual!r}"


def _rollout(env: gym.Env, actions: list[np.ndarray]) -> tuple[list[Any], int]:
    """Everything ``env`` returns for ``actions``, reset (without a seed) at each episode's end; and the episodes ended."""
    record: list[Any] = []
    episodes = 0
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        record.append(("step", obs, reward, terminated, truncated, info))
        if terminated or truncated:
            episodes += 1
            record.append(("reset", *env.reset()))
    return record, episodes


def _actions(env: gym.Env, count: int, seed: int = 0) -> list[np.ndarray]:
    space = env.action_space
    rng = np.random.default_rng(seed)
    return [rng.uniform(space.low, space.high).astype(space.dtype) for _ in range(count)]


def _start(env: gym.Env, when: str, actions: list[np.ndarray]) -> None:
    """Bring ``env`` to the point where it is pickled: ``before_reset``, ``mid_episode`` or ``after_auto_reset``."""
    if when == "before_reset":
        return
    env.reset(seed=3)
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            assert when == "after_auto_reset"
            env.reset()
            return
    assert when == "mid_episode"


def _check_round_trip(env: gym.Env, when: str, steps_per_episode: int, loads: Callable[[gym.Env], gym.Env]) -> None:
    """Pickle ``env`` at ``when`` and compare the copy with it over the next two to three episodes."""
    actions = _actions(env, 3 * steps_per_episode)
    before = {"before_reset": 0, "mid_episode": steps_per_episode // 2, "after_auto_reset": steps_per_episode}[when]
    _start(env, when, actions[:before])
    restored = loads(env)
    try:
        if when == "before_reset":  # the first reset, without a seed, continues the random state of construction
            _assert_identical(env.reset(), restored.reset(), "first reset")
        expected, episodes = _rollout(env, actions[before:])
        actual, _ = _rollout(restored, actions[before:])
        assert episodes >= 2, "the comparison should cross more than one episode boundary"
        _assert_identical(expected, actual)
    finally:
        restored.close()


def _pickle_round_trip(env: gym.Env) -> gym.Env:
    return pickle.loads(pickle.dumps(env))


def _small_dmc(**kwargs: Any) -> DMCEnv:
    """cartpole swingup rendered at 24 px, 3 frames stacked, 4 agent steps per episode (action repeat 8)."""
    return DMCEnv("cartpole", "swingup", **{"height": 24, "width": 24, "frame_stack": 3, "episode_length": 32, **kwargs})


WHEN = ("before_reset", "mid_episode", "after_auto_reset")


@pytest.mark.parametrize("when", WHEN)
def test_dmc_env_continues_bit_exactly_after_pickling(when: str):
    env = _small_dmc()
    try:
        _check_round_trip(env, when, 4, _pickle_round_trip)
    finally:
        env.close()


def test_dmc_env_deepcopies_and_unstacked_channel_last_frames():
    env = _small_dmc(frame_stack=1, channels_first=False)
    try:
        _check_round_trip(env, "mid_episode", 4, copy.deepcopy)
    finally:
        env.close()


@pytest.mark.parametrize(
    "domain_name, task_name, kwargs",
    [
        ("reacher", "easy", {}),  # the target is drawn into the MuJoCo model at each reset
        ("finger", "turn_easy", {}),  # so is the target site, with its size
        ("cheetah", "run", {}),  # contacts (warm-started solver); each reset first settles the model for 200 steps
        ("walker", "walk", {}),
        ("lqr", "lqr_2_1", {}),  # the model itself is drawn at random when the task is loaded
        # dm_control's own time limit (20 simulator steps), which counts the episode's steps itself
        ("cartpole", "swingup", {"task_kwargs": {"time_limit": 0.2}, "episode_length": 1000}),
    ],
)
def test_dmc_env_restores_what_episodes_change(domain_name: str, task_name: str, kwargs: dict[str, Any]):
    """State observations (no rendering): every float of the physics is compared."""
    kwargs = {"action_repeat": 2, "episode_length": 20, "frame_stack": 2, **kwargs}
    env = DMCEnv(domain_name, task_name, from_pixels=False, **kwargs)
    try:
        _check_round_trip(env, "mid_episode", 10, _pickle_round_trip)
    finally:
        env.close()


def test_unpickled_dmc_env_renders_the_same_frame():
    """``render()`` at another size than the observations draws the restored simulation, not a cached frame."""
    env = DMCEnv("reacher", "easy", height=24, width=24, episode_length=40, render_mode="rgb_array", render_size=(20, 28))
    try:
        env.reset(seed=5)
        for action in _actions(env, 3):
            env.step(action)
        restored = _pickle_round_trip(env)
        try:
            _assert_identical(env.render(), restored.render())
        finally:
            restored.close()
    finally:
        env.close()


def test_closed_dmc_env_unpickles_closed():
    env = _small_dmc()
    env.close()
    restored = _pickle_round_trip(env)
    assert restored._closed
    restored.close()


@pytest.mark.parametrize("when", WHEN)
def test_pixel_reach_continues_bit_exactly_after_pickling(when: str):
    env = PixelReachEnv(frame_stack=3, episode_length=20)
    _check_round_trip(env, when, 10, _pickle_round_trip)


def _without_wall_clock(infos: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The infos without ``Monitor``'s ``episode["t"]``, the wall-clock time since the ``Monitor`` was made."""
    return [{**info, "episode": {**info["episode"], "t": None}} if "episode" in info else info for info in infos]


@pytest.mark.parametrize("when", ["mid_episode", "after_auto_reset"])
@pytest.mark.parametrize("task_name", ["pixel_reach", "cartpole_swingup"])
def test_study_vec_env_continues_bit_exactly_after_cloudpickle(task_name: str, when: str):
    """The VecEnv of ``make_train_env`` (``DummyVecEnv`` of ``Monitor``), as the study checkpoints it."""
    task = resolve_task(task_name)
    render_size = None
    if task_name != "pixel_reach":  # small frames and 5 agent steps per episode, to keep the test fast
        task = dataclasses.replace(task, env_kwargs={**task.env_kwargs, "episode_length": 40})
        render_size = 24
    vec_env = make_train_env(task, seed=7, render_size=render_size)
    steps_per_episode = 25 if task_name == "pixel_reach" else 5
    actions = _actions(vec_env, 3 * steps_per_episode)
    before = steps_per_episode // 2 if when == "mid_episode" else steps_per_episode
    try:
        vec_env.reset()
        for index, action in enumerate(actions[:before]):
            _, _, dones, _ = vec_env.step(action[None])
            assert dones[0] == (index == steps_per_episode - 1)
        restored = cloudpickle.loads(cloudpickle.dumps(vec_env))
        try:
            episodes = 0
            for action in actions[before:]:
                expected = vec_env.step(action[None])
                actual = restored.step(action[None])
                _assert_identical(expected[:3], actual[:3])
                _assert_identical(_without_wall_clock(expected[3]), _without_wall_clock(actual[3]))
                episodes += int(expected[2][0])
            assert episodes >= 2
        finally:
            restored.close()
    finally:
        vec_env.close()

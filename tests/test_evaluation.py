"""EnvStepEvalCallback: evaluations scheduled and labelled in environment steps (after action repeat)."""

from __future__ import annotations

import copy
import csv
import os
import time
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import NATIVE_BFLOAT16, check_margin
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecNormalize

from sb3_gaara.envs.pixel_reach import PIXEL_REACH_ID, register_pixel_reach
from sb3_gaara.evaluation import EnvStepEvalCallback, Evaluation, get_action_repeat, make_eval_env


class RepeatEnv(gym.Env):
    """``episode_length`` agent steps, each worth ``action_repeat`` simulator steps of reward 1."""

    def __init__(self, action_repeat: int = 4, episode_length: int = 5) -> None:
        self.action_repeat = action_repeat
        self.episode_length = episode_length
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        return np.zeros(2, dtype=np.float32), float(self.action_repeat), False, self._t >= self.episode_length, {}


def _vec(action_repeat: int, n_envs: int = 1) -> Any:
    return make_vec_env(lambda: RepeatEnv(action_repeat), n_envs=n_envs)


def _model(action_repeat: int, n_envs: int, tmp_path: Any) -> SAC:
    # No gradient step is taken (learning_starts beyond the run): only the bookkeeping is tested.
    model = SAC("MlpPolicy", _vec(action_repeat, n_envs), learning_starts=10_000, policy_kwargs={"net_arch": [4]}, seed=0)
    model.set_logger(configure(str(tmp_path / "log"), ["csv"]))
    return model


def test_get_action_repeat() -> None:
    register_pixel_reach()
    assert get_action_repeat(RepeatEnv(action_repeat=3)) == 3
    assert get_action_repeat(gym.make(PIXEL_REACH_ID)) == 2
    assert get_action_repeat(gym.make(PIXEL_REACH_ID, action_repeat=5)) == 5
    assert get_action_repeat(VecFrameStack(make_vec_env(PIXEL_REACH_ID, n_envs=2), 3)) == 2
    assert get_action_repeat(gym.make("Pendulum-v1")) == 1
    assert get_action_repeat(make_vec_env("Pendulum-v1")) == 1
    with pytest.raises(ValueError, match="different action repeats"):
        get_action_repeat(DummyVecEnv([lambda: RepeatEnv(2), lambda: RepeatEnv(4)]))


@pytest.mark.parametrize(
    ("action_repeat", "n_envs", "freq", "expected"),
    [
        # every env.step call advances n_envs * action_repeat = 8 env steps; 40 is a multiple of 8
        (4, 2, 40, [0, 40, 80, 120, 160]),
        # 36 is not: each evaluation lands on the first call at or past the next multiple of 36
        (4, 2, 36, [0, 40, 72, 112, 144]),
        (1, 1, 40, [0, 40, 80, 120, 160]),
        (8, 1, 40, [0, 40, 80, 120, 160]),
    ],
)
def test_schedule_counts_environment_steps(action_repeat: int, n_envs: int, freq: int, expected: list, tmp_path) -> None:
    model = _model(action_repeat, n_envs, tmp_path)
    agent_steps = 160 // action_repeat
    callback = EnvStepEvalCallback(_vec(action_repeat), eval_freq_env_steps=freq, n_eval_episodes=2, verbose=0)
    model.learn(agent_steps, callback=callback)
    assert callback.action_repeat == action_repeat
    assert [evaluation.env_steps for evaluation in callback.history] == expected
    # SB3's EvalCallback(eval_freq=freq) would count callback calls (agent steps / n_envs) instead.
    assert model.num_timesteps * action_repeat == 160


@pytest.mark.parametrize(("action_repeat", "n_envs"), [(4, 2), (8, 1)])
def test_schedule_in_agent_steps(action_repeat: int, n_envs: int, tmp_path) -> None:
    # rl-zoo3's --eval-freq unit: every 10 agent steps (over all envs) = every 10 * action_repeat environment steps.
    model = _model(action_repeat, n_envs, tmp_path)
    callback = EnvStepEvalCallback(_vec(action_repeat), n_eval_episodes=1, verbose=0, eval_freq_agent_steps=10)
    model.learn(40, callback=callback)
    assert callback.eval_freq_env_steps == 10 * action_repeat
    assert [evaluation.env_steps for evaluation in callback.history] == [
        0,
        10 * action_repeat,
        20 * action_repeat,
        30 * action_repeat,
        40 * action_repeat,
    ]


def test_logged_values_and_returns(tmp_path) -> None:
    model = _model(action_repeat=4, n_envs=1, tmp_path=tmp_path)
    callback = EnvStepEvalCallback(_vec(4), eval_freq_env_steps=40, n_eval_episodes=3, log_path=str(tmp_path), verbose=0)
    model.learn(20, callback=callback)
    # Each evaluation episode: 5 agent steps of reward 4 (one per simulator step), so the return is 20 exactly.
    assert callback.history == [
        Evaluation(0, 20.0, 0.0, 0),
        Evaluation(40, 20.0, 0.0, 2),
        Evaluation(80, 20.0, 0.0, 4),
    ]
    with open(tmp_path / "log" / "progress.csv") as file:
        rows = [row for row in csv.DictReader(file) if row.get("eval/env_steps")]
    assert [int(float(row["eval/env_steps"])) for row in rows] == [0, 40, 80]
    assert [float(row["eval/mean_reward"]) for row in rows] == [20.0, 20.0, 20.0]
    assert [float(row["eval/std_reward"]) for row in rows] == [0.0, 0.0, 0.0]
    # The logger's step stays the agent step, like the rest of SB3's log.
    assert [int(float(row["time/total_timesteps"])) for row in rows] == [0, 10, 20]
    data = np.load(tmp_path / "evaluations.npz")
    assert data["env_steps"].tolist() == [0, 40, 80]
    assert data["timesteps"].tolist() == [0, 10, 20]
    assert data["results"].shape == (3, 3)


def test_no_evaluation_at_start(tmp_path) -> None:
    model = _model(action_repeat=2, n_envs=1, tmp_path=tmp_path)
    callback = EnvStepEvalCallback(_vec(2), eval_freq_env_steps=20, n_eval_episodes=1, eval_at_start=False, verbose=0)
    model.learn(20, callback=callback)
    assert [evaluation.env_steps for evaluation in callback.history] == [20, 40]


def test_resumed_schedule(tmp_path) -> None:
    model = _model(action_repeat=2, n_envs=1, tmp_path=tmp_path)
    model.learn(30)  # 60 env steps, e.g. restored from a checkpoint
    # The last evaluation was at 40: the next is due at 60, which the checkpoint already reached.
    history = [Evaluation(0, 1.0, 0.0, 0), Evaluation(20, 2.0, 0.0, 2), Evaluation(40, 3.0, 0.0, 4)]
    callback = EnvStepEvalCallback(_vec(2), eval_freq_env_steps=20, n_eval_episodes=1, history=history, verbose=0)
    model.learn(20, callback=callback, reset_num_timesteps=False)
    assert [evaluation.env_steps for evaluation in callback.history] == [0, 20, 40, 60, 80, 100]
    assert callback.history[:3] == history

    # Resumed between two evaluations: nothing at the start, the next one on schedule.
    model = _model(action_repeat=2, n_envs=1, tmp_path=tmp_path)
    model.learn(25)  # 50 env steps
    callback = EnvStepEvalCallback(_vec(2), eval_freq_env_steps=20, n_eval_episodes=1, history=history, verbose=0)
    model.learn(15, callback=callback, reset_num_timesteps=False)
    assert [evaluation.env_steps for evaluation in callback.history] == [0, 20, 40, 60, 80]
    assert callback.best_mean_reward == max(evaluation.mean_reward for evaluation in callback.history)


def test_eval_env_from_id() -> None:
    register_pixel_reach()
    callback = EnvStepEvalCallback(PIXEL_REACH_ID, frame_stack=3, eval_seed=7, eval_env_kwargs={"action_repeat": 3})
    assert callback.eval_env.observation_space.shape == (9, 40, 40)
    assert get_action_repeat(callback.eval_env) == 3
    env = make_eval_env(PIXEL_REACH_ID, frame_stack=1)
    assert env.observation_space.shape == (3, 40, 40)


def test_eval_env_from_id_stacks_as_the_papers_code() -> None:
    register_pixel_reach()
    # by the FrameStack wrapper, or by the env's own frame_stack keyword: the same observations
    wrapped = make_eval_env(PIXEL_REACH_ID, frame_stack=3, seed=4)
    by_env = make_eval_env(PIXEL_REACH_ID, env_kwargs={"frame_stack": 3}, seed=4)
    obs = wrapped.reset()
    np.testing.assert_array_equal(obs, by_env.reset())
    assert obs.shape == (1, 9, 40, 40)
    np.testing.assert_array_equal(obs[0, :3], obs[0, 3:6])  # the first frame three times at reset
    np.testing.assert_array_equal(obs[0, 3:6], obs[0, 6:])
    action = np.array([[0.5, 0.5]], dtype=np.float32)
    next_obs = wrapped.step(action)[0]
    np.testing.assert_array_equal(next_obs, by_env.step(action)[0])
    np.testing.assert_array_equal(next_obs[0, :6], obs[0, 3:])  # oldest first: the stack moved by one frame
    assert not np.array_equal(next_obs[0, 6:], obs[0, 6:])
    with pytest.raises(ValueError, match="would stack twice"):
        make_eval_env(PIXEL_REACH_ID, env_kwargs={"frame_stack": 3}, frame_stack=3)


def test_mismatched_action_repeat_warns(tmp_path) -> None:
    model = _model(action_repeat=4, n_envs=1, tmp_path=tmp_path)
    callback = EnvStepEvalCallback(_vec(2), eval_freq_env_steps=40, n_eval_episodes=1, verbose=0)
    with pytest.warns(UserWarning, match="not comparable"):
        model.learn(1, callback=callback)


def test_rejects_bad_action_repeat() -> None:
    with pytest.raises(ValueError, match="action_repeat"):
        EnvStepEvalCallback(_vec(2), action_repeat=0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "conv_dtype",
    [
        "float32",
        pytest.param(
            "bfloat16",
            # Emulated, the run takes 10 minutes instead of 2.5; the option is meant for hardware that has it.
            marks=pytest.mark.skipif(not NATIVE_BFLOAT16, reason="this CPU computes no bfloat16 natively"),
        ),
    ],
)
def test_gaara_learns_from_pixels(conv_dtype: str) -> None:
    """GAARA on PixelReach (CPU-scale study settings): the deterministic policy clearly beats a random one,
    with float32 convolutions and with the bfloat16 mixed-precision option alike."""
    import torch as th

    from sb3_gaara import GAARASAC
    from sb3_gaara.study import make_train_env, resolve_task

    th.set_num_threads(1)  # small convolutions: one thread is faster than two contending ones
    task = resolve_task("pixel_reach")
    agent_steps, n_episodes = 3_500, 60
    env = make_train_env(task, seed=0)
    eval_env = make_train_env(task, seed=0, eval_env=True)
    model_kwargs = copy.deepcopy(task.model_kwargs)
    model_kwargs.setdefault("policy_kwargs", {})["conv_dtype"] = conv_dtype
    model = GAARASAC("CnnPolicy", env, seed=0, buffer_size=agent_steps, **model_kwargs)
    start = time.time()
    model.learn(agent_steps)
    train_time = time.time() - start
    _assert_beats_random(f"GAARA ({conv_dtype} convolutions)", model, task, eval_env, agent_steps, n_episodes, train_time)


def _assert_beats_random(
    label: str, model: Any, task: Any, eval_env: Any, agent_steps: int, n_episodes: int, train_time: float
) -> None:
    """The deterministic policy beats a random one on PixelReach by more than 4 standard errors and closes a third
    of the gap to a scripted policy that reads the true state."""
    rewards, _ = evaluate_policy(model, eval_env, n_eval_episodes=n_episodes, deterministic=True, return_episode_rewards=True)
    action_repeat = int(model.env.get_attr("action_repeat")[0])
    check_margin(label, [float(r) for r in rewards], task, agent_steps, action_repeat, n_episodes, train_time)


#: (study agent, agent steps, constructor arguments over the agent's). DrQ learns the task in fewer steps; the others
#: get as many as GAARA's own check. DrQ-v2's published learning rate (1e-4) and one update every 2 agent steps are
#: tuned for a million frames: at this scale the check trains DrQv2 with 1e-3 and one update per agent step.
AUGMENTATION_CHECKS = (
    ("gaara_shift", 3_500, {}),
    ("drq", 2_000, {}),
    ("ad10", 3_500, {"learning_rate": 1e-3, "train_freq": 1}),
)


def _train_and_evaluate(agent: str, agent_steps: int, overrides: dict, n_episodes: int) -> tuple[list[float], float, int]:
    """Train a study agent with its CPU-scale settings on PixelReach, seed 0; its evaluation returns, training time and
    action repeat (run in a worker process: the checks train side by side, one core each)."""
    import torch as th

    from sb3_gaara.algorithms import BY_ZOO_NAME
    from sb3_gaara.study import AGENTS, make_train_env, resolve_task

    th.set_num_threads(1)
    task, spec = resolve_task("pixel_reach"), AGENTS[agent]
    model_kwargs = {**copy.deepcopy(task.model_kwargs), **spec.kwargs, **overrides}
    render_size = model_kwargs["image_size"] if spec.render_at_crop_size else None
    env = make_train_env(task, seed=0, render_size=render_size)
    eval_env = make_train_env(task, seed=0, eval_env=True, render_size=render_size)
    if spec.variant is not None:
        model_kwargs["variant"] = spec.variant
    model = BY_ZOO_NAME[spec.algorithm]("CnnPolicy", env, seed=0, buffer_size=agent_steps, **model_kwargs)
    start = time.time()
    model.learn(agent_steps)
    train_time = time.time() - start
    rewards, _ = evaluate_policy(model, eval_env, n_eval_episodes=n_episodes, deterministic=True, return_episode_rewards=True)
    return [float(reward) for reward in rewards], train_time, int(env.get_attr("action_repeat")[0])


@pytest.mark.slow
def test_augmentation_agents_learn_from_pixels() -> None:
    """GAARA with random shifts, DrQ and DrQ-v2 (AD(1,0); the last two on whole 32 px renders) on PixelReach, with the
    study's CPU-scale settings for their agents: each clearly beats a random policy. The three train in two worker
    processes, one core each."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from sb3_gaara.study import AGENTS, resolve_task

    n_episodes = 60
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            agent: pool.submit(_train_and_evaluate, agent, steps, overrides, n_episodes)
            for agent, steps, overrides in AUGMENTATION_CHECKS
        }
        outcomes = {agent: future.result() for agent, future in futures.items()}
    task = resolve_task("pixel_reach")
    for agent, steps, _ in AUGMENTATION_CHECKS:
        rewards, train_time, action_repeat = outcomes[agent]
        check_margin(AGENTS[agent].label, rewards, task, steps, action_repeat, n_episodes, train_time)


# --------------------------------------------------------------------------------------------------
# Evaluations in the background (asynchronous=True)
# --------------------------------------------------------------------------------------------------


def _trained_with_evaluations(asynchronous: bool, tmp_path: Any) -> tuple[Any, Any]:
    """A tiny GAARASAC trained 40 agent steps, evaluated every 8 on a seeded env."""
    from conftest import FakeImageEnv, RecordingLogger, tiny_kwargs

    from sb3_gaara import GAARASAC

    model = GAARASAC("CnnPolicy", FakeImageEnv(), **tiny_kwargs())
    model.set_logger(RecordingLogger())
    callback = EnvStepEvalCallback(
        make_vec_env(FakeImageEnv, n_envs=1, seed=3),
        eval_freq_env_steps=8,
        n_eval_episodes=2,
        log_path=str(tmp_path / f"asynchronous_{asynchronous}"),
        verbose=0,
        asynchronous=asynchronous,
    )
    model.learn(40, callback=callback)
    return model, callback


def test_evaluations_in_a_process_of_their_own_are_the_synchronous_ones(tmp_path) -> None:
    model, callback = _trained_with_evaluations(False, tmp_path)
    background, background_callback = _trained_with_evaluations(True, tmp_path)
    # The policy changes at every update: equal returns mean each copy was taken at its evaluation's step.
    assert [e.env_steps for e in callback.history] == [0, 8, 16, 24, 32, 40]
    assert background_callback.history == callback.history
    assert len({e.mean_reward for e in callback.history}) == 6
    for name in ("eval/mean_reward", "eval/std_reward", "eval/env_steps"):
        assert background.logger.history[name] == model.logger.history[name]
    files = [np.load(tmp_path / f"asynchronous_{flag}" / "evaluations.npz") for flag in (False, True)]
    for key in ("timesteps", "env_steps", "results", "ep_lengths"):
        np.testing.assert_array_equal(files[0][key], files[1][key], strict=True)
    # Training did not notice: the same parameters.
    for (name, a), b in zip(model.policy.state_dict().items(), background.policy.state_dict().values(), strict=True):
        assert th.equal(a, b), name
    # The episodes ran in the evaluation process, on its env: this process's copy never stepped, that one did 12 times.
    worker = background_callback._worker
    assert worker is not None and worker.pid != os.getpid() and worker.poll() is None
    assert background_callback.eval_env.envs[0].get_episode_rewards() == []
    there = background_callback.current_eval_env()
    assert len(there.envs[0].get_episode_rewards()) == len(callback.eval_env.envs[0].get_episode_rewards()) == 12
    background_callback.close()
    assert worker.returncode == 0 and background_callback._worker is None


class BrokenEnv(RepeatEnv):
    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        raise ValueError("the evaluation env broke")


def test_an_error_in_the_evaluation_process_is_raised_here_with_its_traceback(tmp_path) -> None:
    model = _model(action_repeat=1, n_envs=1, tmp_path=tmp_path)
    callback = EnvStepEvalCallback(
        make_vec_env(lambda: BrokenEnv(1)), eval_freq_env_steps=4, n_eval_episodes=1, asynchronous=True
    )
    with pytest.raises(RuntimeError, match=r"(?s)The evaluation process failed:.*ValueError: the evaluation env broke"):
        model.learn(8, callback=callback)
    callback.close()  # the process still runs; it closes its env and ends
    assert callback._worker is None


def test_a_stop_asked_by_a_background_evaluations_callback_stops_training(tmp_path) -> None:
    from stable_baselines3.common.callbacks import StopTrainingOnRewardThreshold

    model = _model(action_repeat=1, n_envs=1, tmp_path=tmp_path)
    stop = StopTrainingOnRewardThreshold(reward_threshold=0.0, verbose=0)  # every return (5) is above it
    callback = EnvStepEvalCallback(_vec(1), eval_freq_env_steps=4, n_eval_episodes=1, callback_on_new_best=stop, verbose=0)
    callback.asynchronous = True
    model.learn(40, callback=callback)
    # The evaluation at step 0 ran in the background and was recorded at a rollout start (or, at the latest, when the
    # next evaluation was due): the next step stopped training.
    assert [e.env_steps for e in callback.history] == [0] and 1 <= model.num_timesteps <= 4
    callback.close()


def test_settings_background_evaluations_cannot_keep_are_rejected(tmp_path) -> None:
    with pytest.raises(ValueError, match="cannot save best_model"):
        EnvStepEvalCallback(_vec(1), best_model_save_path=str(tmp_path), asynchronous=True)

    class OwnPredict(SAC):
        def predict(self, *args: Any, **kwargs: Any) -> Any:
            return super().predict(*args, **kwargs)

    model = OwnPredict("MlpPolicy", _vec(1), learning_starts=10_000, policy_kwargs={"net_arch": [4]}, seed=0)
    with pytest.raises(ValueError, match="OwnPredict acts with a predict of its own: use asynchronous=False"):
        model.learn(4, callback=EnvStepEvalCallback(_vec(1), asynchronous=True))
    normalized = SAC("MlpPolicy", VecNormalize(_vec(1)), learning_starts=10_000, policy_kwargs={"net_arch": [4]})
    with pytest.raises(ValueError, match="use asynchronous=False with VecNormalize"):
        normalized.learn(4, callback=EnvStepEvalCallback(VecNormalize(_vec(1)), asynchronous=True))


def test_a_policy_that_draws_while_it_acts_is_evaluated_where_it_trains() -> None:
    from sb3_gaara import Dreamer
    from sb3_gaara.benchmark import slac_random_env

    tiny = {"depth": 4, "deter_size": 8, "stoch_size": 4, "hidden_size": 8, "units": 8, "layers": 1}
    model = Dreamer("CnnPolicy", slac_random_env(0), buffer_size=100, device="cpu", seed=0, policy_kwargs=tiny)
    assert EnvStepEvalCallback.evaluated_here_because(model) is None  # the actor acts without drawing
    model.set_planner("cem")  # its candidates come from torch's generator, which training draws from too
    reason = EnvStepEvalCallback.evaluated_here_because(model)
    assert reason is not None and "Dreamer's policy draws random numbers while it acts" in reason

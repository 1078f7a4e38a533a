"""GAARASAC(overlap_env_step=True): gradient steps begun before the environment step are SB3's training, bit for bit.

The option changes when an update starts, never what it computes: the batch is drawn with the same ``np.random``
calls as after the store, the learning rates are those of after the step, and steps where a callback acts (an
evaluation, a checkpoint, a stop) or where the batch reads the transition not yet stored run after the store. On a
CPU the update is synchronous, so these tests compare whole trainings with and without the option exactly; the test
marked ``cuda`` compares them with CUDA graphs on a GPU.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch as th
from conftest import FakeImageEnv, RecordingLogger, assert_same, tiny_kwargs
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    ConvertCallback,
    EvalCallback,
    ProgressBarCallback,
)
from stable_baselines3.common.env_util import make_vec_env

from sb3_gaara import GAARASAC, AugmentedPixelReplayBuffer
from sb3_gaara.common.overlap import may_act_on_step
from sb3_gaara.evaluation import EnvStepEvalCallback
from sb3_gaara.gaara.cuda_graphs import GraphedGradientStep
from sb3_gaara.study.run import StudyCheckpointCallback
from sb3_gaara.zoo.patches import trial_eval_callback_class

cuda = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")

#: small enough that the ring wraps during the runs, and that batches often read the newest row
BUFFER_SIZE = 24
TOTAL_STEPS = 70


class Everything(BaseCallback):
    """A callback this package knows nothing about: it may act at every step."""

    def _on_step(self) -> bool:
        return True


@contextlib.contextmanager
def counting_early_updates() -> Iterator[dict[str, int]]:
    """Counts the gradient steps begun with their action: ``ran`` before the env step, ``waited`` for the store."""
    kinds = {"ran": 0, "waited": 0}
    original = GAARASAC._begin_update

    def counting(self: GAARASAC, n_envs: int) -> Any:
        early = original(self, n_envs)
        kinds["ran" if early.sample is not None else "waited"] += 1
        return early

    GAARASAC._begin_update = counting  # type: ignore[method-assign]
    try:
        yield kinds
    finally:
        GAARASAC._begin_update = original  # type: ignore[method-assign]


def train(overlap: bool, graph_ready: bool = False, callbacks: Any = None, device: str = "cpu", **overrides: Any):
    """A tiny model trained for :data:`TOTAL_STEPS` agent steps; returns it and how its early steps went."""
    kwargs = tiny_kwargs(
        buffer_size=BUFFER_SIZE,
        overlap_env_step=overlap,
        comparison_lambda_decay=0.01,
        # A schedule: an update begun early must use the rate of after its agent step.
        learning_rate=lambda progress: 1e-3 * progress,
        device=device,
        replay_buffer_kwargs={"storage_device": device},
    )
    kwargs.update(overrides)
    model = GAARASAC("CnnPolicy", FakeImageEnv(), **kwargs)
    model.set_logger(RecordingLogger())
    if graph_ready and model._graphed_step is None:
        model._graphed_step = GraphedGradientStep(model, capture=False)
    with counting_early_updates() as kinds:
        model.learn(total_timesteps=TOTAL_STEPS, callback=callbacks() if callbacks else None)
    return model, kinds


def state(model: GAARASAC) -> dict[str, Any]:
    """What training changes: parameters, optimizer states, counters, the logged values and the replay buffer."""
    buffer = model.replay_buffer
    logged = {
        key: values
        for key, values in model.logger.history.items()
        if key != "train/overlapped_updates" and not key.startswith("time/")  # time/: wall-clock figures
    }
    return {
        "params": model.policy.state_dict(),
        "optimizers": [optimizer.state_dict() for optimizer in model.optimizers()],
        "comparison_lambda": model.comparison_lambda,
        "n_updates": model._n_updates,
        "num_timesteps": model.num_timesteps,
        "logged": logged,
        "buffer": {
            "stacks": buffer.get_stacks(np.arange(buffer.buffer_size), np.zeros(buffer.buffer_size, dtype=int)),
            "actions": buffer.actions,
            "rewards": buffer.rewards,
            "dones": buffer.dones,
            "pos": buffer.pos,
        },
        "rng": (np.random.get_state()[1], th.get_rng_state()),
    }


@pytest.mark.parametrize("graph_ready", [False, True], ids=["eager", "graph_ready"])
def test_updates_begun_before_the_env_step_are_the_sequential_training(graph_ready):
    sequential, kinds = train(overlap=False, graph_ready=graph_ready)
    assert kinds == {"ran": 0, "waited": 0} and sequential.overlapped_updates == 0
    overlapped, kinds = train(overlap=True, graph_ready=graph_ready)
    assert_same(state(sequential), state(overlapped), "state")
    # Every update began with its action: most ran before the env step, some drew the newest row and waited.
    assert overlapped._n_updates == TOTAL_STEPS - tiny_kwargs()["learning_starts"]
    assert kinds["ran"] + kinds["waited"] == overlapped._n_updates
    assert kinds["ran"] > 0 and kinds["waited"] > 0
    assert overlapped.overlapped_updates == kinds["ran"]
    assert overlapped.logger.history["train/overlapped_updates"][-1] == kinds["ran"]


def test_steps_where_callbacks_act_run_after_the_store(tmp_path):
    """An evaluation every 7 agent steps and a checkpoint every 9: the same evaluations, the same saved models."""

    def callbacks(folder: str) -> CallbackList:
        eval_env = make_vec_env(FakeImageEnv, n_envs=1, seed=3)
        evaluation = EnvStepEvalCallback(eval_env, eval_freq_env_steps=7, n_eval_episodes=2, verbose=0)
        checkpoint = CheckpointCallback(save_freq=9, save_path=str(tmp_path / folder), verbose=0)
        return CallbackList([evaluation, checkpoint, ConvertCallback(None)])

    sequential, _ = train(False, callbacks=lambda: callbacks("overlap_False"))
    overlapped, kinds = train(True, callbacks=lambda: callbacks("overlap_True"))
    assert_same(state(sequential), state(overlapped), "state")
    assert len(overlapped.logger.history["eval/mean_reward"]) == 11  # at 0, 7, ..., 70 agent (= env) steps
    # Updates follow steps 11..70; an evaluation (every 7 steps) or a checkpoint (every 9 calls) keeps these after the
    # store: 14 of the 60.
    blocked = {step for step in range(11, TOTAL_STEPS + 1) if step % 7 == 0 or step % 9 == 0}
    assert len(blocked) == 14 and kinds["ran"] + kinds["waited"] == overlapped._n_updates - len(blocked)
    saved = sorted(path.name for path in (tmp_path / "overlap_True").iterdir())
    assert saved == sorted(path.name for path in (tmp_path / "overlap_False").iterdir()) and len(saved) == 7
    for name in saved:
        a, b = (GAARASAC.load(tmp_path / folder / name) for folder in ("overlap_False", "overlap_True"))
        assert_same(a.policy.state_dict(), b.policy.state_dict(), name)


def test_with_evaluations_in_a_process_of_their_own_too():
    """overlap_env_step with EnvStepEvalCallback(asynchronous=True): the training of neither option, bit for bit."""
    callbacks = []

    def evaluation(asynchronous: bool) -> EnvStepEvalCallback:
        env = make_vec_env(FakeImageEnv, n_envs=1, seed=3)
        callbacks.append(EnvStepEvalCallback(env, eval_freq_env_steps=7, n_eval_episodes=2, asynchronous=asynchronous))
        return callbacks[-1]

    sequential, _ = train(False, callbacks=lambda: evaluation(False))
    overlapped, kinds = train(True, callbacks=lambda: evaluation(True))
    assert_same(state(sequential), state(overlapped), "state")
    assert kinds["ran"] > 0 and callbacks[1]._worker is not None
    callbacks[1].close()


def test_an_unknown_callback_keeps_every_update_after_the_store():
    sequential, _ = train(overlap=False)
    overlapped, kinds = train(overlap=True, callbacks=Everything)
    assert kinds == {"ran": 0, "waited": 0} and overlapped.overlapped_updates == 0
    assert_same(state(sequential)["params"], state(overlapped)["params"])


def nonfinite_training(overlap: bool) -> tuple[str, int]:
    """The error of a training whose batches have NaN rewards from the fifth on, and its updates begun early."""
    model = GAARASAC("CnnPolicy", FakeImageEnv(), **tiny_kwargs(buffer_size=BUFFER_SIZE, overlap_env_step=overlap))
    model.set_logger(RecordingLogger())
    crop, calls = model.replay_buffer.crop, 0

    def nan_rewards_from_the_fifth_batch(transitions: Any) -> Any:
        nonlocal calls
        calls += 1
        batch = crop(transitions)
        return batch._replace(rewards=th.full_like(batch.rewards, math.nan)) if calls >= 5 else batch

    model.replay_buffer.crop = nan_rewards_from_the_fifth_batch  # type: ignore[method-assign]
    with pytest.raises(FloatingPointError) as raised:
        model.learn(total_timesteps=TOTAL_STEPS)
    return str(raised.value), model.overlapped_updates


def test_a_nonfinite_loss_of_an_update_begun_early_is_reported_as_without_the_option():
    message, overlapped = nonfinite_training(overlap=False)
    assert "train/critic_loss became nan at update #5 (counted like model._n_updates; 15 environment steps" in message
    # With the option, the updates began early but for those whose batch read the newest row (one of the 5 here).
    assert nonfinite_training(overlap=True) == (message, 4) and overlapped == 0


class StopsAfterRolloutStart(BaseCallback):
    """Decides at the rollout start of agent step 30 to stop training at that step, as the study's checkpoint callback
    does after a stop's checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.stopping = False

    def _on_rollout_start(self) -> None:
        self.stopping = self.num_timesteps == 29

    def _on_step(self) -> bool:
        return not self.stopping

    def may_act_on_step(self, num_timesteps: int) -> bool:
        return self.stopping


def test_callbacks_are_asked_after_their_rollout_start():
    sequential, _ = train(overlap=False, callbacks=StopsAfterRolloutStart)
    overlapped, kinds = train(overlap=True, callbacks=StopsAfterRolloutStart)
    assert sequential.num_timesteps == overlapped.num_timesteps == 30
    assert_same(state(sequential), state(overlapped), "state")  # the update after step 30 never began
    assert overlapped._n_updates == 29 - 10 and kinds["ran"] + kinds["waited"] == 29 - 10


def test_which_callbacks_may_act_on_a_step():
    evaluation = EvalCallback(FakeImageEnv(), eval_freq=3)
    checkpoint = CheckpointCallback(save_freq=4, save_path="unused")
    # n_calls counts the calls so far; the coming call is n_calls + 1.
    evaluation.n_calls, checkpoint.n_calls = 2, 2
    assert may_act_on_step(evaluation, 0) and not may_act_on_step(checkpoint, 0)
    checkpoint.n_calls = 3
    assert may_act_on_step(checkpoint, 0)
    assert may_act_on_step(CallbackList([ProgressBarCallback(), checkpoint]), 0)
    checkpoint.n_calls = 4
    assert not may_act_on_step(CallbackList([ProgressBarCallback(), checkpoint, ConvertCallback(None)]), 0)
    assert may_act_on_step(ConvertCallback(lambda _locals, _globals: True), 0)
    assert may_act_on_step(Everything(), 0)
    assert not may_act_on_step(None, 0)
    assert not may_act_on_step(EvalCallback(FakeImageEnv(), eval_freq=0), 0)

    env_steps = EnvStepEvalCallback(FakeImageEnv(), eval_freq_env_steps=100)
    env_steps.action_repeat, env_steps.next_eval_env_steps = 4, 200
    assert not may_act_on_step(env_steps, 49) and may_act_on_step(env_steps, 50)

    # rl-zoo3's Optuna evaluation callback, as this package builds it for its algorithms.
    trial_evaluation = trial_eval_callback_class()(make_vec_env(FakeImageEnv), trial=None, eval_freq=5)
    trial_evaluation.n_calls = 3
    assert not may_act_on_step(trial_evaluation, 0)
    trial_evaluation.n_calls = 4
    assert may_act_on_step(trial_evaluation, 0)

    study = StudyCheckpointCallback(save=lambda: None, action_repeat=4, every=1000, deadline=None)
    assert not may_act_on_step(study, 1)
    study.save_due = study.stop_due = True  # the stop's checkpoint is due at the next rollout start
    assert not may_act_on_step(study, 1)
    study.save_due = False  # written: the next step stops training
    assert may_act_on_step(study, 1)


@pytest.mark.parametrize("adds", [6, 7, 10], ids=["filling", "filled_by_the_add", "full"])
def test_a_batch_drawn_before_the_add_is_the_batch_sampled_after_it(adds):
    env = FakeImageEnv(episode_length=4)
    buffer = AugmentedPixelReplayBuffer(8, env.observation_space, env.action_space, image_size=16)
    obs, _ = env.reset(seed=0)
    for step in range(adds + 1):
        if step == adds:  # the coming add: drawn for before it happens
            np.random.seed(1)
            ahead = buffer.draw_after_next_add(64)
        next_obs, reward, terminated, _, _ = env.step(np.zeros(2))
        buffer.add(obs[None], next_obs[None], np.full((1, 2), step), np.array([reward]), np.array([terminated]), [{}])
        obs = env.reset()[0] if terminated else next_obs
    np.random.seed(1)
    assert_same(buffer.gather_transitions(*ahead), buffer.sample_transitions(64))
    assert set(ahead[0]) == set(range(min(adds + 1, 8)))  # every row of after the add, the newest included


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train_freq": 2}, "train_freq=(2, 'step') and gradient_steps=1:"),
        ({"gradient_steps": 2}, "use train_freq=1 and gradient_steps=1"),
        ({"optimize_memory_usage": True, "replay_buffer_kwargs": {"handle_timeout_termination": False}}, "optimize_memory"),
        ({"overlap_env_step": "yes"}, "overlap_env_step must be True or False"),
    ],
)
def test_settings_under_which_no_update_could_begin_early_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GAARASAC("CnnPolicy", FakeImageEnv(), **tiny_kwargs(**{"overlap_env_step": True, **overrides}))


def test_the_option_is_saved_and_can_be_changed_on_load(tmp_path):
    model, _ = train(overlap=True)
    model.save(tmp_path / "model")
    assert GAARASAC.load(tmp_path / "model").overlap_env_step is True
    loaded = GAARASAC.load(tmp_path / "model", overlap_env_step=False)
    assert loaded.overlap_env_step is False and loaded.overlapped_updates == model.overlapped_updates


@cuda
def test_cuda_graphs_begun_before_the_env_step_compute_the_sequential_training():
    sequential, _ = train(overlap=False, device="cuda", cuda_graphs=True)
    overlapped, kinds = train(overlap=True, device="cuda", cuda_graphs=True)
    assert kinds["ran"] > 0 and overlapped._graphed_step is not None and overlapped._graphed_step.captures > 0
    a, b = state(sequential), state(overlapped)
    for name, value in a["params"].items():
        assert th.allclose(value, b["params"][name], rtol=1e-4, atol=1e-5), name
    assert_same(a["buffer"], b["buffer"], "buffer")
    assert a["n_updates"] == b["n_updates"]


@cuda
def test_on_a_gpu_with_evaluations_in_a_process_of_their_own():
    def evaluation(asynchronous: bool) -> EnvStepEvalCallback:
        env = make_vec_env(FakeImageEnv, n_envs=1, seed=3)
        return EnvStepEvalCallback(env, eval_freq_env_steps=7, n_eval_episodes=2, verbose=0, asynchronous=asynchronous)

    common: dict[str, Any] = dict(device="cuda", cuda_graphs=True)
    sequential, _ = train(overlap=False, callbacks=lambda: evaluation(False), **common)
    overlapped, kinds = train(overlap=True, callbacks=lambda: evaluation(True), **common)
    assert kinds["ran"] > 0
    a, b = state(sequential), state(overlapped)
    for name, value in a["params"].items():
        assert th.allclose(value, b["params"][name], rtol=1e-4, atol=1e-5), name
    returns = [model.logger.history["eval/mean_reward"] for model in (sequential, overlapped)]
    assert len(returns[0]) == 11 and np.allclose(returns[0], returns[1], rtol=1e-4, atol=1e-5)

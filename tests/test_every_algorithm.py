"""What every algorithm of the package promises, tested over the one list of all of them
(:data:`sb3_gaara.algorithms.ALGORITHMS`), as SB3's tests run each promise over all its algorithms."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
import torch as th
from conftest import FakeImageEnv, RecordingLogger, tiny_model, tiny_observation_space

from sb3_gaara.algorithms import ALGORITHMS

ALGORITHM_IDS = [algorithm.__name__ for algorithm in ALGORITHMS]

#: settings under which each algorithm trains within a few dozen agent steps of the tiny env (Dreamer trains once per
#: 500 agent steps on 50-step sequences by default)
FAST_SCHEDULE: dict[str, dict[str, Any]] = {
    "Dreamer": {"train_freq": 5, "gradient_steps": 1, "sequence_length": 4, "imagination_horizon": 3, "batch_size": 4},
    "SLAC": {"model_batch_size": 4, "sequence_length": 4},
}


class NaNRewardEnv(FakeImageEnv):
    """The fake env whose reward is NaN at step ``nan_step`` of every episode; it keeps each action it receives, so a
    test can tell whether a non-finite action reached it."""

    def __init__(self, *args: Any, nan_step: int = 3, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nan_step = nan_step
        self.actions: list[np.ndarray] = []

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.actions.append(np.array(action, copy=True))
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, math.nan if self._step == self.nan_step else reward, terminated, truncated, info


def _fast_model(algorithm: type, **overrides: Any) -> Any:
    model = tiny_model(algorithm, **{**FAST_SCHEDULE.get(algorithm.__name__, {}), **overrides})
    model.set_logger(RecordingLogger())
    return model


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_a_nan_reward_stops_training_naming_the_loss_before_a_nan_action_reaches_the_env(algorithm: type):
    env = NaNRewardEnv(tiny_observation_space(algorithm), episode_length=5)
    model = _fast_model(algorithm, env=env)
    with pytest.raises(FloatingPointError) as raised:
        model.learn(total_timesteps=400)
    message = str(raised.value)
    match = re.match(
        r"train/(\w+) became nan at update #(\d+) \(counted like model\._n_updates; (\d+) environment steps of the "
        r"agent\)\. The parameters are no longer trustworthy: .*check the rewards",
        message,
    )
    assert match is not None, message
    update, steps = int(match.group(2)), int(match.group(3))
    # It stopped in the train() call that met the NaN: the update it names is among that call's, and at the step where
    # the model stands.
    assert 1 <= update <= model._n_updates + 1 and steps == model.num_timesteps
    assert model.num_timesteps < 400
    # Every action the env received was finite: the check ends train() before the next action is chosen.
    assert env.actions and all(np.isfinite(action).all() for action in env.actions)


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_finite_training_logs_the_update_count_and_finite_means(algorithm: type):
    model = _fast_model(algorithm)
    model.learn(total_timesteps=40)
    history = model.logger.history
    assert model._n_updates > 0 and history["train/n_updates"][-1] == model._n_updates
    losses = [key for key in history if key.startswith("train/") and key.endswith("loss")]
    assert losses and all(math.isfinite(value) for key in losses for value in history[key])


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_a_nonfinite_parameter_is_named(algorithm: type):
    model = _fast_model(algorithm)
    model.learn(total_timesteps=20)
    assert model._first_nonfinite_parameter() is None
    named = list(model.policy.named_parameters())
    name, parameter = named[len(named) // 2]
    corner = (0,) * parameter.dim()
    with th.no_grad():
        parameter[corner] = -math.inf
    assert model._first_nonfinite_parameter() == f"policy.{name}"
    with th.no_grad():
        parameter[corner] = 0.0
    assert model._first_nonfinite_parameter() is None

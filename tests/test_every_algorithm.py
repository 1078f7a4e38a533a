"""What every algorithm of the package promises, tested over the one list of all of them
(:data:`sb3_gaara.algorithms.ALGORITHMS`), as SB3's tests run each promise over all its algorithms: training stops at
a non-finite loss or parameter and names it; a saved and loaded model acts identically and holds every parameter and
optimizer state; the replay buffer round-trips; a resume from a model and its replay buffer continues bit-exactly on
the CPU; bad inputs are refused at construction, naming the problem and the fix; rl-zoo3's train and enjoy scripts
run each algorithm.

Elsewhere, per family: what only one family promises (``test_gaara_sac.py``, ``test_drq.py``, ``test_drqv2.py``,
``test_slac.py``, ``test_dreamer.py``), the reliability of long runs shown on GAARASAC (``test_reliability.py``: kills
mid-save, Ctrl-C), and rl-zoo3 end to end on the ``dmc-*`` envs with the packaged yml files (``test_zoo.py``, slow:
``test_zoo_train_resume_enjoy_and_optimize`` for gaara_sac, ``test_zoo_trains_the_baselines`` for sac_ae and
curl_sac, and one ``test_zoo_<algo>_...`` each for drq, drqv2, slac and dreamer).
"""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import (
    DREAMER_TINY_POLICY_KWARGS,
    SLAC_TINY_POLICY_KWARGS,
    FakeImageEnv,
    RecordingLogger,
    assert_same,
    tiny_kwargs_for,
    tiny_model,
    tiny_observation_space,
)
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_gaara.algorithms import ALGORITHMS
from sb3_gaara.common.training import SPEED_OPTIONS

ALGORITHM_IDS = [algorithm.__name__ for algorithm in ALGORITHMS]

#: settings under which each algorithm trains within a few dozen agent steps of the tiny env (Dreamer trains once per
#: 500 agent steps on 50-step sequences by default); SLAC pretrains its latent model for 2 updates, so that the resume
#: test shows that a resumed run does not pretrain again
FAST_SCHEDULE: dict[str, dict[str, Any]] = {
    "Dreamer": {"train_freq": 5, "gradient_steps": 2, "sequence_length": 4, "imagination_horizon": 3, "batch_size": 4},
    "SLAC": {"model_batch_size": 4, "sequence_length": 4, "model_pretraining_steps": 2},
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


# ---------------------------------------------------------------------------------------------- one training loop


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_train_is_the_one_loop_each_update_entering_by_gradient_step(algorithm: type, monkeypatch: pytest.MonkeyPatch):
    """Every family trains through ``CheckedTraining.train``: per gradient step one ``_sample_batch``, one
    ``_gradient_step`` on that very batch, the count, then ``_after_gradient_step`` with the batch, in this order."""
    from sb3_gaara.common.training import CheckedTraining

    model = _fast_model(algorithm)
    model.learn(total_timesteps=40)  # fills the buffer past learning_starts (SLAC: pretrains its model here)
    # One loop for every family: no algorithm rewrites it (DrQv2 only adds a log line after it).
    assert type(model).train is CheckedTraining.train or algorithm.__name__ == "DrQv2"
    events: list[tuple[str, int, int]] = []
    for hook in ("_sample_batch", "_gradient_step", "_after_gradient_step"):
        original = getattr(model, hook)

        def spy(*args: Any, _hook: str = hook, _original: Any = original) -> Any:
            result = _original(*args)
            batch = result if _hook == "_sample_batch" else args[0]
            events.append((_hook, id(batch), model._n_updates))
            return result

        monkeypatch.setattr(model, hook, spy)
    before = model._n_updates
    model.train(gradient_steps=3, batch_size=model.batch_size)
    assert model._n_updates == before + 3
    assert [hook for hook, _, _ in events] == ["_sample_batch", "_gradient_step", "_after_gradient_step"] * 3
    for step in range(3):
        (_, drawn, _), (_, trained, during), (_, after, counted) = events[3 * step : 3 * step + 3]
        assert drawn == trained == after  # the step trains on the batch drawn for it, and is shown it afterwards
        assert (during, counted) == (before + step, before + step + 1)  # counted after the update, before the hook


def test_speed_options_are_kept_where_the_update_supports_them_and_left_out_elsewhere():
    from sb3_gaara import CURLSAC, GAARASAC, SACAE, SLAC, Dreamer, DrQ, DrQv2
    from sb3_gaara.study.catalogue import SPEED_ONLY_MODEL_KWARGS

    options = {"cuda_graphs": True, "overlap_env_step": False}
    assert SPEED_ONLY_MODEL_KWARGS == {"cuda_graphs", "overlap_env_step"}
    for algorithm in (GAARASAC, SACAE, CURLSAC, DrQ):
        assert algorithm.speed_options_for(options) == options
        assert set(options) <= set(inspect.signature(algorithm).parameters)  # the constructor takes them
    for algorithm in (DrQv2, SLAC, Dreamer):
        assert algorithm.speed_options_for({**options, "unrelated": 1}) == {}
        assert not set(options) & set(inspect.signature(algorithm).parameters)
    # The study says which of its runs go without an option that is on.
    from sb3_gaara.study.cli import speed_option_notes

    pairs = [("cartpole_swingup", agent) for agent in ("gaara", "drq", "ad10", "slac", "dreamer")]
    assert speed_option_notes(pairs, options) == [
        "cuda_graphs=True applies where the update is written for it; DrQv2, SLAC, Dreamer run without it (the same "
        "results, at their usual speed)"
    ]
    assert speed_option_notes(pairs[:2], options) == [] and speed_option_notes(pairs, {"cuda_graphs": False}) == []


#: (algorithm, speed option) for every option of SPEED_OPTIONS that the algorithm's update is not written for
REFUSED_SPEED_OPTIONS = [
    pytest.param(algorithm, option, id=f"{algorithm.__name__}-{option}")
    for algorithm in ALGORITHMS
    for option in sorted(SPEED_OPTIONS.keys() - algorithm.speed_options)
]


@pytest.mark.parametrize(("algorithm", "option"), REFUSED_SPEED_OPTIONS)
def test_a_speed_option_the_update_is_not_written_for_is_refused_with_the_reason(algorithm, option):
    # The refusal comes before anything is built, from the one rule of CheckedTraining, instead of Python's bare
    # "unexpected keyword argument".
    env = FakeImageEnv(tiny_observation_space(algorithm))
    with pytest.raises(ValueError) as refused:
        algorithm("CnnPolicy", env, **{option: True})
    message = str(refused.value)
    assert message.startswith(f"{algorithm.__name__} does not take {option}=True: the option ")
    assert algorithm.speed_options_reason in message and "Leave it out" in message
    # Off, it asks for nothing: accepted, and the constructor runs as without it.
    model = algorithm("CnnPolicy", env, _init_setup_model=False, **{option: False})
    assert isinstance(model, algorithm) and not hasattr(model, option)


def test_the_speed_options_are_refused_by_every_family_that_lacks_them_and_the_signatures_are_kept():
    from sb3_gaara import CURLSAC, GAARASAC, SACAE, SLAC, Dreamer, DrQ, DrQv2

    assert {(param.values[0], param.values[1]) for param in REFUSED_SPEED_OPTIONS} == {
        (algorithm, option) for algorithm in (DrQv2, SLAC, Dreamer) for option in ("cuda_graphs", "overlap_env_step")
    }
    for algorithm in (GAARASAC, SACAE, CURLSAC, DrQ):
        assert algorithm.speed_options == SPEED_OPTIONS.keys()
    # The refusing constructors keep their signatures (inspect, the RL Zoo's name check, the docs).
    for algorithm in ALGORITHMS:
        parameters = inspect.signature(algorithm).parameters
        assert list(parameters)[:2] == ["policy", "env"] and "learning_rate" in parameters
    # ... and a constructor's warning still points at the line that built the model, not at the refusal's wrapper.
    from sb3_gaara import SingleFrameWarning

    for algorithm in (DrQv2, DrQ):
        with pytest.warns(SingleFrameWarning) as warned:
            algorithm("CnnPolicy", FakeImageEnv(spaces.Box(0, 255, (3, 20, 20), dtype=np.uint8)), **tiny_kwargs_for(algorithm))
        assert [Path(warning.filename).name for warning in warned] == [Path(__file__).name]


# ---------------------------------------------------------------------------------------------- save, load, resume


def learned_state(model: Any) -> dict[str, Any]:
    """Everything a model has learned and continues training from: the state of each module it holds (parameters and
    buffers, target networks included), each tensor it holds (SAC's ``log_ent_coef``), the state of each optimizer on
    the model or in any of its modules, and the step and update counters.

    The optimizers are found by walking the model, not read from its save list, so that one left out of the save
    shows as a difference."""
    state: dict[str, Any] = {"num_timesteps": model.num_timesteps, "_n_updates": model._n_updates}
    for name, value in vars(model).items():
        if isinstance(value, th.nn.Module):
            state[name] = value.state_dict()
            for path, module in value.named_modules(prefix=name):
                for attribute, optimizer in vars(module).items():
                    if isinstance(optimizer, th.optim.Optimizer):
                        state[f"{path}.{attribute}"] = optimizer.state_dict()
        elif isinstance(value, th.Tensor):
            state[name] = value.detach().clone()
        elif isinstance(value, th.optim.Optimizer):
            state[name] = value.state_dict()
    return state


def optimizer_states(state: dict[str, Any]) -> dict[str, dict]:
    """The optimizers' states in a :func:`learned_state`."""
    return {name: value for name, value in state.items() if isinstance(value, dict) and "param_groups" in value}


def act(model: Any, observations: np.ndarray) -> np.ndarray:
    """Deterministic actions for a sequence of observations ``(T, n_envs, C, H, W)`` of one episode per env, with
    SB3's recurrent ``predict`` contract: the state each call returns goes into the next, ``episode_start`` is set at
    the first step. The feed-forward policies ignore both and return no state."""
    state, episode_start, actions = None, np.ones(observations.shape[1], dtype=bool), []
    for observation in observations:
        action, state = model.predict(observation, state=state, episode_start=episode_start, deterministic=True)
        actions.append(action)
        episode_start = np.zeros_like(episode_start)
    return np.stack(actions)


def random_observations(algorithm: type, steps: int, n_envs: int, seed: int) -> np.ndarray:
    shape = tiny_observation_space(algorithm).shape
    return np.random.default_rng(seed).integers(0, 256, (steps, n_envs, *shape), dtype=np.uint8)


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_a_saved_and_loaded_model_acts_identically_and_holds_every_parameter_and_optimizer_state(
    algorithm: type, tmp_path: Path
):
    model = _fast_model(algorithm)
    model.learn(total_timesteps=30)
    state = learned_state(model)
    optimizers = optimizer_states(state)
    # Each optimizer has stepped, so that its moments are there to be lost by a save.
    assert optimizers and all(optimizer["state"] for optimizer in optimizers.values()), sorted(optimizers)
    model.save(tmp_path / "model.zip")

    loaded = algorithm.load(tmp_path / "model.zip", device="cpu")
    assert type(loaded) is algorithm and type(loaded.policy) is type(model.policy)
    assert_same(learned_state(loaded), state, "loaded")
    observations = random_observations(algorithm, steps=4, n_envs=3, seed=1)
    expected = act(model, observations)
    np.testing.assert_array_equal(act(loaded, observations), expected)
    # The actions depend on the observations (a policy that ignores them would pass the comparison whatever was lost).
    assert not np.array_equal(expected[0, 0], expected[0, 1])


def replay_contents(buffer: Any) -> dict[str, Any]:
    """What a replay buffer pickles (SB3's ``save_replay_buffer`` pickles the buffer): its whole state."""
    return buffer.__getstate__()


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_the_replay_buffer_round_trips_exactly(algorithm: type, tmp_path: Path):
    # 27 steps wrap a buffer of 16 transitions (episodes of 5 steps): overwritten transitions and freed frames too
    settings = dict(buffer_size=16, learning_starts=1_000)
    model = _fast_model(algorithm, **settings)
    model.learn(total_timesteps=27)
    model.save_replay_buffer(tmp_path / "buffer")  # a bare name gets SB3's .pkl
    other = _fast_model(algorithm, **settings, seed=1)
    other.load_replay_buffer(tmp_path / "buffer.pkl")
    saved, loaded = model.replay_buffer, other.replay_buffer
    assert type(loaded) is type(saved) and loaded is not saved and saved.full
    assert_same(replay_contents(loaded), replay_contents(saved), "buffer")

    def sample(buffer: Any) -> tuple[Any, ...]:
        th.manual_seed(3)
        np.random.seed(3)
        return tuple(buffer.sample(4))

    assert_same(sample(loaded), sample(saved), "sample")
    # Adding after the load continues exactly.
    rng = np.random.default_rng(0)
    shape = tiny_observation_space(algorithm).shape
    for step in range(5):
        obs, next_obs = rng.integers(0, 256, (2, 1, *shape), dtype=np.uint8)
        action, reward = rng.uniform(-1, 1, (1, 2)).astype(np.float32), rng.normal(size=1).astype(np.float32)
        for buffer in (saved, loaded):
            buffer.add(obs, next_obs, action, reward, np.array([step == 4]), [{}])
    assert_same(replay_contents(loaded), replay_contents(saved), "buffer after adding")
    assert_same(sample(loaded), sample(saved), "sample after adding")


#: agent steps before the save and after the load; Dreamer (FAST_SCHEDULE) trains every 5 steps: twice in each part
BEFORE_SAVE, AFTER_LOAD = 20, 10


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_a_resume_from_the_model_and_its_replay_buffer_is_bit_exact_on_the_cpu(algorithm: type, tmp_path: Path):
    """``learn(N)``, save the model and the replay buffer, load both and ``learn(M, reset_num_timesteps=False)`` ends
    with the parameters and optimizer states of one uninterrupted ``learn(N + M)``.

    What lives outside the model carries over as in one process: the env (the same object, not reset: ``force_reset=
    False`` keeps the saved last observation, as an episode that goes on) and the global random generators."""

    def env() -> DummyVecEnv:
        return DummyVecEnv([lambda: FakeImageEnv(tiny_observation_space(algorithm), episode_length=7)])

    straight = _fast_model(algorithm, env=env())
    straight.learn(total_timesteps=BEFORE_SAVE + AFTER_LOAD)

    first = _fast_model(algorithm, env=env())
    first.learn(total_timesteps=BEFORE_SAVE)
    first.save(tmp_path / "model.zip")
    first.save_replay_buffer(tmp_path / "buffer.pkl")
    at_save = learned_state(first)
    generators = th.get_rng_state(), np.random.get_state(), first.action_space.np_random.bit_generator.state
    resumed = algorithm.load(tmp_path / "model.zip", env=first.get_env(), device="cpu", force_reset=False)
    resumed.load_replay_buffer(tmp_path / "buffer.pkl")
    resumed.set_logger(RecordingLogger())
    th.set_rng_state(generators[0])
    np.random.set_state(generators[1])
    resumed.action_space.np_random.bit_generator.state = generators[2]
    resumed.learn(total_timesteps=AFTER_LOAD, reset_num_timesteps=False)

    assert resumed.num_timesteps == BEFORE_SAVE + AFTER_LOAD and resumed._n_updates > at_save["_n_updates"] > 0
    assert_same(learned_state(resumed), learned_state(straight), "resumed")
    # It acted the same after the resume (SLAC's history, Dreamer's latent state): the same transitions were stored.
    assert_same(replay_contents(resumed.replay_buffer), replay_contents(straight.replay_buffer), "replay buffer")
    # The continued training moved the parameters from the saved ones: the comparison is not of models that stood still.
    assert not th.equal(
        th.cat([p.detach().flatten() for p in resumed.policy.parameters()]),
        th.cat([p.detach().flatten() for p in first.policy.parameters()]),
    )


# ---------------------------------------------------------------------------------------------- bad inputs


#: the algorithms that crop their observations to ``image_size`` (SLAC and Dreamer encode whole frames)
CROPPING = {"GAARASAC", "SACAE", "CURLSAC", "DrQ", "DrQv2"}


def bad_input(algorithm: type, case: str) -> tuple[gym.Env, dict[str, Any], str]:
    """The env and constructor overrides of one bad input for ``algorithm``, and a regex of the key phrases of the
    problem and of the fix that its error must name."""
    space = tiny_observation_space(algorithm)
    channels, side, _ = space.shape
    image = dict(observation_space=space)
    name = algorithm.__name__
    if case == "discrete actions":
        return (
            FakeImageEnv(**image, action_space=spaces.Discrete(3)),
            {},
            (r"needs a continuous Box action space\b.*, got Discrete\(3\)\. For discrete actions use .*DQN or PPO"),
        )
    if case == "vector observations":
        vector = spaces.Box(-1.0, 1.0, (5,), dtype=np.float32)
        # DrQv2 is DDPG, whose SB3 algorithm is TD3; the others' is SAC
        sb3 = "TD3" if name == "DrQv2" else "SAC"
        return (
            FakeImageEnv(vector),
            {},
            rf"shape \(5,\), which is not an image.*For state vectors use SB3's {sb3}\('MlpPolicy'",
        )
    if case == "dict observations":
        both = spaces.Dict({"pixels": space, "state": spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)})
        return FakeImageEnv(both), {}, r"Dict with keys \['pixels', 'state'\]\. .*FilterObservation"
    if case == "float images":
        floats = spaces.Box(0.0, 1.0, space.shape, dtype=np.float32)
        return (
            FakeImageEnv(floats),
            {},
            r"needs uint8 images with values in \[0, 255\] .*got dtype float32.*Render uint8 frames",
        )
    if case == "frames too small for the encoder":
        if name in CROPPING:  # the crop is what the encoder sees
            return (
                FakeImageEnv(**image),
                {"image_size": 12},
                r"image_size=12 is too small for 4 convolutions; use image_size >= 15",
            )
        small = spaces.Box(0, 255, (channels, 8, 8), dtype=np.uint8)
        if name == "SLAC":
            return (
                FakeImageEnv(small),
                {},
                r"frames must be square with a side that is a positive multiple of 16.*got 8\. Render the env at",
            )
        return FakeImageEnv(small), {}, r"built for 64 x 64 frames .*got 8 x 8\. Render the env at 64 px"
    if case == "crop larger than the frame":
        return (
            FakeImageEnv(**image),
            {"image_size": side + 4},
            (
                rf"observations are {side}x{side} pixels, smaller than image_size={side + 4}.*Render larger images .*or pass "
                "a smaller image_size"
            ),
        )
    raise ValueError(case)


BAD_INPUTS = [
    "discrete actions",
    "vector observations",
    "dict observations",
    "float images",
    "frames too small for the encoder",
    "crop larger than the frame",
]
BAD_INPUT_CASES = [
    pytest.param(algorithm, case, id=f"{algorithm.__name__}-{case.replace(' ', '_')}")
    for algorithm in ALGORITHMS
    for case in BAD_INPUTS
    if case != "crop larger than the frame" or algorithm.__name__ in CROPPING
]


@pytest.mark.parametrize(("algorithm", "case"), BAD_INPUT_CASES)
def test_bad_inputs_are_refused_at_construction_naming_the_problem_and_the_fix(algorithm: type, case: str):
    env, overrides, message = bad_input(algorithm, case)
    with pytest.raises(ValueError, match=message):
        tiny_model(algorithm, env=env, **overrides)


SPACE_CASES = ["discrete actions", "vector observations", "dict observations", "float images"]


@pytest.mark.parametrize(
    ("algorithm", "case"),
    [
        pytest.param(algorithm, case, id=f"{algorithm.__name__}-{case.replace(' ', '_')}")
        for algorithm in ALGORITHMS
        for case in SPACE_CASES
    ],
)
def test_a_refused_space_is_named_with_the_algorithm_that_refuses_it(algorithm: type, case: str):
    # A DrQ user told "GAARASAC is SAC: it needs ..." is left to wonder where a GAARASAC came from.
    env, overrides, _ = bad_input(algorithm, case)
    with pytest.raises(ValueError) as raised:
        tiny_model(algorithm, env=env, **overrides)
    message = str(raised.value)
    assert message.startswith(f"{algorithm.__name__} "), message
    assert algorithm.__name__ == "GAARASAC" or "GAARASAC" not in message, message


# ---------------------------------------------------------------------------------------------- the RL Zoo


def zoo_hyperparams(algorithm: type) -> dict[str, Any]:
    """The zoo's hyper-parameters (values as Python source, as in a yml file) of a tiny model of ``algorithm`` that
    trains within 20 agent steps: the networks and schedules of :func:`conftest.tiny_model` and FAST_SCHEDULE."""

    def source(value: Any) -> str:
        return f"dict({', '.join(f'{key}={item!r}' for key, item in value.items())})"

    hyperparams: dict[str, Any] = {"policy": "'CnnPolicy'", "n_timesteps": 20, "learning_starts": 10, "buffer_size": 100}
    if algorithm.__name__ == "SLAC":
        policy_kwargs = SLAC_TINY_POLICY_KWARGS
    elif algorithm.__name__ == "Dreamer":
        policy_kwargs = DREAMER_TINY_POLICY_KWARGS
    else:
        policy_kwargs = {"net_arch": [32, 32]}
    schedule = {"batch_size": 4, **FAST_SCHEDULE.get(algorithm.__name__, {})}
    overrides = tiny_kwargs_for(algorithm, **schedule)
    hyperparams.update({key: overrides[key] for key in ("image_size", "init_gradient_steps", *schedule) if key in overrides})
    return {**hyperparams, "policy_kwargs": source(policy_kwargs)}


@pytest.mark.parametrize("algorithm", ALGORITHMS, ids=ALGORITHM_IDS)
def test_the_zoo_trains_saves_and_enjoys_each_algorithm(
    algorithm: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """rl-zoo3's ``train`` then ``enjoy`` scripts, in this process, on the tiny fake env under a gym id: the package's
    entry for the algorithm builds, trains and saves a model, and ``enjoy`` loads it and acts through whole episodes
    (SLAC and Dreamer with their recurrent state). The ``dmc-*`` envs, the packaged yml files and the other scripts
    are ``test_zoo.py``'s (slow)."""
    from sb3_gaara.zoo import register

    register()
    import rl_zoo3.enjoy
    import rl_zoo3.train

    env_id = f"TinyPixels{algorithm.__name__}-v0"
    space = tiny_observation_space(algorithm)
    spec = gym.envs.registration.EnvSpec(env_id, entry_point=lambda **kwargs: FakeImageEnv(space, **kwargs))
    monkeypatch.setitem(gym.registry, env_id, spec)  # registered for this test only
    config = tmp_path / "tiny.yml"
    config.write_text(f"{env_id}:\n" + "".join(f"  {key}: {value}\n" for key, value in zoo_hyperparams(algorithm).items()))
    monkeypatch.chdir(tmp_path)
    common = ["--algo", algorithm.zoo_name, "--env", env_id, "-f", "logs", "--num-threads", "1", "--device", "cpu"]

    monkeypatch.setattr("sys.argv", ["train", *common, "-conf", str(config), "--seed", "0", "--eval-freq", "-1"])
    rl_zoo3.train.train()
    saved = tmp_path / "logs" / algorithm.zoo_name / f"{env_id}_1" / f"{env_id}.zip"
    model = algorithm.load(saved, device="cpu")
    assert type(model) is algorithm and model.num_timesteps == 20 and model._n_updates > 0

    monkeypatch.setattr("sys.argv", ["enjoy", *common, "--no-render", "-n", "12"])
    capsys.readouterr()
    rl_zoo3.enjoy.enjoy()
    # 12 steps: two whole episodes of the fake env's 5 steps
    assert "2 Episodes" in capsys.readouterr().out

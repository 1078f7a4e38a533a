"""GAARASAC(cuda_graphs=True): the graph-ready gradient step computes the eager update.

On a CPU the graph-ready step runs without capture (``GraphedGradientStep(model, capture=False)``), and must
give the eager update bit for bit. The tests marked ``cuda`` run where a GPU is present (the device check
script runs them there): capture, replay without synchronisation, and the same update within float tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th
from conftest import BATCH_SIZE, FakeImageEnv, RecordingLogger, assert_same, tiny_kwargs
from stable_baselines3.common.buffers import ReplayBuffer

from sb3_gaara import GAARASAC
from sb3_gaara.gaara.cuda_graphs import GraphedGradientStep
from sb3_gaara.gaara.gaara_sac import UpdatePhase
from sb3_gaara.gaara.variants import VARIANTS

cuda = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")


def trained_state(model: GAARASAC) -> dict[str, Any]:
    """Everything an update changes: parameters, optimizer states, the comparison weight and the logged values."""
    return {
        "params": model.policy.state_dict(),
        "optimizers": [optimizer.state_dict() for optimizer in model.optimizers()],
        "comparison_lambda": model.comparison_lambda,
        "logged": {key: values for key, values in model.logger.history.items() if key.startswith("train/")},
        "n_updates": model._n_updates,
    }


def build(graph_ready: bool, device: str = "cpu", **overrides: Any) -> GAARASAC:
    """A tiny model whose buffer holds ``learning_starts`` transitions, frames on ``device``."""
    kwargs = tiny_kwargs(device=device, comparison_lambda_decay=0.01, replay_buffer_kwargs={"storage_device": device})
    kwargs.update(overrides)
    model = GAARASAC("CnnPolicy", FakeImageEnv(), **kwargs)
    model.set_logger(RecordingLogger())
    model.learn(total_timesteps=model.learning_starts)
    if graph_ready and model._graphed_step is None:
        model._graphed_step = GraphedGradientStep(model, capture=False)
    return model


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_graph_ready_step_is_the_eager_update_bit_for_bit(variant):
    # learn() alternates acting and one update per step, then train() runs several updates in one call.
    states = []
    for graph_ready in (False, True):
        model = build(graph_ready, variant=variant)
        model.learn(total_timesteps=12, reset_num_timesteps=False)
        model.train(gradient_steps=3, batch_size=BATCH_SIZE)
        assert model._n_updates == 15
        states.append(trained_state(model))
    assert_same(states[0], states[1], variant)
    if VARIANTS[variant].anneals:
        assert states[1]["comparison_lambda"] == pytest.approx(1.0 - 15 * 0.01)


@pytest.mark.parametrize("variant", ["pixel_sac", "gaara"])
def test_graph_ready_step_with_random_shifts_is_the_eager_update_bit_for_bit(variant):
    # DrQ's K = M = 2 shifted views: their offsets are drawn on the device, which a graph can hold.
    augmentation = {"augmentation": "shift", "augmentation_pad": 2, "target_augmentations": 2, "q_augmentations": 2}
    states = []
    for graph_ready in (False, True):
        model = build(graph_ready, variant=variant, **augmentation)
        model.learn(total_timesteps=6, reset_num_timesteps=False)
        model.train(gradient_steps=3, batch_size=BATCH_SIZE)
        states.append(trained_state(model))
    assert_same(states[0], states[1], variant)


def test_graph_ready_step_reuses_its_inputs_until_what_it_holds_changes():
    model = build(graph_ready=True)
    runner = model._graphed_step
    assert runner is not None
    transitions = model.replay_buffer.sample_transitions(BATCH_SIZE)
    static = runner._prepare(transitions)
    assert runner._prepare(model.replay_buffer.sample_transitions(BATCH_SIZE)) is static
    # Another batch size, another learning rate, another frame store: new inputs (and graphs).
    assert runner._prepare(model.replay_buffer.sample_transitions(BATCH_SIZE + 1)) is not static
    static = runner._prepare(transitions)
    model.critic.optimizer.param_groups[0]["lr"] = 5e-4
    assert runner._prepare(transitions) is not static
    static = runner._prepare(transitions)
    model.replay_buffer._grow_frames()
    assert runner._prepare(transitions) is not static
    assert static.index.shape == (BATCH_SIZE, 4) and static.values.shape == (BATCH_SIZE * 2 + 2 * BATCH_SIZE + 1,)


def test_graph_ready_step_needs_the_frames_on_the_model_device():
    model = build(graph_ready=True, replay_buffer_kwargs={"storage_device": None})
    with pytest.raises(ValueError, match="storage_device='auto'"):
        model.train(gradient_steps=1, batch_size=BATCH_SIZE)


def test_cuda_graphs_on_a_cpu_run_the_eager_update():
    default, graphs = build(graph_ready=False), build(graph_ready=False, cuda_graphs=True)
    assert graphs._graphed_step is None
    for model in (default, graphs):
        th.manual_seed(3)
        np.random.seed(3)
        model.train(gradient_steps=4, batch_size=BATCH_SIZE)
    assert_same(trained_state(default), trained_state(graphs))


def test_update_phase_follows_the_cadence():
    model = build(graph_ready=False, actor_update_freq=2, target_update_interval=3, decoder_update_freq=1)
    assert [model.update_phase(step) for step in range(4)] == [
        UpdatePhase(True, True, True),
        UpdatePhase(False, False, True),
        UpdatePhase(True, False, True),
        UpdatePhase(False, True, True),
    ]
    assert not build(graph_ready=False, variant="sac_ae", decoder_update_freq=2).update_phase(1).auxiliary


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"skip_nonfinite_updates": True}, "skip_nonfinite_updates=True"),
        ({"policy_kwargs": {"net_arch": [32, 32], "fused_optimizers": False}}, "fused_optimizers=False"),
        ({"replay_buffer_kwargs": {"storage_device": None}}, "storage_device=None"),
        ({"replay_buffer_class": ReplayBuffer}, "replay_buffer_class is ReplayBuffer"),
    ],
)
def test_settings_a_cuda_graph_cannot_hold_are_rejected(monkeypatch, overrides, message):
    # The check runs where graphs would be used (CUDA); here it is forced on a CPU model.
    monkeypatch.setattr(GAARASAC, "_uses_cuda_graphs", lambda self: True)
    kwargs = {**tiny_kwargs(cuda_graphs=True), **overrides}
    with pytest.raises(ValueError, match=message):
        GAARASAC("CnnPolicy", FakeImageEnv(), **kwargs)


def test_cuda_graphs_is_saved_and_the_graphs_are_not(tmp_path):
    model = build(graph_ready=False, cuda_graphs=True)
    model.save(tmp_path / "model.zip")
    loaded = GAARASAC.load(tmp_path / "model.zip", env=FakeImageEnv(), device="cpu")
    assert loaded.cuda_graphs is True and loaded._graphed_step is None
    assert GAARASAC.load(tmp_path / "model.zip", device="cpu", cuda_graphs=False).cuda_graphs is False


def test_set_parameters_drops_the_graphs(tmp_path):
    model = build(graph_ready=True)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    runner = model._graphed_step
    assert runner is not None and runner._static is not None
    model.save(tmp_path / "model.zip")
    model.set_parameters(str(tmp_path / "model.zip"))
    assert runner._static is None and runner._signature is None


def test_a_host_replay_buffer_loaded_for_graphs_moves_to_the_model_device(tmp_path):
    host = build(graph_ready=False, replay_buffer_kwargs={"storage_device": None})
    host.save_replay_buffer(tmp_path / "buffer.pkl")
    model = build(graph_ready=True)
    model.load_replay_buffer(tmp_path / "buffer.pkl")
    buffer = model.replay_buffer
    assert isinstance(buffer._frames, th.Tensor) and buffer.storage_device == th.device("cpu")
    positions, envs = np.arange(buffer.size()), np.zeros(buffer.size(), dtype=int)
    for got, expected in zip(buffer.get_stacks(positions, envs), host.replay_buffer.get_stacks(positions, envs), strict=True):
        np.testing.assert_array_equal(got, expected)
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)
    assert model._n_updates == 2


# ---------------------------------------------------------------------------------------------- on a GPU


@cuda
@pytest.mark.parametrize("variant", ["gaara", "sac_ae", "random_anchor"])
def test_cuda_graphs_compute_the_eager_update(variant):
    models = []
    for graphs in (False, True):
        th.manual_seed(0)
        model = build(graph_ready=False, device="cuda", variant=variant, cuda_graphs=graphs)
        assert (model._graphed_step is not None) == graphs
        th.manual_seed(1)
        np.random.seed(1)
        model.train(gradient_steps=6, batch_size=BATCH_SIZE)
        models.append(model)
    eager, graphed = models
    assert graphed._graphed_step is not None and graphed._graphed_step.captures == 2  # two phases, each once
    assert eager.comparison_lambda == graphed.comparison_lambda
    for (name, a), b in zip(eager.policy.state_dict().items(), graphed.policy.state_dict().values(), strict=True):
        th.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    for key, values in eager.logger.history.items():
        if key.startswith("train/") and key != "train/n_updates":
            assert graphed.logger.history[key] == pytest.approx(values, rel=1e-4, abs=1e-6), key


@cuda
def test_a_replayed_step_does_not_synchronise():
    model = build(graph_ready=False, device="cuda", cuda_graphs=True)
    runner = model._graphed_step
    assert runner is not None
    record = lambda name, value: None  # noqa: E731
    for _ in range(4):  # warm-up, then capture, of both phases
        runner.step(model.replay_buffer.sample_transitions(BATCH_SIZE), model.comparison_lambda, record)
        model._n_updates += 1
    th.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(4):
            runner.step(model.replay_buffer.sample_transitions(BATCH_SIZE), model.comparison_lambda, record)
            model._n_updates += 1
    finally:
        th.cuda.set_sync_debug_mode("default")
    assert runner.captures == 2


@cuda
def test_a_new_learning_rate_is_captured_anew():
    model = build(graph_ready=False, device="cuda", cuda_graphs=True)
    model.train(gradient_steps=4, batch_size=BATCH_SIZE)
    runner = model._graphed_step
    assert runner is not None and runner.captures == 2
    model.lr_schedule = lambda _: 5e-4
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)
    assert runner.captures == 4
    assert all(group["lr"] == 5e-4 for group in model.critic.optimizer.param_groups)

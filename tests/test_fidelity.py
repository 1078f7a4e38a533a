"""Where our defaults meet the reference code: the initial burst of updates, how the annealed weight acts,
and small defects found in a line-by-line read."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from conftest import BATCH_SIZE, LEARNING_STARTS, FakeImageEnv, RecordingLogger, tiny_kwargs

from sb3_gaara import GAARASAC, SACAE
from sb3_gaara.gaara.cuda_graphs import GraphedGradientStep


def model_with(**overrides) -> GAARASAC:
    model = GAARASAC("CnnPolicy", FakeImageEnv(), **tiny_kwargs(**overrides))
    model.set_logger(RecordingLogger())
    return model


# ---------------------------------------------------------------------------------------------- initial burst


@pytest.mark.parametrize(("init_gradient_steps", "burst"), [(None, LEARNING_STARTS), (0, 1), (5, 5)])
def test_learn_takes_the_initial_burst_once(init_gradient_steps, burst):
    model = model_with(init_gradient_steps=init_gradient_steps)
    calls: list[int] = []
    train = model.train
    model.train = lambda gradient_steps, batch_size: (calls.append(model._n_updates), train(gradient_steps, batch_size))[1]
    model.learn(total_timesteps=LEARNING_STARTS + 3)  # SB3 trains at timesteps 11, 12 and 13
    assert model._n_updates == burst + 2
    assert calls == [0, burst, burst + 1]


def test_a_loaded_model_that_has_trained_takes_no_second_burst(tmp_path):
    model = model_with(init_gradient_steps=None)
    model.learn(total_timesteps=LEARNING_STARTS + 1)
    assert model._n_updates == LEARNING_STARTS
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = GAARASAC.load(tmp_path / "model.zip", env=FakeImageEnv(), device="cpu")
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    loaded.set_logger(RecordingLogger())
    assert loaded.init_gradient_steps is None
    loaded.learn(total_timesteps=2, reset_num_timesteps=False)
    assert loaded._n_updates == LEARNING_STARTS + 2


def test_train_called_directly_takes_what_it_is_asked():
    model = model_with(init_gradient_steps=None)
    model.learn(total_timesteps=LEARNING_STARTS, progress_bar=False)  # fills the buffer, trains nothing
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)
    assert model._n_updates == 2


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_bad_init_gradient_steps_are_rejected(value):
    with pytest.raises(ValueError, match="init_gradient_steps must be a non-negative integer"):
        model_with(init_gradient_steps=value)


# ---------------------------------------------------------------------------------------------- annealing


def comparison_displacement(comparison_anneal: str, weight: float, steps: int = 3) -> dict[str, th.Tensor]:
    """How far ``steps`` comparison updates move the encoder and ``W``, from one state, with ``c = weight``."""
    model = model_with(variant="contrastive", comparison_anneal=comparison_anneal)
    model.learn(total_timesteps=LEARNING_STARTS)
    comparison = model.auxiliary_losses["comparison"]
    params = dict(model.policy.critic_encoder.named_parameters()) | {"W": model.policy.comparison.W}
    start = {name: param.detach().clone() for name, param in params.items()}
    np.random.seed(0)
    th.manual_seed(0)
    for _ in range(steps):
        replay_data = model.replay_buffer.sample(BATCH_SIZE)
        batch = model._auxiliary_batch(replay_data, model.policy.scale_images(replay_data.observations), None)
        lr_mode = comparison_anneal == "lr"
        loss, _ = comparison(model.policy, batch, 1.0 if lr_mode else weight)
        model.optimize(loss, comparison.optimizer, step_scale=weight if lr_mode else None)
    return {name: param.detach() - start[name] for name, param in params.items()}


def relative_difference(a: dict[str, th.Tensor], b: dict[str, th.Tensor]) -> float:
    difference = sum(float((a[name] - b[name]).norm() ** 2) for name in a) ** 0.5
    return difference / sum(float(a[name].norm() ** 2) for name in a) ** 0.5


def test_weighting_the_loss_barely_changes_the_adam_steps():
    # Adam divides the gradient by its running magnitude: c = 0.5 and c = 1 give nearly the same steps.
    full, half = comparison_displacement("loss", 1.0), comparison_displacement("loss", 0.5)
    assert relative_difference(full, half) < 0.01


def test_scaling_the_step_halves_the_comparison_updates():
    full, half = comparison_displacement("lr", 1.0, steps=1), comparison_displacement("lr", 0.5, steps=1)
    for name in full:
        th.testing.assert_close(half[name], 0.5 * full[name], rtol=1e-4, atol=1e-7, msg=name)


def test_the_lr_form_logs_the_unweighted_loss_and_anneals_alike():
    model = model_with(comparison_anneal="lr", comparison_lambda_decay=0.1, comparison_lambda_min=0.5)
    model.learn(total_timesteps=LEARNING_STARTS + 2)
    history = model.logger.history
    assert history["train/comparison_loss"] == history["train/contrastive_loss"]
    assert model.comparison_lambda == pytest.approx(0.8)


def test_the_lr_form_is_the_same_in_the_graph_ready_step():
    states = []
    for graph_ready in (False, True):
        model = model_with(comparison_anneal="lr", comparison_lambda_decay=0.1, replay_buffer_kwargs={"storage_device": "cpu"})
        model.learn(total_timesteps=LEARNING_STARTS)
        if graph_ready:
            model._graphed_step = GraphedGradientStep(model, capture=False)
        np.random.seed(1)
        th.manual_seed(1)
        model.train(gradient_steps=3, batch_size=BATCH_SIZE)
        states.append(model.policy.state_dict())
    for name, tensor in states[0].items():
        assert th.equal(tensor, states[1][name]), name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"comparison_anneal": "weight"}, "comparison_anneal must be one of"),
        ({"comparison_anneal": "lr", "variant": "joint"}, "variant='joint' applies the reconstruction"),
    ],
)
def test_bad_comparison_anneal_is_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        model_with(**overrides)


# ---------------------------------------------------------------------------------------------- small defects


def test_scaling_leaves_a_callers_float_images_alone():
    policy = model_with().policy
    images = th.rand(2, 6, 16, 16).mul_(255).contiguous(memory_format=th.channels_last)
    copy = images.clone()
    scaled = policy.scale_images(images)
    assert th.equal(images, copy)
    th.testing.assert_close(scaled, copy / 255.0)


@pytest.mark.parametrize(("cls", "use_comparison"), [(SACAE, True), (GAARASAC, False)])
def test_use_comparison_must_agree_with_the_variant(cls, use_comparison):
    kwargs = tiny_kwargs(policy_kwargs=dict(net_arch=[32, 32], use_comparison=use_comparison))
    with pytest.raises(ValueError, match="policy_kwargs\\['use_comparison'\\]"):
        cls("CnnPolicy", FakeImageEnv(), **kwargs)


@pytest.mark.parametrize("option", [{"log_std_init": 0.0}, {"use_expln": True}, {"clip_mean": 1.0}])
def test_gsde_only_policy_options_are_rejected(option):
    kwargs = tiny_kwargs(policy_kwargs=dict(net_arch=[32, 32], **option))
    with pytest.raises(ValueError, match="only with gSDE"):
        GAARASAC("CnnPolicy", FakeImageEnv(), **kwargs)

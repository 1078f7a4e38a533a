"""DrQ and GAARASAC's random shifts: the paper's defaults, the averaged target and loss against values recomputed
from the networks' own outputs, which images each part of the update reads, which parameters move, save/load and
bit-exact resume, and the errors."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from conftest import BATCH_SIZE, OBS_SHAPE, RecordingLogger, assert_same
from test_gaara_sac import ACTOR_OWN, CONVS, CRITIC_ENCODER_HEAD, Q_HEADS, TARGET, assert_moved, assert_still, snapshot

from sb3_gaara import GAARASAC, DrQ
from sb3_gaara.gaara import gaara_sac as gaara_sac_module

SHIFT = {"augmentation": "shift", "augmentation_pad": 2}


def test_defaults_are_drqs_published_settings():
    defaults = {name: p.default for name, p in inspect.signature(DrQ).parameters.items()}
    expected = {
        "learning_rate": 1e-3,
        "batch_size": 512,
        "buffer_size": 100_000,
        "learning_starts": 1000,
        "tau": 0.01,
        "encoder_tau": 0.01,  # DrQ soft-updates the whole critic, encoder included, at one rate
        "gamma": 0.99,
        "actor_update_freq": 2,
        "target_update_interval": 2,
        "ent_coef": "auto_0.1",
        "ent_coef_lr": 1e-3,
        "init_gradient_steps": 0,  # one update per agent step after the random steps, no burst
        "image_size": 84,
        "augmentation": "shift",
        "augmentation_pad": 4,
        "target_augmentations": 2,
        "q_augmentations": 2,
    }
    assert {name: defaults[name] for name in expected} == expected
    # Every GAARASAC argument, and only those: DrQ changes defaults, not the interface.
    assert list(defaults) == list(inspect.signature(GAARASAC).parameters)
    assert DrQ.default_variant == "pixel_sac" and DrQ.zoo_name == "drq"
    assert inspect.signature(GAARASAC).parameters["augmentation"].default is None


def test_a_drq_model_has_no_auxiliary_module_and_a_plain_adam_temperature(make_model):
    model = make_model(DrQ)
    assert model.policy.decoder is None and model.policy.comparison is None and len(model.auxiliary_losses) == 0
    assert model.ent_coef_optimizer is not None
    assert model.ent_coef_optimizer.param_groups[0]["betas"] == (0.9, 0.999)
    assert make_model(GAARASAC).ent_coef_optimizer.param_groups[0]["betas"] == (0.5, 0.999)
    assert float(model.log_ent_coef.detach().exp()) == pytest.approx(0.1)


class _Spy:
    """Records what the update feeds to and gets from the networks of one gradient step."""

    def __init__(self, model: GAARASAC, monkeypatch: pytest.MonkeyPatch) -> None:
        self.shift_inputs: list[th.Tensor] = []
        self.shift_outputs: list[th.Tensor] = []
        self.target_q: list[tuple[th.Tensor, ...]] = []
        self.actor_outputs: list[tuple[th.Tensor, th.Tensor]] = []
        self.critic_inputs: list[th.Tensor] = []
        self.critic_q: list[tuple[th.Tensor, ...]] = []
        self.conv_inputs: list[th.Tensor] = []
        self.samples: list[Any] = []
        shift = gaara_sac_module.random_shift
        buffer, actor, critic, target = model.replay_buffer, model.actor, model.critic, model.critic_target
        encoder = model.policy.critic_encoder
        crop, act, q_critic, q_target = (
            buffer.crop,
            actor.action_log_prob_from_features,
            critic.q_from_features,
            target.q_from_features,
        )
        encode, forward_conv = encoder.forward, encoder.forward_conv

        def spy_shift(images: th.Tensor, pad: int) -> th.Tensor:
            out = shift(images, pad)
            self.shift_inputs.append(images)
            self.shift_outputs.append(out)
            return out

        def spy_crop(*args: Any, **kwargs: Any) -> Any:
            # The batch of a gradient step: the drawn transitions (sample_transitions), cropped.
            self.samples.append(crop(*args, **kwargs))
            return self.samples[-1]

        def spy_act(features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
            self.actor_outputs.append(act(features))
            return self.actor_outputs[-1]

        def spy_critic(features: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
            self.critic_q.append(tuple(q_critic(features, actions)))
            return self.critic_q[-1]

        def spy_target(features: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
            self.target_q.append(tuple(q_target(features, actions)))
            return self.target_q[-1]

        def spy_encode(images: th.Tensor) -> th.Tensor:
            self.critic_inputs.append(images)
            return encode(images)

        def spy_forward_conv(images: th.Tensor) -> th.Tensor:
            self.conv_inputs.append(images)
            return forward_conv(images)

        monkeypatch.setattr(gaara_sac_module, "random_shift", spy_shift)
        monkeypatch.setattr(buffer, "crop", spy_crop)
        monkeypatch.setattr(actor, "action_log_prob_from_features", spy_act)
        monkeypatch.setattr(critic, "q_from_features", spy_critic)
        monkeypatch.setattr(target, "q_from_features", spy_target)
        monkeypatch.setattr(encoder, "forward", spy_encode)
        monkeypatch.setattr(encoder, "forward_conv", spy_forward_conv)


@pytest.mark.parametrize(("k", "m"), [(2, 2), (3, 1), (1, 2)])
def test_target_is_the_mean_over_k_views_and_the_loss_the_mean_over_m_views(filled_model, monkeypatch, k, m):
    model = filled_model(DrQ, augmentation_pad=2, target_augmentations=k, q_augmentations=m)
    alpha = float(model.log_ent_coef.detach().exp())
    spy = _Spy(model, monkeypatch)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)  # update 0: critic, actor, targets

    (data,) = spy.samples
    # M shifted views of the observation, then K of the next observation, each a shift of the sampled center crop
    assert len(spy.shift_inputs) == m + k
    for i, images in enumerate(spy.shift_inputs):
        expected = data.observations if i < m else data.next_observations
        assert images is expected
    # Each of the K views has its own sampled next action and its own target; the target is their mean.
    assert len(spy.target_q) == k and len(spy.actor_outputs) == k + 1  # K target actions, then the actor's step
    targets = []
    for (q1, q2), (_, log_prob) in zip(spy.target_q, spy.actor_outputs[:k], strict=True):
        soft_value = th.min(q1, q2) - alpha * log_prob.reshape(-1, 1)
        targets.append(data.rewards + (1 - data.dones) * model.gamma * soft_value)
    target = sum(targets) / k
    # The critic's loss: the mean over the M views of the two heads' summed MSEs.
    assert len(spy.critic_q) >= m
    losses = [F.mse_loss(q1, target) + F.mse_loss(q2, target) for q1, q2 in spy.critic_q[:m]]
    expected_loss = float(sum(losses).detach() / m)
    (logged,) = model.logger.history["train/critic_loss"]
    assert logged == pytest.approx(expected_loss, rel=1e-6)
    if k > 1:  # the views differ, so their targets do
        assert not th.allclose(targets[0], targets[1])


def test_the_critic_reads_the_shifted_views_and_the_actor_the_first(filled_model, monkeypatch):
    model = filled_model(DrQ, augmentation_pad=2)
    spy = _Spy(model, monkeypatch)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    views = [model.policy.scale_images(out) for out in spy.shift_outputs]
    # the critic's encoder reads the two views of the observation (the target reads the next views by its own encoder)
    assert len(spy.critic_inputs) == 2
    for images, view in zip(spy.critic_inputs, views[:2], strict=True):
        assert th.equal(images, view)
    # the actor's step reads the conv features of the first view
    (conv_input,) = spy.conv_inputs[-1:]
    assert th.equal(conv_input, views[0])
    # the views are shifts of the center crop by at most pad pixels, not the crop itself
    (data,) = spy.samples
    assert not th.equal(spy.shift_outputs[0], data.observations)


def test_shift_of_pad_zero_is_the_center_crop(filled_model, monkeypatch):
    model = filled_model(GAARASAC, augmentation="shift", augmentation_pad=0, variant="pixel_sac")
    spy = _Spy(model, monkeypatch)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    (data,) = spy.samples
    assert th.equal(spy.critic_inputs[0], model.policy.scale_images(data.observations))


def test_gaara_shift_keeps_the_center_crop_for_the_auxiliary_losses(filled_model, monkeypatch):
    model = filled_model(GAARASAC, **SHIFT)
    batches = []
    for loss in model.auxiliary_losses.values():
        original = loss.forward

        def spy_forward(policy: Any, batch: Any, weight: Any, original: Any = original) -> Any:
            batches.append(batch)
            return original(policy, batch, weight)

        monkeypatch.setattr(loss, "forward", spy_forward)
    spy = _Spy(model, monkeypatch)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    (data,) = spy.samples
    assert [name for name in model.auxiliary_losses] == ["reconstruction", "comparison"] and len(batches) == 2
    for batch in batches:
        assert batch.observations is data.observations
        assert th.equal(batch.scaled, model.policy.scale_images(data.observations))
        assert batch.anchor is None or batch.anchor is batch.scaled  # the anchor: the unshifted center crop
    # the reconstruction computes its own conv features of the center crop, not the actor's of the shifted view
    assert batches[0].conv_features is None
    assert th.equal(spy.conv_inputs[-1], model.policy.scale_images(data.observations))
    # the critic still reads a shifted view
    assert th.equal(spy.critic_inputs[0], model.policy.scale_images(spy.shift_outputs[0]))


def test_the_critic_step_moves_the_encoder_and_q_heads_and_the_actor_step_the_actor_only(filled_model, monkeypatch):
    model = filled_model(DrQ, augmentation_pad=2)
    model._n_updates = 1  # an update without the actor and the targets
    before = snapshot(model)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    after = snapshot(model)
    assert_moved(before, after, CONVS)
    assert_moved(before, after, CRITIC_ENCODER_HEAD)
    assert_moved(before, after, Q_HEADS)
    assert_still(before, after, ACTOR_OWN + TARGET)
    # the actor's step (critic frozen) moves the actor's own layers only
    model._n_updates = 2
    monkeypatch.setattr(model.critic.optimizer, "step", lambda *args, **kwargs: None)
    monkeypatch.setattr(model, "update_phase", lambda step: gaara_sac_module.UpdatePhase(True, False, False))
    before = snapshot(model)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    after = snapshot(model)
    assert_moved(before, after, ACTOR_OWN)
    assert_still(before, after, (CONVS, *CRITIC_ENCODER_HEAD, *Q_HEADS, *TARGET))


def _state(model: GAARASAC) -> dict[str, Any]:
    return {
        "params": model.policy.state_dict(),
        "log_ent_coef": model.log_ent_coef.detach().clone(),
        "optimizers": [optimizer.state_dict() for optimizer in model.optimizers()],
        "n_updates": model._n_updates,
    }


@pytest.mark.parametrize(("cls", "kwargs"), [(DrQ, {"augmentation_pad": 2}), (GAARASAC, SHIFT)])
def test_save_load_and_bit_exact_resume(filled_model, make_env, tmp_path, cls, kwargs):
    original = filled_model(cls, **kwargs)
    original.train(gradient_steps=3, batch_size=BATCH_SIZE)
    original.save(tmp_path / "model.zip")
    original.save_replay_buffer(tmp_path / "buffer.pkl")
    resumed = cls.load(tmp_path / "model.zip", env=make_env(), device="cpu")
    resumed.load_replay_buffer(tmp_path / "buffer.pkl")
    resumed.set_logger(RecordingLogger())
    assert type(resumed) is cls
    for name in ("augmentation", "augmentation_pad", "target_augmentations", "q_augmentations", "variant", "batch_size"):
        assert getattr(resumed, name) == getattr(original, name), name
    assert_same(_state(resumed), _state(original), "after load")
    for model in (original, resumed):
        th.manual_seed(7)
        np.random.seed(7)
        model.train(gradient_steps=4, batch_size=BATCH_SIZE)
    assert_same(_state(resumed), _state(original), "after 4 more updates")
    obs = np.random.default_rng(1).integers(0, 256, (3, *OBS_SHAPE), dtype=np.uint8)
    np.testing.assert_array_equal(resumed.predict(obs, deterministic=True)[0], original.predict(obs, deterministic=True)[0])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"augmentation": "crop"}, "augmentation must be None or 'shift'"),
        ({"augmentation_pad": -1}, "augmentation_pad must be a non-negative integer"),
        ({"augmentation_pad": 2.5}, "augmentation_pad must be a non-negative integer"),
        ({"target_augmentations": 0}, "target_augmentations must be a positive integer"),
        ({"q_augmentations": True}, "q_augmentations must be a positive integer"),
        ({"augmentation": None}, "target_augmentations=2 averages over differently augmented views"),
    ],
)
def test_bad_augmentation_settings_are_refused_naming_the_fix(make_model, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_model(DrQ, **overrides)

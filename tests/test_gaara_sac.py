"""GAARASAC: gradient routing, EMA targets, update cadence, annealing, variants, acting and save/load."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th
from conftest import assert_same
from gymnasium import spaces

import sb3_gaara.gaara.auxiliary_losses as callbacks_module
import sb3_gaara.gaara.gaara_sac as gaara_sac_module
from sb3_gaara import CURLSAC, GAARASAC, SACAE, VARIANTS
from sb3_gaara.common.crops import center_crop

# The tiny models of conftest.py crop 6 x 20 x 20 observations to 16 px and train on batches of 8
# after 10 random steps.
OBS_SHAPE = (6, 20, 20)
IMAGE_SIZE = 16
BATCH_SIZE = 8
LEARNING_STARTS = 10

# Groups of the policy's state dict; the actor's `features_extractor.convs` are the critic's (tied).
CONVS = "critic.features_extractor.convs."
CRITIC_ENCODER_HEAD = ("critic.features_extractor.fc.", "critic.features_extractor.layer_norm.")
Q_HEADS = ("critic.qf",)
ACTOR_OWN = (
    "actor.features_extractor.fc.",
    "actor.features_extractor.layer_norm.",
    "actor.latent_pi.",
    "actor.mu.",
    "actor.log_std.",
)
TARGET = ("critic_target.",)
DECODER = ("decoder.",)
COMPARISON = ("comparison.W",)

AUXILIARY_METRICS = {"reconstruction_loss", "comparison_loss", "contrastive_loss", "decoder_distance"}


def snapshot(model: GAARASAC) -> dict[str, th.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.policy.state_dict().items()}


def moved(before: dict[str, th.Tensor], after: dict[str, th.Tensor], prefixes: str | tuple[str, ...]) -> dict[str, bool]:
    """For each tensor whose name starts with one of ``prefixes``: did any of its values change?"""
    selected = {name: not th.equal(before[name], after[name]) for name in before if name.startswith(prefixes)}
    assert selected, f"no tensor starts with {prefixes}"
    return selected


def assert_moved(before, after, prefixes) -> None:
    changes = moved(before, after, prefixes)
    assert any(changes.values()), f"none of {sorted(changes)} moved"


def assert_still(before, after, prefixes) -> None:
    changes = moved(before, after, prefixes)
    assert not any(changes.values()), f"{sorted(n for n, c in changes.items() if c)} moved"


def no_step(*args: Any, **kwargs: Any) -> None:
    return None


# --------------------------------------------------------------------------------------------------
# Gradient routing
# --------------------------------------------------------------------------------------------------


def test_actor_convs_are_the_critics_and_only_the_critic_optimizers_hold_them(make_model):
    model = make_model()
    policy = model.policy
    critic_encoder, actor_encoder = policy.critic_encoder, model.actor.features_extractor
    assert actor_encoder.convs is critic_encoder.convs
    assert actor_encoder.fc is not critic_encoder.fc
    assert actor_encoder.layer_norm is not critic_encoder.layer_norm
    assert policy.target_encoder.convs is not critic_encoder.convs

    conv_ids = {id(p) for p in critic_encoder.convs.parameters()}
    actor_ids = {id(p) for group in model.actor.optimizer.param_groups for p in group["params"]}
    critic_ids = {id(p) for group in model.critic.optimizer.param_groups for p in group["params"]}
    assert not conv_ids & actor_ids
    assert conv_ids <= critic_ids
    assert {id(p) for p in actor_encoder.fc.parameters()} <= actor_ids
    assert {id(p) for p in model.actor.mu.parameters()} <= actor_ids
    # The actor's optimizer holds every actor parameter but the tied convolutions.
    assert len(actor_ids) == len({id(p) for p in model.actor.parameters()}) - len(conv_ids)


def test_actor_forward_sends_no_gradient_into_the_convolutions(make_model):
    model = make_model()
    obs = th.randint(0, 256, (4, 6, IMAGE_SIZE, IMAGE_SIZE), dtype=th.uint8)
    _, log_prob = model.actor.action_log_prob(obs)
    log_prob.sum().backward()
    assert all(p.grad is None for p in model.policy.critic_encoder.parameters())
    assert model.actor.features_extractor.fc.weight.grad is not None
    assert float(model.actor.features_extractor.fc.weight.grad.abs().sum()) > 0
    # The critic's forward, on the other hand, reaches them.
    q1, _ = model.critic(obs, th.zeros(4, 2))
    q1.sum().backward()
    assert all(p.grad is not None for p in model.policy.critic_encoder.convs.parameters())


def test_actor_update_leaves_the_convolutions_and_moves_the_actor(filled_model, monkeypatch):
    # Step 1 with actor_update_freq=1 and the other cadences at 2: critic + actor only; the critic's step is
    # switched off so that only the actor and temperature updates can move anything.
    model = filled_model(actor_update_freq=1, decoder_update_freq=2, target_update_interval=2)
    model._n_updates = 1
    monkeypatch.setattr(model.critic.optimizer, "step", no_step)
    before, log_alpha = snapshot(model), model.log_ent_coef.detach().clone()
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    after = snapshot(model)
    assert_still(before, after, CONVS)
    assert_still(before, after, CRITIC_ENCODER_HEAD + Q_HEADS + TARGET + DECODER + COMPARISON)
    for name in ("actor.features_extractor.fc.weight", "actor.latent_pi.0.weight", "actor.mu.weight"):
        assert not th.equal(before[name], after[name]), f"{name} did not move under the actor loss"
    assert not th.equal(log_alpha, model.log_ent_coef.detach())
    assert "train/actor_loss" in model.logger.name_to_value


def test_critic_update_trains_the_encoder_and_not_the_actor(filled_model):
    # Step 1, every other cadence at 2: the critic update alone.
    model = filled_model(actor_update_freq=2, decoder_update_freq=2, target_update_interval=2)
    model._n_updates = 1
    before, log_alpha = snapshot(model), model.log_ent_coef.detach().clone()
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    after = snapshot(model)
    assert_moved(before, after, CONVS)
    assert_moved(before, after, CRITIC_ENCODER_HEAD)
    assert_moved(before, after, Q_HEADS)
    assert_still(before, after, ACTOR_OWN + TARGET + DECODER + COMPARISON)
    assert th.equal(log_alpha, model.log_ent_coef.detach())
    # The actor reads the critic's new convolutions.
    assert th.equal(after["actor.features_extractor.convs.0.weight"], after[CONVS + "0.weight"])
    assert "train/actor_loss" not in model.logger.name_to_value


@pytest.mark.parametrize("variant", sorted(name for name, variant in VARIANTS.items() if variant.auxiliary_losses))
def test_auxiliary_update_trains_encoder_decoder_and_W_only(filled_model, monkeypatch, variant):
    model = filled_model(variant=variant, actor_update_freq=2, decoder_update_freq=1, target_update_interval=2)
    model._n_updates = 1
    monkeypatch.setattr(model.critic.optimizer, "step", no_step)
    before = snapshot(model)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    after = snapshot(model)
    assert_moved(before, after, CONVS)
    assert_moved(before, after, CRITIC_ENCODER_HEAD)
    if model.policy.decoder is not None:
        assert_moved(before, after, DECODER)
    if model.policy.comparison is not None:
        assert_moved(before, after, COMPARISON)
    assert_still(before, after, Q_HEADS + ACTOR_OWN + TARGET)


# What each auxiliary step alone trains: (variant, loss) -> (moves the decoder?, moves W?)
CALLBACK_TARGETS = {
    ("sac_ae", "reconstruction"): (True, False),
    ("gaara", "reconstruction"): (True, False),
    ("gaara", "comparison"): (False, True),
    ("joint", "joint"): (True, True),
    # The decoder is frozen in the discriminator step (SAC+GAARA §5.3).
    ("decoder_discriminator", "decoder_discriminator"): (False, False),
}


@pytest.mark.parametrize(("variant", "name"), sorted(CALLBACK_TARGETS))
def test_each_auxiliary_step_trains_the_encoder_and_its_own_modules(filled_model, variant, name):
    moves_decoder, moves_w = CALLBACK_TARGETS[(variant, name)]
    model = filled_model(variant=variant)
    replay_data = model.replay_buffer.sample(BATCH_SIZE)
    batch = model._auxiliary_batch(replay_data, model.policy.scale_images(replay_data.observations), conv_features=None)
    before, weight = snapshot(model), model.comparison_lambda
    auxiliary = model.auxiliary_losses[name]
    loss, metrics = auxiliary(model.policy, batch, weight)
    unchanged = snapshot(model)
    assert all(th.equal(before[key], unchanged[key]) for key in before)  # a loss computes, it writes nothing
    assert model.comparison_lambda == weight
    assert model.optimize(loss, auxiliary.optimizer)
    after = snapshot(model)
    assert metrics and all(th.isfinite(v) for v in metrics.values())
    assert_moved(before, after, CONVS)
    assert_moved(before, after, CRITIC_ENCODER_HEAD)
    if model.policy.decoder is not None:
        (assert_moved if moves_decoder else assert_still)(before, after, DECODER)
    if model.policy.comparison is not None:
        (assert_moved if moves_w else assert_still)(before, after, COMPARISON)
    assert_still(before, after, Q_HEADS + ACTOR_OWN + TARGET)
    assert all(p.requires_grad for p in model.policy.parameters())


# --------------------------------------------------------------------------------------------------
# One conv pass for the actor step and the auxiliary loss after it
# --------------------------------------------------------------------------------------------------


def count_conv_passes(model: GAARASAC) -> list[int]:
    """Update number of every forward pass of the critic's (tied) convolutions, from now on."""
    passes: list[int] = []
    model.policy.critic_encoder.convs.register_forward_hook(lambda *args: passes.append(model._n_updates))
    return passes


def test_actor_update_and_auxiliary_loss_share_one_conv_pass(filled_model):
    model = filled_model()  # the actor updates on even updates; reconstruction and comparison on every one
    passes = count_conv_passes(model)
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)
    # Update 0: a' ~ pi(s'), Q(s, a), the actor step (whose pass the reconstruction reuses), the anchor.
    # Update 1 has no actor step: a' ~ pi(s'), Q(s, a), the reconstruction, the anchor.
    assert passes == [0, 0, 0, 0, 1, 1, 1, 1]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_reusing_the_conv_features_gives_the_update_of_a_fresh_pass(filled_model, monkeypatch, variant):
    shared, fresh = filled_model(variant=variant), filled_model(variant=variant)
    # Without the reuse every auxiliary loss computes its own conv features, as in the paper's code.
    build_batch = fresh._auxiliary_batch
    monkeypatch.setattr(fresh, "_auxiliary_batch", lambda *args: build_batch(*args)._replace(conv_features=None))
    for model in (shared, fresh):
        th.manual_seed(7)
        np.random.seed(7)
        model.train(gradient_steps=4, batch_size=BATCH_SIZE)
    fresh_state = fresh.policy.state_dict()
    for name, tensor in shared.policy.state_dict().items():
        assert th.equal(tensor, fresh_state[name]), name


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_the_first_auxiliary_loss_gets_the_conv_features(filled_model, monkeypatch, variant):
    model = filled_model(variant=variant)
    received: list[tuple[int, str, bool]] = []
    for name, auxiliary in model.auxiliary_losses.items():

        def spy(policy, batch, weight, name=name, forward=auxiliary.forward):
            received.append((model._n_updates, name, batch.conv_features is not None))
            if batch.conv_features is not None:  # the conv maps of the scaled observations, by the current convs
                assert th.equal(batch.conv_features, policy.critic_encoder.forward_conv(batch.scaled))
            return forward(policy, batch, weight)

        monkeypatch.setattr(auxiliary, "forward", spy)
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)
    names = list(model.auxiliary_losses)
    assert received == [(update, name, i == 0) for update in (0, 1) for i, name in enumerate(names)]


def test_reconstruction_target_has_the_layout_of_the_decoder_output(filled_model, monkeypatch):
    # A loss between a channels-last and a channel-major tensor runs several times slower on the CPU.
    model = filled_model(variant="sac_ae")
    layouts = []
    loss = callbacks_module.reconstruction_loss

    def recording(reconstruction: th.Tensor, target: th.Tensor, *args: Any) -> th.Tensor:
        layouts.append(tuple(tensor.is_contiguous(memory_format=th.channels_last) for tensor in (reconstruction, target)))
        return loss(reconstruction, target, *args)

    monkeypatch.setattr(callbacks_module, "reconstruction_loss", recording)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    assert layouts == [(True, True)]


def logged_losses(model: GAARASAC) -> dict[str, list[float]]:
    return {key: values for key, values in model.logger.history.items() if key.endswith("_loss")}


@pytest.mark.parametrize("option", [{"channels_last": False}, {"fused_optimizers": False}])
def test_speed_options_do_not_change_the_update(filled_model, option):
    # Other kernels, the same arithmetic up to float rounding. Adam turns a rounding-sized gradient into a
    # step of lr, so near-zero gradients part ways: tiny learning rates keep that below the tolerance.
    rates = {name: 1e-7 for name in ("learning_rate", "encoder_lr", "decoder_lr", "comparison_lr")}
    default = filled_model(**rates)
    other = filled_model(policy_kwargs=dict(net_arch=[32, 32], **option), **rates)
    for model in (default, other):
        th.manual_seed(7)
        np.random.seed(7)
        model.train(gradient_steps=3, batch_size=BATCH_SIZE)
    losses, other_losses = logged_losses(default), logged_losses(other)
    assert set(losses) == {f"train/{name}" for name in ("critic_loss", "actor_loss", "ent_coef_loss")} | {
        f"train/{name}" for name in ("reconstruction_loss", "comparison_loss", "contrastive_loss")
    }
    for key, values in losses.items():
        # The reconstruction target's noise is drawn in memory order: another layout, another draw.
        tolerance = 1e-3 if key == "train/reconstruction_loss" and "channels_last" in option else 1e-5
        assert other_losses[key] == pytest.approx(values, rel=tolerance), key


def test_bfloat16_convolutions_keep_float32_weights_and_a_close_update(filled_model, make_env, tmp_path):
    default, mixed = filled_model(), filled_model(policy_kwargs=dict(net_arch=[32, 32], conv_dtype="bfloat16"))
    policy = mixed.policy
    stacks = [policy.critic_encoder, policy.target_encoder, mixed.actor.features_extractor, policy.decoder]
    assert [stack.conv_dtype for stack in stacks] == [th.bfloat16] * 4
    assert default.policy.critic_encoder.conv_dtype is None
    obs = th.rand(2, *OBS_SHAPE)
    # bfloat16 inside the convolutions only: the features and the decoded images are float32.
    assert policy.critic_encoder.forward_conv(obs).dtype == th.float32
    assert policy.decoder(policy.critic_encoder(obs)).dtype == th.float32
    for model in (default, mixed):
        th.manual_seed(7)
        np.random.seed(7)
        model.train(gradient_steps=3, batch_size=BATCH_SIZE)
    default_state, mixed_state = default.policy.state_dict(), mixed.policy.state_dict()
    differs = False
    for name, tensor in mixed_state.items():
        assert tensor.dtype == default_state[name].dtype, name
        assert th.allclose(tensor, default_state[name], atol=1e-2), name
        differs |= not th.equal(tensor, default_state[name])
    assert differs, "bfloat16 convolutions gave the float32 update bit for bit: autocast did not run"
    for optimizer in optimizers(mixed).values():
        for state in optimizer.state.values():
            assert all(value.dtype == th.float32 for key, value in state.items() if key != "step")
    mixed.save(tmp_path / "mixed.zip")
    assert GAARASAC.load(tmp_path / "mixed.zip", env=make_env(), device="cpu").policy.critic_encoder.conv_dtype == th.bfloat16


# --------------------------------------------------------------------------------------------------
# EMA targets
# --------------------------------------------------------------------------------------------------


def test_target_critic_moves_by_tau_and_target_encoder_by_encoder_tau(filled_model):
    tau, encoder_tau = 0.3, 0.6
    # Step 1 with target_update_interval=1: critic update then EMA; the actor and auxiliary losses wait,
    # so the online critic after train() is the one the EMA read.
    model = filled_model(
        tau=tau, encoder_tau=encoder_tau, target_update_interval=1, actor_update_freq=2, decoder_update_freq=2
    )
    model._n_updates = 1
    generator = th.Generator().manual_seed(0)
    with th.no_grad():
        # Known, distinct target values (not a copy of the online critic), so both terms of the EMA count.
        for param in model.critic_target.parameters():
            param.copy_(th.randn(param.shape, generator=generator))
    old_target = {name: p.detach().clone() for name, p in model.critic_target.named_parameters()}
    old_online = {name: p.detach().clone() for name, p in model.critic.named_parameters()}
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    online = dict(model.critic.named_parameters())
    assert any(not th.equal(old_online[name], online[name]) for name in online), "the critic did not step"
    encoder_names = [name for name in old_target if name.startswith("features_extractor.")]
    q_names = [name for name in old_target if name.startswith("qf")]
    assert len(encoder_names) == 12 and len(q_names) == 12
    assert set(encoder_names) | set(q_names) == set(old_target)
    for name, target in model.critic_target.named_parameters():
        rate = encoder_tau if name in encoder_names else tau
        expected = (1 - rate) * old_target[name] + rate * online[name].detach()
        assert th.allclose(target.detach(), expected, atol=1e-6, rtol=0), name


def test_no_target_update_off_the_interval(filled_model):
    model = filled_model(target_update_interval=3, actor_update_freq=1, decoder_update_freq=1)
    model._n_updates = 1
    before = snapshot(model)
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)  # steps 1 and 2
    assert_still(before, snapshot(model), TARGET)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)  # step 3
    assert_moved(before, snapshot(model), TARGET)


# --------------------------------------------------------------------------------------------------
# Cadence
# --------------------------------------------------------------------------------------------------


def test_update_cadence_follows_the_global_update_counter(filled_model, monkeypatch):
    model = filled_model(actor_update_freq=3, target_update_interval=2, decoder_update_freq=2)
    calls: dict[str, list[int]] = {"actor": [], "ent_coef": [], "polyak": [], "reconstruction": [], "comparison": []}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name].append(model._n_updates)
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(model.actor.optimizer, "step", counting("actor", model.actor.optimizer.step))
    monkeypatch.setattr(model.ent_coef_optimizer, "step", counting("ent_coef", model.ent_coef_optimizer.step))
    monkeypatch.setattr(gaara_sac_module, "polyak_update", counting("polyak", gaara_sac_module.polyak_update))
    for name, auxiliary in model.auxiliary_losses.items():
        monkeypatch.setattr(auxiliary, "forward", counting(name, auxiliary.forward))

    model.train(gradient_steps=7, batch_size=BATCH_SIZE)  # updates 0 .. 6
    model.train(gradient_steps=3, batch_size=BATCH_SIZE)  # updates 7 .. 9: the phase carries over
    assert model._n_updates == 10
    assert calls["actor"] == [0, 3, 6, 9]
    assert calls["ent_coef"] == [0, 3, 6, 9]
    # Two polyak calls per target update: the Q heads (tau) and the encoder (encoder_tau).
    assert calls["polyak"] == [0, 0, 2, 2, 4, 4, 6, 6, 8, 8]
    assert calls["reconstruction"] == [0, 2, 4, 6, 8]
    assert calls["comparison"] == [0, 2, 4, 6, 8]
    assert model.logger.name_to_value["train/n_updates"] == 10


# --------------------------------------------------------------------------------------------------
# Annealing
# --------------------------------------------------------------------------------------------------


def test_comparison_weight_anneals_once_per_comparison_step_down_to_its_floor(filled_model):
    model = filled_model(comparison_lambda=1.0, comparison_lambda_decay=0.1, comparison_lambda_min=0.75)
    logged = model.logger.name_to_value
    for n_steps in range(1, 6):
        weight_used = model.comparison_lambda
        model.train(gradient_steps=1, batch_size=BATCH_SIZE)
        expected = max(0.75, 1.0 - n_steps * 0.1)
        assert model.comparison_lambda == pytest.approx(expected, abs=1e-12)
        assert logged["train/comparison_lambda"] == model.comparison_lambda
        # The step used the weight from before its own annealing: comparison = c * InfoNCE.
        assert logged["train/comparison_loss"] == pytest.approx(weight_used * logged["train/contrastive_loss"], rel=1e-5)
    assert model.comparison_lambda == 0.75


def test_annealing_counts_comparison_steps_not_gradient_steps(filled_model):
    model = filled_model(comparison_lambda=1.0, comparison_lambda_decay=0.05, comparison_lambda_min=0.5, decoder_update_freq=2)
    model.train(gradient_steps=6, batch_size=BATCH_SIZE)  # comparison steps at updates 0, 2, 4
    assert model.comparison_lambda == pytest.approx(1.0 - 3 * 0.05, abs=1e-12)


def test_fixed_comparison_weight(filled_model):
    model = filled_model(comparison_lambda=0.7, comparison_lambda_decay=0.0, comparison_lambda_min=0.5)
    model.train(gradient_steps=3, batch_size=BATCH_SIZE)
    assert model.comparison_lambda == 0.7


@pytest.mark.parametrize("variant", ["joint", "decoder_discriminator"])
def test_other_comparison_variants_anneal_too(filled_model, variant):
    model = filled_model(variant=variant, comparison_lambda_decay=0.1, comparison_lambda_min=0.5)
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)
    assert model.comparison_lambda == pytest.approx(0.8, abs=1e-12)


# --------------------------------------------------------------------------------------------------
# Variants
# --------------------------------------------------------------------------------------------------

VARIANT_EXPECTATIONS = {
    # variant: (auxiliary losses in order, logged auxiliary metrics, decoder?, W?, anchor crop)
    "gaara": (
        ["reconstruction", "comparison"],
        {"reconstruction_loss", "comparison_loss", "contrastive_loss"},
        True,
        True,
        "center",
    ),
    "sac_ae": (["reconstruction"], {"reconstruction_loss"}, True, False, "center"),
    "pixel_sac": ([], set(), False, False, "center"),
    "contrastive": (["comparison"], {"comparison_loss", "contrastive_loss"}, False, True, "center"),
    "joint": (["joint"], {"reconstruction_loss", "comparison_loss", "contrastive_loss"}, True, True, "center"),
    "random_anchor": (
        ["reconstruction", "comparison"],
        {"reconstruction_loss", "comparison_loss", "contrastive_loss"},
        True,
        True,
        "random",
    ),
    "decoder_discriminator": (
        ["reconstruction", "decoder_discriminator"],
        {"reconstruction_loss", "comparison_loss", "decoder_distance"},
        True,
        False,
        "center",
    ),
}


def test_every_variant_is_covered():
    assert set(VARIANT_EXPECTATIONS) == set(VARIANTS)


@pytest.mark.parametrize("variant", sorted(VARIANT_EXPECTATIONS))
def test_learn_each_variant(make_model, variant):
    losses, metrics, has_decoder, has_comparison, anchor_crop = VARIANT_EXPECTATIONS[variant]
    model = make_model(variant=variant)
    assert list(model.auxiliary_losses) == losses
    assert (model.policy.decoder is not None) == has_decoder
    assert (model.policy.comparison is not None) == has_comparison
    assert model.replay_buffer_kwargs["anchor_crop"] == anchor_crop

    before = snapshot(model)
    model.learn(total_timesteps=LEARNING_STARTS + 6)
    after = snapshot(model)
    # SB3 trains once num_timesteps exceeds learning_starts: timesteps 11 .. 16.
    assert model._n_updates == 6
    history = model.logger.history
    assert {key.removeprefix("train/") for key in history} & AUXILIARY_METRICS == metrics
    for key in ("critic_loss", "actor_loss", "ent_coef", "ent_coef_loss", *metrics):
        assert all(np.isfinite(v) for v in history[f"train/{key}"]), key
    # The comparison weight is logged where a loss is weighted by it.
    assert ("train/comparison_lambda" in history) == VARIANTS[variant].anneals
    assert_moved(before, after, CONVS)
    assert_moved(before, after, TARGET)
    if has_decoder:
        assert_moved(before, after, DECODER)
    if has_comparison:
        assert_moved(before, after, COMPARISON)

    samples = model.replay_buffer.sample(64)
    assert samples.observations.shape == (64, 6, IMAGE_SIZE, IMAGE_SIZE)
    if variant in ("sac_ae", "pixel_sac"):  # no loss of theirs reads the contrastive views: the buffer draws none
        assert samples.obs_anchor is None and samples.obs_pos is None
        return
    assert samples.obs_anchor is not None and samples.obs_pos is not None
    assert samples.obs_anchor.shape == samples.obs_pos.shape == samples.observations.shape
    anchor_is_center = th.equal(samples.obs_anchor, samples.observations)
    assert anchor_is_center == (anchor_crop == "center")


def test_sac_ae_keeps_a_zero_comparison_weight(filled_model):
    model = filled_model(SACAE)
    model.train(gradient_steps=2, batch_size=BATCH_SIZE)
    assert model.comparison_lambda == 0.0
    assert "train/comparison_lambda" not in model.logger.history  # no loss is weighted by it


def test_subclass_defaults(make_model):
    sac_ae, curl = make_model(SACAE), make_model(CURLSAC)
    assert sac_ae.variant == "sac_ae" and curl.variant == "contrastive"
    assert sac_ae.comparison_lambda == 0.0 and curl.comparison_lambda == 1.0
    assert sac_ae.policy.decoder is not None and sac_ae.policy.comparison is None
    assert curl.policy.decoder is None and curl.policy.comparison is not None
    assert list(sac_ae.auxiliary_losses) == ["reconstruction"]
    assert list(curl.auxiliary_losses) == ["comparison"]
    # The variant stays a parameter: a subclass can still be told another one.
    assert make_model(SACAE, variant="gaara").variant == "gaara"


def test_paper_defaults(make_env):
    env = make_env(observation_space=spaces.Box(0, 255, (9, 100, 100), dtype=np.uint8))
    model = GAARASAC("CnnPolicy", env, buffer_size=10, device="cpu")
    assert (model.image_size, model.batch_size, model.learning_starts, model.gamma) == (84, 128, 1000, 0.99)
    assert (model.tau, model.encoder_tau) == (0.01, 0.05)
    assert (model.actor_update_freq, model.target_update_interval, model.decoder_update_freq) == (2, 2, 1)
    assert (model.decoder_latent_lambda, model.decoder_weight_lambda) == (1e-6, 1e-7)
    assert (model.comparison_lambda, model.comparison_lambda_min, model.comparison_lambda_decay) == (1.0, 0.5, 1e-6)
    assert model.variant == "gaara" and list(model.auxiliary_losses) == ["reconstruction", "comparison"]
    assert model.log_ent_coef.exp().item() == pytest.approx(0.1)
    assert model.target_entropy == -2.0
    for optimizer in (model.actor.optimizer, model.critic.optimizer):
        assert optimizer.param_groups[0]["lr"] == 1e-3 and optimizer.param_groups[0]["betas"][0] == 0.9
    temperature = model.ent_coef_optimizer.param_groups[0]
    assert temperature["lr"] == 1e-4 and temperature["betas"][0] == 0.5
    encoder_group, decoder_group = model.auxiliary_losses["reconstruction"].optimizer.param_groups
    assert (encoder_group["lr"], encoder_group["weight_decay"]) == (1e-3, 0)
    assert (decoder_group["lr"], decoder_group["weight_decay"]) == (1e-3, 1e-7)
    encoder = model.policy.critic_encoder
    assert (encoder.features_dim, encoder.num_filters, encoder.num_layers, encoder.conv_output_size) == (50, 32, 4, 35)
    assert model.actor.latent_pi[0].out_features == 1024 and model.critic.qf0[0].out_features == 1024
    assert (model.actor.log_std_min, model.actor.log_std_max) == (-10.0, 2.0)
    assert model.policy.decoder(th.zeros(1, 50)).shape == (1, 9, 84, 84)
    assert model.policy.comparison.W.shape == (50, 50)


# --------------------------------------------------------------------------------------------------
# Acting
# --------------------------------------------------------------------------------------------------


def test_predict_on_full_size_observations_is_the_actor_on_the_center_crop(make_model):
    model = make_model()
    # The constants above describe conftest's tiny model.
    assert (model.observation_space.shape, model.image_size) == (OBS_SHAPE, IMAGE_SIZE)
    assert (model.batch_size, model.learning_starts) == (BATCH_SIZE, LEARNING_STARTS)
    obs = np.random.default_rng(0).integers(0, 256, (3, *OBS_SHAPE), dtype=np.uint8)
    actions, _ = model.predict(obs, deterministic=True)
    with th.no_grad():
        on_center = model.actor(center_crop(th.as_tensor(obs), IMAGE_SIZE), deterministic=True).numpy()
        on_corner = model.actor(th.as_tensor(obs[..., :IMAGE_SIZE, :IMAGE_SIZE]), deterministic=True).numpy()
    assert actions.shape == (3, 2)
    np.testing.assert_allclose(actions, on_center, rtol=0, atol=1e-6)
    assert not np.allclose(actions, on_corner, atol=1e-4)
    # One unbatched observation as well.
    single, _ = model.predict(obs[1], deterministic=True)
    np.testing.assert_allclose(single, on_center[1], rtol=0, atol=1e-6)


def test_channel_last_images_are_transposed_and_learn(make_model, make_env):
    # SB3 wraps channel-last image envs in VecTransposeImage; the crops then see (C, H, W) as usual.
    model = make_model(env=make_env(observation_space=spaces.Box(0, 255, (20, 20, 6), dtype=np.uint8)))
    assert model.observation_space.shape == OBS_SHAPE
    assert model.policy.critic_encoder.in_channels == 6
    model.learn(total_timesteps=LEARNING_STARTS + 2)
    assert model._n_updates == 2


# --------------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------------


def optimizers(model: GAARASAC) -> dict[str, th.optim.Optimizer]:
    found = {"actor": model.actor.optimizer, "critic": model.critic.optimizer, "ent_coef": model.ent_coef_optimizer}
    found.update({f"auxiliary.{name}": callback.optimizer for name, callback in model.auxiliary_losses.items()})
    return found


@pytest.mark.parametrize(("cls", "variant"), [(GAARASAC, "gaara"), (SACAE, None), (CURLSAC, None), (GAARASAC, "joint")])
def test_save_load_restores_every_learned_tensor(make_model, make_env, tmp_path, cls, variant):
    kwargs = {"comparison_lambda_decay": 0.01} if variant is not None else {}
    if variant is not None:
        kwargs["variant"] = variant
    model = make_model(cls, **kwargs)
    model.learn(total_timesteps=LEARNING_STARTS + 5)
    assert model._n_updates == 5
    if variant is not None:
        assert model.comparison_lambda == pytest.approx(1.0 - 5 * 0.01, abs=1e-12)
    path = tmp_path / "model.zip"
    model.save(path)

    loaded = cls.load(path, env=make_env(), device="cpu")
    assert type(loaded) is cls
    assert loaded.variant == model.variant
    assert loaded.comparison_lambda == model.comparison_lambda
    assert loaded._n_updates == 5
    assert loaded.num_timesteps == model.num_timesteps

    state, loaded_state = model.policy.state_dict(), loaded.policy.state_dict()
    assert set(state) == set(loaded_state)
    assert any(name.startswith("decoder.") for name in state) == (model.policy.decoder is not None)
    assert ("comparison.W" in state) == (model.policy.comparison is not None)
    for name in state:
        assert th.equal(state[name], loaded_state[name]), name
    assert th.equal(model.log_ent_coef, loaded.log_ent_coef)

    original_optimizers, loaded_optimizers = optimizers(model), optimizers(loaded)
    assert set(original_optimizers) == set(loaded_optimizers)
    for name, optimizer in original_optimizers.items():
        assert optimizer.state, f"{name} has not stepped"
        assert_same(optimizer.state_dict(), loaded_optimizers[name].state_dict(), name)

    # The rebuilt model is wired like the original: tied convolutions, optimizers over its own tensors.
    assert loaded.actor.features_extractor.convs is loaded.policy.critic_encoder.convs
    loaded_params = {id(p) for p in loaded.policy.parameters()} | {id(loaded.log_ent_coef)}
    for name, optimizer in loaded_optimizers.items():
        assert all(id(p) in loaded_params for group in optimizer.param_groups for p in group["params"]), name

    obs = np.random.default_rng(1).integers(0, 256, (4, *OBS_SHAPE), dtype=np.uint8)
    expected = model.predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    # Without an env (deployment), the saved spaces suffice to act.
    np.testing.assert_array_equal(cls.load(path, device="cpu").predict(obs, deterministic=True)[0], expected)


def test_training_resumes_identically_after_load(make_model, make_env, tmp_path):
    model = make_model(comparison_lambda_decay=0.01)
    model.learn(total_timesteps=LEARNING_STARTS + 3)  # 3 updates: the next one (#3) skips the actor and targets
    model.save(tmp_path / "model.zip")
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    loaded = GAARASAC.load(tmp_path / "model.zip", env=make_env(), device="cpu")
    loaded.load_replay_buffer(tmp_path / "buffer.pkl")
    loaded.set_logger(type(model.logger)())

    for agent in (model, loaded):
        th.manual_seed(123)
        np.random.seed(123)
        agent.train(gradient_steps=4, batch_size=BATCH_SIZE)
    assert loaded._n_updates == model._n_updates == 7
    assert loaded.comparison_lambda == model.comparison_lambda
    state, loaded_state = model.policy.state_dict(), loaded.policy.state_dict()
    for name in state:
        assert th.equal(state[name], loaded_state[name]), name
    for name, optimizer in optimizers(model).items():
        assert_same(optimizer.state_dict(), optimizers(loaded)[name].state_dict(), name)

"""DrQv2 and the AD(a, d) variants: n-step replay, noise schedule, gradient routing, shapes, save/load and errors."""

from __future__ import annotations

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import FakeImageEnv, RecordingLogger, assert_same
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.vec_env import DummyVecEnv

import sb3_gaara  # noqa: F401  (registers PixelReach-v0)
import sb3_gaara.drq.drqv2 as drqv2_module
from sb3_gaara.common.buffers import AugmentedPixelReplayBuffer
from sb3_gaara.drq.drqv2 import AD_VARIANTS, DrQv2, DrQv2Encoder, DrQv2Policy, linear_stddev, noisy_action
from sb3_gaara.drq.nstep_buffer import NStepPixelReplayBuffer

# The tiny models see the fake env's whole 6 x 20 x 20 frames (2 stacked RGB frames), as DrQ-v2 sees its 84 px
# renders uncropped, and train on batches of 8 after 10 random steps.
OBS_SHAPE = (6, 20, 20)
IMAGE_SIZE = 20
BATCH_SIZE = 8
LEARNING_STARTS = 10
ACTION_SPACE = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

#: the four AD(a, d) variants: (augmentation, reconstruction)
AD_PAIRS = [(None, False), (None, True), ("shift", False), ("shift", True)]
AD_IDS = ["AD(0,0)", "AD(0,1)", "AD(1,0)", "AD(1,1)"]

# Groups of the policy's state dict. The actor's and the target's `features_extractor.convs` are the critic's (tied).
CONVS = ("critic.features_extractor.convs.",)
CRITIC_TRUNK = ("critic.features_extractor.fc.", "critic.features_extractor.layer_norm.")
Q_HEADS = ("critic.qf",)
ACTOR_TRUNK = ("actor.features_extractor.fc.", "actor.features_extractor.layer_norm.")
ACTOR_HEAD = ("actor.mu.",)
TARGET = ("critic_target.features_extractor.fc.", "critic_target.features_extractor.layer_norm.", "critic_target.qf")
DECODER = ("decoder.",)


def tiny_kwargs(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        image_size=IMAGE_SIZE,
        batch_size=BATCH_SIZE,
        learning_starts=LEARNING_STARTS,
        buffer_size=200,
        policy_kwargs=dict(net_arch=[32, 32]),
        seed=0,
        device="cpu",
    )
    kwargs.update(overrides)
    return kwargs


def make_model(env: gym.Env | None = None, **overrides: Any) -> DrQv2:
    model = DrQv2("CnnPolicy", env if env is not None else FakeImageEnv(episode_length=7), **tiny_kwargs(**overrides))
    model.set_logger(RecordingLogger())
    return model


def filled_model(**overrides: Any) -> DrQv2:
    """A tiny model whose buffer holds ``LEARNING_STARTS`` transitions and that has not trained yet."""
    model = make_model(**overrides)
    model.learn(total_timesteps=LEARNING_STARTS)
    assert model._n_updates == 0 and model.replay_buffer.size() == LEARNING_STARTS
    return model


def snapshot(model: DrQv2) -> dict[str, th.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.policy.state_dict().items()}


def changes(before: dict[str, th.Tensor], after: dict[str, th.Tensor], prefixes: tuple[str, ...]) -> dict[str, bool]:
    selected = {name: not th.equal(before[name], after[name]) for name in before if name.startswith(prefixes)}
    assert selected, f"no tensor starts with {prefixes}"
    return selected


def assert_moved(before: dict[str, th.Tensor], after: dict[str, th.Tensor], prefixes: tuple[str, ...]) -> None:
    moved = changes(before, after, prefixes)
    assert all(moved.values()), f"{sorted(n for n, c in moved.items() if not c)} did not move"


def assert_still(before: dict[str, th.Tensor], after: dict[str, th.Tensor], prefixes: tuple[str, ...]) -> None:
    moved = changes(before, after, prefixes)
    assert not any(moved.values()), f"{sorted(n for n, c in moved.items() if c)} moved"


def no_step(*args: Any, **kwargs: Any) -> None:
    return None


def reseed(seed: int) -> None:
    th.manual_seed(seed)
    np.random.seed(seed)


def optimizers(model: DrQv2) -> dict[str, th.optim.Optimizer]:
    found = {"actor": model.actor.optimizer, "critic": model.critic.optimizer}
    if model.reconstruction_optimizer is not None:
        found["reconstruction"] = model.reconstruction_optimizer
    return found


def training_state(model: DrQv2) -> dict[str, Any]:
    """Everything a continued run depends on: tensors, optimizer moments and counters."""
    return copy.deepcopy(
        {
            "policy": model.policy.state_dict(),
            "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers(model).items()},
            "_n_updates": model._n_updates,
            "num_timesteps": model.num_timesteps,
        }
    )


# --------------------------------------------------------------------------------------------------
# N-step replay
# --------------------------------------------------------------------------------------------------


def nstep_buffer(buffer_size: int, n_steps: int = 3, gamma: float = 0.5, n_envs: int = 1) -> NStepPixelReplayBuffer:
    space = spaces.Box(0, 255, (3, 4, 4), dtype=np.uint8)
    return NStepPixelReplayBuffer(
        buffer_size, space, ACTION_SPACE, device="cpu", n_envs=n_envs, image_size=4, n_steps=n_steps, gamma=gamma
    )


def add(buffer: NStepPixelReplayBuffer, t: int, reward: float, terminated: bool = False, truncated: bool = False) -> None:
    """Transition ``t``: observation filled with ``t``, next observation with ``100 + t``, action ``(t, -t) / 100``."""
    obs = np.full((1, 3, 4, 4), t, dtype=np.uint8)
    next_obs = np.full((1, 3, 4, 4), 100 + t, dtype=np.uint8)
    action = np.array([[t / 100, -t / 100]], dtype=np.float32)
    infos = [{"TimeLimit.truncated": True} if truncated else {}]
    buffer.add(obs, next_obs, action, np.array([reward]), np.array([terminated or truncated]), infos)


def sample_rows(buffer: NStepPixelReplayBuffer, rows: list[int]) -> dict[str, np.ndarray]:
    samples = buffer.crop(buffer._get_samples(np.array(rows)))
    assert samples.discounts is not None
    return {
        "obs": samples.observations[:, 0, 0, 0].numpy(),
        "next_obs": samples.next_observations[:, 0, 0, 0].numpy(),
        "rewards": samples.rewards[:, 0].numpy(),
        "dones": samples.dones[:, 0].numpy(),
        "discounts": samples.discounts[:, 0].numpy(),
    }


def test_nstep_returns_stop_at_termination_truncation_and_the_newest_transition():
    # gamma = 1/2, n = 3. Episode A: t0..t3, terminated at t3. Episode B: t4..t6, truncated at t6 (time limit).
    # t7 starts episode C and is the newest transition: the next add() may continue it, so sums stop there.
    buffer = nstep_buffer(buffer_size=10)
    for t, reward in enumerate([1.0, 2.0, 3.0, 4.0]):
        add(buffer, t, reward, terminated=t == 3)
    for t, reward in zip([4, 5, 6], [10.0, 20.0, 30.0], strict=True):
        add(buffer, t, reward, truncated=t == 6)
    add(buffer, 7, 100.0)

    got = sample_rows(buffer, list(range(8)))
    np.testing.assert_array_equal(got["obs"], np.arange(8))
    # R_t = sum_{j<k} r_{t+j} / 2^j, bootstrapped from the next observation of t + k - 1 with gamma^k.
    expected_rewards = [
        1 + 2 / 2 + 3 / 4,  # t0: a full 3-step sum
        2 + 3 / 2 + 4 / 4,  # t1: ends on the termination, inclusive
        3 + 4 / 2,  # t2: cut by the termination after 2 steps
        4,  # t3: the terminal transition alone
        10 + 20 / 2 + 30 / 4,  # t4: ends on the truncation
        20 + 30 / 2,  # t5
        30,  # t6
        100,  # t7: the newest transition
    ]
    np.testing.assert_allclose(got["rewards"], expected_rewards, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["discounts"], np.array([0.125, 0.125, 0.25, 0.5, 0.125, 0.25, 0.5, 0.5], np.float32))
    np.testing.assert_array_equal(got["next_obs"], [102, 103, 103, 103, 106, 106, 106, 107])
    # Only a termination stops the bootstrap; a truncation bootstraps from its terminal observation.
    np.testing.assert_array_equal(got["dones"], [0, 1, 1, 1, 0, 0, 0, 0])


def test_nstep_returns_wrap_around_the_full_ring_and_stop_at_the_newest():
    # 5 slots, 7 transitions without episode ends: rows hold t5, t6, t2, t3, t4; t6 (row 1) is the newest.
    buffer = nstep_buffer(buffer_size=5)
    for t in range(7):
        add(buffer, t, float(t))
    assert buffer.full and buffer.pos == 2
    got = sample_rows(buffer, [2, 4, 0, 1])
    np.testing.assert_array_equal(got["obs"], [2, 4, 5, 6])
    np.testing.assert_allclose(got["rewards"], [2 + 3 / 2 + 4 / 4, 4 + 5 / 2 + 6 / 4, 5 + 6 / 2, 6], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got["discounts"], np.array([0.125, 0.125, 0.25, 0.5], np.float32))
    np.testing.assert_array_equal(got["next_obs"], [104, 106, 106, 106])
    np.testing.assert_array_equal(got["dones"], [0, 0, 0, 0])


@pytest.mark.parametrize("n_steps", [1, 3, 5])
def test_nstep_samples_equal_sb3_nstep_replay_buffer(n_steps):
    # Random episodes ending terminated or truncated, two envs, a ring overwritten twice: every field equals SB3's.
    rng = np.random.default_rng(n_steps)
    space = spaces.Box(0, 255, (3, 4, 4), dtype=np.uint8)
    kwargs: dict[str, Any] = dict(device="cpu", n_envs=2, n_steps=n_steps, gamma=0.9)
    ours = NStepPixelReplayBuffer(30, space, ACTION_SPACE, image_size=4, **kwargs)
    sb3 = NStepReplayBuffer(30, space, ACTION_SPACE, **kwargs)
    obs = rng.integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
    for _ in range(75):
        next_obs = rng.integers(0, 256, (2, 3, 4, 4), dtype=np.uint8)
        action = rng.uniform(-1, 1, (2, 2)).astype(np.float32)
        reward = rng.normal(size=2).astype(np.float32)
        ended = rng.random(2) < 0.2
        truncated = ended & (rng.random(2) < 0.5)
        infos = [{"TimeLimit.truncated": bool(value)} for value in truncated]
        for buffer in (ours, sb3):
            buffer.add(obs, next_obs, action, reward, ended, infos)
        obs = np.where(ended[:, None, None, None], rng.integers(0, 256, (2, 3, 4, 4), dtype=np.uint8), next_obs)
    for seed in range(3):
        np.random.seed(seed)
        expected = sb3.sample(64)
        np.random.seed(seed)
        got = ours.sample(64)
        for field in ("observations", "actions", "next_observations", "dones", "rewards", "discounts"):
            assert th.equal(getattr(got, field), getattr(expected, field)), field
        assert bool((expected.discounts > 0.9**n_steps + 1e-6).any()) == (n_steps > 1)  # some sums were cut short


def test_nstep_buffer_rejects_bad_settings():
    space = spaces.Box(0, 255, (3, 4, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"n_steps must be a positive integer.*got 0"):
        NStepPixelReplayBuffer(10, space, ACTION_SPACE, image_size=4, n_steps=0)
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\], got 1.5"):
        NStepPixelReplayBuffer(10, space, ACTION_SPACE, image_size=4, gamma=1.5)
    with pytest.raises(ValueError, match="does not support optimize_memory_usage=True"):
        NStepPixelReplayBuffer(
            10, space, ACTION_SPACE, image_size=4, optimize_memory_usage=True, handle_timeout_termination=False
        )


def test_model_samples_nstep_returns_with_its_gamma():
    model = filled_model(n_steps=4, gamma=0.8)
    buffer = model.replay_buffer
    assert isinstance(buffer, NStepPixelReplayBuffer) and isinstance(buffer, AugmentedPixelReplayBuffer)
    assert (buffer.n_steps, buffer.gamma, buffer.image_size) == (4, 0.8, IMAGE_SIZE)
    samples = buffer.sample(16)
    assert samples.discounts is not None
    # Episodes of 7 steps: most sums run the full 4 steps, some are cut by the episode's end.
    assert {round(float(d), 6) for d in samples.discounts[:, 0]} <= {round(0.8**k, 6) for k in range(1, 5)}


# --------------------------------------------------------------------------------------------------
# Noise schedule
# --------------------------------------------------------------------------------------------------


class RepeatedEnv(FakeImageEnv):
    """The fake env, declaring an action repeat of 4 (as the dmc-* envs and PixelReach do)."""

    action_repeat = 4


def test_linear_stddev_values():
    assert linear_stddev(0, 1.0, 0.1, 500_000) == 1.0
    assert linear_stddev(250_000, 1.0, 0.1, 500_000) == pytest.approx(0.55, abs=1e-12)
    assert linear_stddev(400_000, 1.0, 0.1, 500_000) == pytest.approx(0.28, abs=1e-12)
    assert linear_stddev(500_000, 1.0, 0.1, 500_000) == 0.1
    assert linear_stddev(2_000_000, 1.0, 0.1, 500_000) == 0.1  # constant after the decay


def test_noise_schedule_counts_environment_steps_after_action_repeat():
    model = make_model(RepeatedEnv(), stddev_start=1.0, stddev_end=0.2, stddev_schedule_steps=10_000)
    assert model.action_repeat == 4
    # agent steps -> environment steps (x 4) -> stddev = (1 - m) 1.0 + m 0.2, m = min(env steps / 10k, 1)
    expected = {0: 1.0, 500: 0.84, 1000: 0.68, 2000: 0.36, 2500: 0.2, 10_000: 0.2}
    for agent_steps, stddev in expected.items():
        assert model.exploration_stddev(agent_steps) == pytest.approx(stddev, abs=1e-12), agent_steps
    # Without an action repeat the same agent steps are 4 times fewer environment steps.
    plain = make_model(stddev_start=1.0, stddev_end=0.2, stddev_schedule_steps=10_000)
    assert plain.action_repeat == 1
    assert plain.exploration_stddev(1000) == pytest.approx(0.92, abs=1e-12)
    # action_repeat given explicitly wins over the env's.
    assert make_model(RepeatedEnv(), action_repeat=2).action_repeat == 2


def test_train_uses_the_scheduled_stddev_and_logs_it():
    model = filled_model(action_repeat=4, stddev_start=1.0, stddev_end=0.2, stddev_schedule_steps=10_000)
    model.num_timesteps = 1000
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    assert model.logger.history["train/stddev"] == [pytest.approx(0.68, abs=1e-12)]  # 4000 env steps of 10k
    # DrQv2 stands on OffPolicyAlgorithm: no TD3 settings that it would not use
    assert not hasattr(model, "target_policy_noise") and not hasattr(model, "policy_delay")


def test_exploration_adds_unclipped_scheduled_noise_to_mu():
    model = filled_model(action_repeat=2, stddev_start=1.0, stddev_end=0.0, stddev_schedule_steps=1000)
    model.num_timesteps = 250  # 500 environment steps: stddev 0.5
    obs = model._last_obs
    mu, _ = model.predict(obs, deterministic=True)
    np.random.seed(3)
    action, buffer_action = model._sample_action(LEARNING_STARTS)
    np.random.seed(3)
    expected = np.clip(model.policy.scale_action(mu) + np.random.normal(0.0, 0.5, size=mu.shape), -1, 1)
    np.testing.assert_array_equal(buffer_action, expected)
    np.testing.assert_array_equal(action, model.policy.unscale_action(expected))
    # Before learning_starts, SB3's uniform random actions.
    model.num_timesteps = 0
    np.random.seed(3)
    random_action, _ = model._sample_action(LEARNING_STARTS)
    assert not np.allclose(random_action, expected)


def test_noisy_action_clips_the_noise_then_the_action_with_a_straight_through_gradient():
    th.manual_seed(0)
    mu = th.tensor([[0.0, 0.95, -0.99, 0.5]] * 2000, requires_grad=True)
    action = noisy_action(mu, stddev=1.0, clip=0.3)
    noise = action.detach() - mu.detach()
    assert float(action.detach().max()) <= 1.0 and float(action.detach().min()) >= -1.0
    assert float(noise[:, 0].abs().max()) == pytest.approx(0.3)  # the noise itself is clipped at 0.3
    assert bool((action[:, 1] == 1.0).any())  # mu + noise past the bound is clamped ...
    action.sum().backward()
    assert th.equal(mu.grad, th.ones_like(mu))  # ... and the gradient passes straight through the clamp
    with th.no_grad():
        assert th.equal(noisy_action(mu.detach(), stddev=0.0, clip=0.3), mu.detach())


# --------------------------------------------------------------------------------------------------
# Networks, shapes and defaults
# --------------------------------------------------------------------------------------------------


def test_defaults_are_drqv2s_published_settings():
    env = FakeImageEnv(observation_space=spaces.Box(0, 255, (9, 84, 84), dtype=np.uint8))
    model = DrQv2("CnnPolicy", env, device="cpu")
    settings = {
        "learning_rate": 1e-4,
        "batch_size": 256,
        "tau": 0.01,
        "gamma": 0.99,
        "n_steps": 3,
        "learning_starts": 2000,
        "gradient_steps": 1,
        "stddev_start": 1.0,
        "stddev_end": 0.1,
        "stddev_schedule_steps": 1_000_000,  # linear(1.0, 0.1, 500000) agent steps at action repeat 2
        "stddev_clip": 0.3,
        "augmentation": "shift",
        "augmentation_pad": 4,
        "image_size": 84,
        "reconstruction": False,
    }
    assert {name: getattr(model, name) for name in settings} == settings
    assert model.train_freq.frequency == 2 and model.train_freq.unit.value == "step"
    policy = model.policy
    encoder = policy.critic_encoder
    assert isinstance(encoder, DrQv2Encoder) and encoder.features_dim == 50
    convs = [layer for layer in encoder.convs if isinstance(layer, th.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (3, 3), (2, 2))] + [(32, (3, 3), (1, 1))] * 3
    assert encoder.fc.in_features == 32 * 35 * 35
    assert [layer.out_features for layer in policy.critic.qf0 if isinstance(layer, th.nn.Linear)] == [1024, 1024, 1]
    assert [layer.out_features for layer in policy.actor.mu if isinstance(layer, th.nn.Linear)] == [1024, 1024, 2]
    assert isinstance(policy.actor.mu[-1], th.nn.Tanh)
    assert policy.decoder is None and model.reconstruction_optimizer is None
    assert all(group["lr"] == 1e-4 for opt in (model.actor.optimizer, model.critic.optimizer) for group in opt.param_groups)


def test_networks_share_one_set_of_convolutions_that_only_the_critic_optimizer_holds():
    model = make_model(reconstruction=True)
    policy = model.policy
    convs = policy.critic_encoder.convs
    assert policy.actor_encoder.convs is convs and policy.target_encoder.convs is convs
    assert policy.actor_encoder.fc is not policy.critic_encoder.fc is not policy.target_encoder.fc
    assert not hasattr(policy, "actor_target")
    conv_ids = {id(p) for p in convs.parameters()}
    held = {name: {id(p) for g in opt.param_groups for p in g["params"]} for name, opt in optimizers(model).items()}
    assert not conv_ids & held["actor"]
    assert conv_ids <= held["critic"] and conv_ids <= held["reconstruction"]
    assert held["actor"] == {id(p) for p in model.actor.parameters()} - conv_ids
    decoder_ids = {id(p) for p in policy.decoder.parameters()}
    assert held["reconstruction"] == {id(p) for p in policy.critic_encoder.parameters()} | decoder_ids
    groups = model.reconstruction_optimizer.param_groups
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(1e-3, 0), (1e-3, 1e-7)]


def test_shapes_of_samples_features_actions_and_reconstructions():
    model = filled_model(reconstruction=True)
    samples = model.replay_buffer.sample(BATCH_SIZE)
    assert samples.observations.shape == samples.next_observations.shape == (BATCH_SIZE, *OBS_SHAPE)
    assert samples.observations.dtype == th.uint8
    assert samples.actions.shape == (BATCH_SIZE, 2)
    assert samples.rewards.shape == samples.dones.shape == samples.discounts.shape == (BATCH_SIZE, 1)
    obs = model.augment(samples.observations)
    assert obs.shape == (BATCH_SIZE, *OBS_SHAPE) and obs.dtype == th.float32
    assert float(obs.min()) >= 0.0 and float(obs.max()) <= 1.0
    latent = model.policy.critic_encoder(obs)
    assert latent.shape == (BATCH_SIZE, 50)
    assert model.policy.decoder(latent).shape == (BATCH_SIZE, *OBS_SHAPE)
    assert model.actor(obs).shape == (BATCH_SIZE, 2)
    assert model.predict(np.zeros((3, *OBS_SHAPE), np.uint8), deterministic=True)[0].shape == (3, 2)


def test_encoder_centers_pixels_as_drqv2():
    model = make_model()
    encoder = model.policy.critic_encoder
    images = th.rand(2, *OBS_SHAPE)
    assert th.equal(encoder.forward_conv(images), encoder.convs(images - 0.5))


def test_augmentation_shifts_observations_and_next_observations_independently(monkeypatch):
    model = filled_model()
    calls: list[th.Tensor] = []
    original = drqv2_module.random_shift

    def recording_shift(images: th.Tensor, pad: int = 4) -> th.Tensor:
        assert pad == 4
        calls.append(images)
        return original(images, pad)

    monkeypatch.setattr(drqv2_module, "random_shift", recording_shift)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    assert len(calls) == 2 and calls[0].dtype == th.uint8
    images = th.arange(2 * 6 * 20 * 20, dtype=th.float32).reshape(2, 6, 20, 20) % 251
    th.manual_seed(0)
    assert not th.equal(model.augment(images.to(th.uint8)), images / 255)  # shifted
    unshifted = make_model(augmentation=None)
    assert th.equal(unshifted.augment(images.to(th.uint8)), images / 255)
    shifted_so_far = len(calls)
    unshifted.learn(LEARNING_STARTS + 2)
    assert unshifted._n_updates == 1 and len(calls) == shifted_so_far  # augmentation=None never shifts


def test_ad_variants_table_names_the_four_variants():
    assert {key: (v.augmentation, v.reconstruction, v.label) for key, v in AD_VARIANTS.items()} == {
        key: (*pair, label) for key, pair, label in zip(["ad00", "ad01", "ad10", "ad11"], AD_PAIRS, AD_IDS, strict=True)
    }
    model = make_model(**AD_VARIANTS["ad01"].kwargs)
    assert model.augmentation is None and model.reconstruction and model.policy.decoder is not None


# --------------------------------------------------------------------------------------------------
# Which parameters each loss moves (all four AD variants)
# --------------------------------------------------------------------------------------------------


def isolate(model: DrQv2, monkeypatch: pytest.MonkeyPatch, keep: str) -> None:
    """Switch off every optimizer step but ``keep``'s, and the EMA unless ``keep == "ema"``."""
    for name, optimizer in optimizers(model).items():
        if name != keep:
            monkeypatch.setattr(optimizer, "step", no_step)
    if keep != "ema":
        monkeypatch.setattr(drqv2_module, "polyak_update", no_step)


@pytest.mark.parametrize(("augmentation", "reconstruction"), AD_PAIRS, ids=AD_IDS)
def test_critic_loss_moves_the_convolutions_the_critic_trunk_and_q_heads_only(monkeypatch, augmentation, reconstruction):
    model = filled_model(augmentation=augmentation, reconstruction=reconstruction)
    isolate(model, monkeypatch, "critic")
    before = snapshot(model)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    after = snapshot(model)
    assert_moved(before, after, CONVS + CRITIC_TRUNK + Q_HEADS)
    assert_still(before, after, ACTOR_TRUNK + ACTOR_HEAD + TARGET)
    if reconstruction:
        assert_still(before, after, DECODER)


@pytest.mark.parametrize(("augmentation", "reconstruction"), AD_PAIRS, ids=AD_IDS)
def test_actor_loss_moves_the_actor_trunk_and_head_only(monkeypatch, augmentation, reconstruction):
    model = filled_model(augmentation=augmentation, reconstruction=reconstruction)
    isolate(model, monkeypatch, "actor")
    before = snapshot(model)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    after = snapshot(model)
    assert_moved(before, after, ACTOR_TRUNK + ACTOR_HEAD)
    assert_still(before, after, CONVS + CRITIC_TRUNK + Q_HEADS + TARGET)
    if reconstruction:
        assert_still(before, after, DECODER)


@pytest.mark.parametrize(("augmentation", "reconstruction"), AD_PAIRS, ids=AD_IDS)
def test_reconstruction_moves_the_encoder_and_decoder_only(monkeypatch, augmentation, reconstruction):
    model = filled_model(augmentation=augmentation, reconstruction=reconstruction)
    if not reconstruction:
        assert model.policy.decoder is None and model.reconstruction_optimizer is None
        assert not any(name.startswith(DECODER) for name in model.policy.state_dict())
        return
    isolate(model, monkeypatch, "reconstruction")
    before = snapshot(model)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    after = snapshot(model)
    assert_moved(before, after, CONVS + CRITIC_TRUNK + DECODER)
    assert_still(before, after, Q_HEADS + ACTOR_TRUNK + ACTOR_HEAD + TARGET)
    assert len(model.logger.history["train/reconstruction_loss"]) == 1


def test_actor_loss_sends_no_gradient_into_the_encoder_or_the_critic_trunk():
    model = filled_model(reconstruction=True)
    samples = model.replay_buffer.sample(BATCH_SIZE)
    conv_features = model.policy.critic_encoder.forward_conv(model.augment(samples.observations))
    model.actor_loss(conv_features.detach(), stddev=0.5).backward()
    assert all(p.grad is None for p in model.policy.critic_encoder.parameters())
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.actor.mu.parameters())


def test_reconstruction_target_is_the_unshifted_observation(monkeypatch):
    model = filled_model(reconstruction=True)
    seen: list[th.Tensor] = []
    original = drqv2_module.preprocess_reconstruction_target

    def recording_target(obs: th.Tensor, *args: Any, **kwargs: Any) -> th.Tensor:
        seen.append(obs)
        return original(obs, *args, **kwargs)

    monkeypatch.setattr(drqv2_module, "preprocess_reconstruction_target", recording_target)
    samples: list[Any] = []
    sample = model.replay_buffer.sample
    monkeypatch.setattr(model.replay_buffer, "sample", lambda *a, **k: samples.append(sample(*a, **k)) or samples[-1])
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    (target_images,) = seen
    assert th.equal(target_images, samples[0].observations)


@pytest.mark.parametrize(("augmentation", "reconstruction"), AD_PAIRS, ids=AD_IDS)
def test_target_critic_is_an_ema_of_the_critic_trunk_and_q_heads(monkeypatch, augmentation, reconstruction):
    model = filled_model(augmentation=augmentation, reconstruction=reconstruction, tau=0.25)
    if reconstruction:  # its step moves the critic's trunk after the EMA has read it
        monkeypatch.setattr(model.reconstruction_optimizer, "step", no_step)
    before = snapshot(model)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    after = snapshot(model)
    for name in before:
        if not name.startswith(TARGET):
            continue
        online = name.replace("critic_target.", "critic.", 1)
        if name.endswith("num_batches_tracked"):
            continue
        expected = before[name].clone().mul_(0.75).add_(after[online], alpha=0.25)
        assert th.equal(after[name], expected), name
    assert_moved(before, after, TARGET)
    # The target reads the online convolutions (tied), which moved with the critic.
    assert th.equal(
        after["critic_target.features_extractor.convs.0.weight"], after["critic.features_extractor.convs.0.weight"]
    )


def test_critic_target_is_the_nstep_clipped_double_q_value(monkeypatch):
    model = filled_model(stddev_start=0.0, stddev_end=0.0)  # no noise: the target action is mu(s')
    samples = model.replay_buffer.sample(BATCH_SIZE)
    policy = model.policy
    th.manual_seed(1)
    obs, next_obs = model.augment(samples.observations), model.augment(samples.next_observations)
    with th.no_grad():
        next_conv = policy.critic_encoder.forward_conv(next_obs)
        next_actions = model.actor.mu(policy.actor_encoder.forward_head(next_conv))
        q1, q2 = model.critic_target.q_from_features(policy.target_encoder.forward_head(next_conv), next_actions)
        target = samples.rewards + (1 - samples.dones) * samples.discounts * th.minimum(q1, q2)
        c1, c2 = model.critic.q_from_features(policy.critic_encoder(obs), samples.actions)
        expected = ((c1 - target) ** 2).mean() + ((c2 - target) ** 2).mean()
    th.manual_seed(1)
    obs, next_obs = model.augment(samples.observations), model.augment(samples.next_observations)
    loss = model.critic_loss(policy.critic_encoder.forward_conv(obs), next_obs, samples, stddev=0.0)
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)


def test_train_feeds_the_critic_the_sampled_batch_and_its_nstep_next_observations(monkeypatch):
    model = filled_model(augmentation=None)
    samples: list[Any] = []
    sample = model.replay_buffer.sample
    monkeypatch.setattr(model.replay_buffer, "sample", lambda *a, **k: samples.append(sample(*a, **k)) or samples[-1])
    seen: list[tuple[th.Tensor, th.Tensor, Any]] = []
    critic_loss = model.critic_loss

    def recording_critic_loss(conv_features: th.Tensor, next_obs: th.Tensor, replay_data: Any, stddev: float) -> th.Tensor:
        seen.append((conv_features.detach().clone(), next_obs, replay_data))
        return critic_loss(conv_features, next_obs, replay_data, stddev)

    monkeypatch.setattr(model, "critic_loss", recording_critic_loss)
    encoder = model.policy.critic_encoder
    before = copy.deepcopy(encoder)
    model.train(gradient_steps=1, batch_size=BATCH_SIZE)
    ((conv_features, next_obs, replay_data),) = seen
    assert replay_data is samples[0]
    assert th.equal(next_obs, samples[0].next_observations.float() / 255)
    with th.no_grad():
        assert th.equal(conv_features, before.forward_conv(samples[0].observations.float() / 255))


# --------------------------------------------------------------------------------------------------
# Save, load and exact resume
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("augmentation", "reconstruction"), AD_PAIRS, ids=AD_IDS)
def test_save_load_restores_every_tensor_and_optimizer(tmp_path, augmentation, reconstruction):
    model = make_model(augmentation=augmentation, reconstruction=reconstruction, action_repeat=2)
    model.learn(total_timesteps=LEARNING_STARTS + 6)
    assert model._n_updates == 3
    model.save(tmp_path / "model.zip")
    loaded = DrQv2.load(tmp_path / "model.zip", env=FakeImageEnv(episode_length=7), device="cpu")
    assert type(loaded.policy) is DrQv2Policy
    for name in ("augmentation", "reconstruction", "image_size", "action_repeat", "n_steps", "stddev_schedule_steps"):
        assert getattr(loaded, name) == getattr(model, name), name
    assert loaded.exploration_stddev() == model.exploration_stddev()
    assert_same(training_state(loaded), training_state(model), "loaded")
    for name, optimizer in optimizers(model).items():
        assert optimizer.state, f"{name} has not stepped"
    # Rebuilt with its wiring: one set of convolutions, optimizers over the loaded model's own tensors.
    policy = loaded.policy
    assert policy.actor_encoder.convs is policy.critic_encoder.convs is policy.target_encoder.convs
    loaded_ids = {id(p) for p in policy.parameters()}
    for name, optimizer in optimizers(loaded).items():
        assert all(id(p) in loaded_ids for g in optimizer.param_groups for p in g["params"]), name
    obs = np.random.default_rng(1).integers(0, 256, (4, *OBS_SHAPE), dtype=np.uint8)
    expected = model.predict(obs, deterministic=True)[0]
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], expected)
    np.testing.assert_array_equal(
        DrQv2.load(tmp_path / "model.zip", device="cpu").predict(obs, deterministic=True)[0], expected
    )


@pytest.mark.parametrize(("augmentation", "reconstruction"), [(None, False), ("shift", True)], ids=["AD(0,0)", "AD(1,1)"])
def test_training_continued_after_load_is_bit_identical(tmp_path, augmentation, reconstruction):
    # Train N updates, save model and replay buffer, load, train M more == train N + M straight.
    original = filled_model(augmentation=augmentation, reconstruction=reconstruction, stddev_schedule_steps=100)
    original.num_timesteps = 30  # the noise schedule is mid-decay: its state must come back with the model
    original.train(gradient_steps=3, batch_size=BATCH_SIZE)
    original.save(tmp_path / "model.zip")
    original.save_replay_buffer(tmp_path / "buffer.pkl")
    at_save = training_state(original)

    def load() -> DrQv2:
        model = DrQv2.load(tmp_path / "model.zip", env=FakeImageEnv(episode_length=7), device="cpu")
        model.load_replay_buffer(tmp_path / "buffer.pkl")
        model.set_logger(RecordingLogger())
        return model

    resumed = load()
    assert isinstance(resumed.replay_buffer, NStepPixelReplayBuffer) and resumed.replay_buffer.n_steps == 3
    assert_same(training_state(resumed), at_save, "after load")
    for model in (original, resumed):
        reseed(7)
        model.train(gradient_steps=4, batch_size=BATCH_SIZE)
    assert original._n_updates == resumed._n_updates == 7
    after = training_state(original)
    assert_same(training_state(resumed), after, "after 4 more updates")
    assert not th.equal(after["policy"]["actor.mu.0.weight"], at_save["policy"]["actor.mu.0.weight"])

    # The comparison can fail: a resume whose noise schedule is elsewhere (another num_timesteps) differs.
    elsewhere = load()
    elsewhere.num_timesteps = 60
    reseed(7)
    elsewhere.train(gradient_steps=4, batch_size=BATCH_SIZE)
    assert not th.equal(elsewhere.critic.qf0[0].weight, original.critic.qf0[0].weight)


def test_load_refuses_overrides_of_the_saved_networks(tmp_path):
    make_model().save(tmp_path / "model")  # a bare name gets SB3's .zip
    assert (tmp_path / "model.zip").is_file()
    for key, value in (("reconstruction", True), ("image_size", 16)):
        with pytest.raises(ValueError, match=rf"{key}={value!r} cannot be changed when loading"):
            DrQv2.load(tmp_path / "model.zip", device="cpu", **{key: value})


def test_the_callers_policy_kwargs_are_not_modified():
    policy_kwargs = {"net_arch": [32, 32]}
    model = make_model(policy_kwargs=policy_kwargs, reconstruction=True)
    assert policy_kwargs == {"net_arch": [32, 32]}
    assert model.policy_kwargs == {"net_arch": [32, 32], "image_size": IMAGE_SIZE, "use_decoder": True}


def test_learn_after_load_continues_without_error(tmp_path):
    model = make_model(reconstruction=True)
    model.learn(total_timesteps=LEARNING_STARTS + 4)
    model.save(tmp_path / "model.zip")
    loaded = DrQv2.load(tmp_path / "model.zip", env=FakeImageEnv(episode_length=7), device="cpu")
    loaded.set_logger(RecordingLogger())
    loaded.learn(total_timesteps=LEARNING_STARTS + 4, reset_num_timesteps=False)
    assert loaded._n_updates > model._n_updates


def test_trains_on_several_envs_with_their_shared_action_repeat():
    env = DummyVecEnv([lambda: RepeatedEnv(episode_length=5)] * 2)
    model = make_model(env)
    assert model.action_repeat == 4 and model.replay_buffer.n_envs == 2
    # SB3's train_freq counts vectorized steps: rollouts of 2 steps of both envs (4 transitions) end at 4, 8, ..., 20
    # agent steps; the three that end past learning_starts (12, 16, 20) each take one update.
    model.learn(total_timesteps=LEARNING_STARTS + 8)
    assert model._n_updates == 3 and model.num_timesteps == 20
    assert model.exploration_stddev() == pytest.approx(1.0 - 0.9 * 4 * 20 / 1_000_000)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"augmentation_pad": -1}, r"augmentation_pad must be a non-negative integer number of pixels .*got -1"),
        ({"n_steps": 0}, r"n_steps must be a positive integer .*got 0"),
        ({"stddev_start": -0.5}, r"standard deviations must be non-negative, got stddev_start=-0.5"),
        ({"stddev_end": -0.1}, r"must be non-negative, got stddev_start=1.0, stddev_end=-0.1"),
        ({"stddev_start": 0.1, "stddev_end": 1.0}, r"stddev_end=1.0 exceeds stddev_start=0.1.*Swap them"),
        ({"stddev_schedule_steps": 0}, r"stddev_schedule_steps must be a positive number of environment steps.*got 0"),
        ({"stddev_clip": -0.3}, r"stddev_clip must be non-negative \(DrQ-v2: 0.3\), got -0.3"),
        ({"augmentation": "crop"}, r"Unknown augmentation 'crop': use 'shift' .* or None"),
        ({"action_repeat": 0}, r"action_repeat must be a positive integer or None"),
        ({"encoder_lr": -1.0}, r"encoder_lr must be non-negative, got -1.0"),
        ({"replay_buffer_class": ReplayBuffer}, r"NStepPixelReplayBuffer, got replay_buffer_class=ReplayBuffer"),
        ({"replay_buffer_kwargs": {"n_steps": 5}}, r"replay_buffer_kwargs\['n_steps'\]=5 contradicts the model's n_steps=3"),
        ({"policy_kwargs": {"use_decoder": True}}, r"policy_kwargs\['use_decoder'\]=True contradicts .*reconstruction=False"),
        ({"image_size": 24}, r"The observations are 20x20 pixels, smaller than image_size=24"),
    ],
)
def test_bad_settings_fail_with_the_fix(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_model(**overrides)


def test_vector_observations_and_discrete_actions_fail_with_the_fix():
    vector = FakeImageEnv(observation_space=spaces.Box(-1, 1, (5,), dtype=np.float32))
    with pytest.raises(ValueError, match=r"DrQv2 encodes images, .*shape \(5,\).*SB3's TD3\('MlpPolicy', env\)") as error:
        make_model(vector)
    assert "GAARASAC" not in str(error.value)
    discrete = FakeImageEnv(action_space=spaces.Discrete(3))
    with pytest.raises(ValueError, match=r"DrQv2 is DDPG: it needs a continuous Box action space, got Discrete\(3\)"):
        make_model(discrete)
    floats = FakeImageEnv(observation_space=spaces.Box(0, 1, OBS_SHAPE, dtype=np.float32))
    with pytest.raises(ValueError, match=r"DrQv2 needs uint8 images"):
        make_model(floats)


def test_policy_rejects_a_shared_or_foreign_features_extractor():
    with pytest.raises(ValueError, match="share_features_extractor=True would train them with the actor loss"):
        make_model(policy_kwargs={"share_features_extractor": True})
    with pytest.raises(ValueError, match=r"needs a PixelEncoder features extractor.*got NatureCNN"):
        make_model(policy_kwargs={"features_extractor_class": NatureCNN})


# --------------------------------------------------------------------------------------------------
# PixelReach: trains end to end
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("augmentation", "reconstruction"), [("shift", False), ("shift", True)], ids=["AD(1,0)", "AD(1,1)"])
def test_learns_on_pixel_reach_without_error(augmentation, reconstruction):
    env = gym.make("PixelReach-v0", size=32, frame_stack=3)
    model = DrQv2(
        "CnnPolicy",
        env,
        **tiny_kwargs(
            image_size=32, learning_starts=20, augmentation=augmentation, reconstruction=reconstruction, buffer_size=500
        ),
    )
    model.set_logger(RecordingLogger())
    model.learn(total_timesteps=60)
    assert model.action_repeat == 2
    assert model._n_updates == 20  # one update every 2 agent steps after the 20 random ones
    assert np.isfinite(model.logger.history["train/critic_loss"]).all()
    assert model.exploration_stddev() == pytest.approx(1.0 - 0.9 * 120 / 1_000_000)

"""SLAC: the ELBO's pieces, sequence replay, the actor's history, gradient routing, save/load, errors. (The exact
resume and the errors every algorithm shares: ``test_every_algorithm.py``.)"""

from __future__ import annotations

import io
import math
import pickle
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import RecordingLogger, assert_same
from gymnasium import spaces
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_gaara import SLAC, SequenceReplayBuffer
from sb3_gaara.common.distributions import gaussian_kl, gaussian_log_prob
from sb3_gaara.slac.latent_model import LatentModel, LatentSample, elbo_terms
from sb3_gaara.slac.policies import SLACHistory, advance_history, record_action

FRAME_SHAPE = (3, 16, 16)
ACTION_SPACE = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
SEQUENCE_LENGTH = 4
TINY_POLICY = dict(features_dim=8, z1_dim=3, z2_dim=5, model_hidden_sizes=(16,), base_channels=2, net_arch=[16, 16])


class CountingEnv(gym.Env):
    """16 px frames that show which episode and step they belong to: pixel ``[0, 0, 0]`` is the episode number,
    ``[1, 0, 0]`` the step within it; the rest is noise. Episodes end (terminate, or truncate when ``truncate``) after
    ``episode_length`` steps; the action's first component is recorded in the reward (``step + action / 10``)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, episode_length: int = 6, truncate: bool = False) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, FRAME_SHAPE, dtype=np.uint8)
        self.action_space = ACTION_SPACE
        self.episode_length, self.truncate = episode_length, truncate
        self.episode, self.step_count = -1, 0

    def _frame(self) -> np.ndarray:
        frame = self.np_random.integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
        frame[0, 0, 0], frame[1, 0, 0] = self.episode % 256, self.step_count
        return frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode, self.step_count = self.episode + 1, 0
        return self._frame(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.step_count += 1
        reward = self.step_count + float(action[0]) / 10
        end = self.step_count >= self.episode_length
        return self._frame(), reward, end and not self.truncate, end and self.truncate, {}


def make_slac(env: gym.Env | DummyVecEnv | None = None, **overrides: Any) -> SLAC:
    kwargs: dict[str, Any] = dict(
        buffer_size=200,
        learning_starts=10,
        batch_size=8,
        model_batch_size=4,
        model_pretraining_steps=3,
        sequence_length=SEQUENCE_LENGTH,
        policy_kwargs=dict(TINY_POLICY),
        seed=0,
        device="cpu",
    )
    kwargs.update(overrides)
    model = SLAC("CnnPolicy", env if env is not None else CountingEnv(), **kwargs)
    model.set_logger(RecordingLogger())
    return model


def snapshot(module: th.nn.Module) -> dict[str, th.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def moved(before: dict[str, th.Tensor], module: th.nn.Module) -> bool:
    return any(not th.equal(before[name], tensor) for name, tensor in module.state_dict().items())


# ---------------------------------------------------------------------------------------------- the ELBO's pieces


def test_gaussian_kl_matches_the_closed_form_by_hand() -> None:
    # KL(N(1, 2^2) || N(0, 1)) = log(1 / 2) + (4 + 1) / 2 - 1/2
    value = gaussian_kl(th.tensor([1.0]), th.tensor([2.0]), th.tensor([0.0]), th.tensor([1.0]))
    assert value.item() == pytest.approx(math.log(0.5) + 2.5 - 0.5, abs=1e-6)
    # KL(N(0, 1) || N(1, 0.5^2)) = log(0.5) + (1 + 1) / (2 * 0.25) - 1/2
    value = gaussian_kl(th.tensor([0.0]), th.tensor([1.0]), th.tensor([1.0]), th.tensor([0.5]))
    assert value.item() == pytest.approx(math.log(0.5) + 4.0 - 0.5, abs=1e-6)
    # Equal Gaussians: zero; and torch's own closed form on random diagonal Gaussians.
    assert gaussian_kl(th.tensor([0.3]), th.tensor([0.7]), th.tensor([0.3]), th.tensor([0.7])).item() == 0.0
    generator = th.Generator().manual_seed(0)
    mq, mp = th.randn(5, generator=generator), th.randn(5, generator=generator)
    sq, sp = th.rand(5, generator=generator) + 0.1, th.rand(5, generator=generator) + 0.1
    expected = th.distributions.kl_divergence(th.distributions.Normal(mq, sq), th.distributions.Normal(mp, sp))
    th.testing.assert_close(gaussian_kl(mq, sq, mp, sp), expected)


def test_gaussian_log_prob_by_hand() -> None:
    assert gaussian_log_prob(th.tensor([0.0]), th.tensor([0.0]), 1.0).item() == pytest.approx(-0.5 * math.log(2 * math.pi))
    # log N(3; 1, 2^2) = -(1)^2 / 2 - log 2 - log(2 pi) / 2
    value = gaussian_log_prob(th.tensor([3.0]), th.tensor([1.0]), th.tensor([2.0])).item()
    assert value == pytest.approx(-0.5 - math.log(2.0) - 0.5 * math.log(2 * math.pi))


def test_elbo_terms_of_a_hand_made_sequence() -> None:
    """Two steps, one-pixel frames, one-dimensional z1 and reward: every sum computed by hand."""
    images = th.tensor([0.2, 0.6]).reshape(1, 2, 1, 1, 1)
    image_means = th.tensor([0.0, 1.0]).reshape(1, 2, 1, 1, 1)
    posterior = LatentSample(
        z1=th.zeros(1, 2, 1),
        z2=th.zeros(1, 2, 1),
        z1_mean=th.tensor([1.0, 0.0]).reshape(1, 2, 1),
        z1_std=th.tensor([2.0, 1.0]).reshape(1, 2, 1),
        z1_prior_mean=th.tensor([0.0, 1.0]).reshape(1, 2, 1),
        z1_prior_std=th.tensor([1.0, 0.5]).reshape(1, 2, 1),
    )
    rewards, reward_mean, reward_std = th.tensor([[[3.0]]]), th.tensor([[[1.0]]]), th.tensor([[[2.0]]])
    terms = elbo_terms(images, image_means, posterior, rewards, reward_mean, reward_std, decoder_std=0.5)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    # log N(0.2; 0, 0.5^2) + log N(0.6; 1, 0.5^2)
    expected_images = (-0.5 * 0.4**2 - math.log(0.5) - half_log_2pi) + (-0.5 * 0.8**2 - math.log(0.5) - half_log_2pi)
    expected_kl = (math.log(0.5) + 2.5 - 0.5) + (math.log(0.5) + 4.0 - 0.5)
    expected_reward = -0.5 - math.log(2.0) - half_log_2pi
    assert terms.image_log_likelihood.item() == pytest.approx(expected_images, abs=1e-5)
    assert terms.kl.item() == pytest.approx(expected_kl, abs=1e-5)
    assert terms.reward_log_likelihood.item() == pytest.approx(expected_reward, abs=1e-6)
    assert terms.reconstruction_mse.item() == pytest.approx((0.2**2 + 0.4**2) / 2)
    # The first step is padding: only the second observation's terms count, and no reward (it follows the padding).
    masked = elbo_terms(
        images, image_means, posterior, rewards, reward_mean, reward_std, 0.5, observed=th.tensor([[0.0, 1.0]])
    )
    assert masked.image_log_likelihood.item() == pytest.approx(-0.5 * 0.8**2 - math.log(0.5) - half_log_2pi, abs=1e-5)
    assert masked.kl.item() == pytest.approx(math.log(0.5) + 4.0 - 0.5, abs=1e-5)
    assert masked.reward_log_likelihood.item() == 0.0
    assert masked.reconstruction_mse.item() == pytest.approx(0.4**2)


def test_the_filter_restarts_at_the_first_observed_step() -> None:
    th.manual_seed(0)
    model = LatentModel(FRAME_SHAPE, 2, features_dim=8, z1_dim=3, z2_dim=5, hidden_sizes=(16,), base_channels=2)
    features, actions = th.randn(2, 4, 8), th.randn(2, 3, 2)
    observed = th.tensor([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    posterior = model.posterior(features, actions, observed)
    # Sequence 0 starts at step 2: q(z1 | x) of the first observation, prior N(0, I), z2 from p(z2 | z1).
    init_mean, init_std = model.z1_posterior_init(features[0, 2])
    th.testing.assert_close(posterior.z1_mean[0, 2], init_mean)
    th.testing.assert_close(posterior.z1_std[0, 2], init_std)
    assert th.equal(posterior.z1_prior_mean[0, 2], th.zeros(3)) and th.equal(posterior.z1_prior_std[0, 2], th.ones(3))
    # Sequence 1 is observed throughout: step 2 is a transition from step 1.
    mean, _ = model.z1_posterior(features[1, 2], posterior.z2[1, 1], actions[1, 1])
    th.testing.assert_close(posterior.z1_mean[1, 2], mean)
    th.testing.assert_close(posterior.z1_prior_mean[1, 2], model.z1_prior(posterior.z2[1, 1], actions[1, 1])[0])
    # Step 3 of sequence 0 continues from its restart.
    th.testing.assert_close(posterior.z1_mean[0, 3], model.z1_posterior(features[0, 3], posterior.z2[0, 2], actions[0, 2])[0])


def test_latent_model_shapes_prior_and_loss() -> None:
    th.manual_seed(0)
    model = LatentModel(FRAME_SHAPE, 2, features_dim=8, z1_dim=3, z2_dim=5, hidden_sizes=(16,), base_channels=2)
    images = th.randint(0, 256, (4, SEQUENCE_LENGTH, *FRAME_SHAPE), dtype=th.uint8)
    actions, rewards = th.rand(4, SEQUENCE_LENGTH - 1, 2), th.rand(4, SEQUENCE_LENGTH - 1, 1)
    terms, posterior, image_means = model.elbo(images, actions, rewards)
    assert posterior.latents.shape == (4, SEQUENCE_LENGTH, 8)
    assert image_means.shape == images.shape
    assert all(term.shape == (4,) for term in terms[:3])
    # p(z1_1) = N(0, I); later steps' priors are the learned p(z1_{t+1} | z2_t, a_t) at the posterior's z2_t.
    assert th.equal(posterior.z1_prior_mean[:, 0], th.zeros(4, 3))
    assert th.equal(posterior.z1_prior_std[:, 0], th.ones(4, 3))
    th.testing.assert_close(
        th.stack(model.z1_prior(posterior.z2[:, 0], actions[:, 0])),
        th.stack((posterior.z1_prior_mean[:, 1], posterior.z1_prior_std[:, 1])),
    )
    # The loss is -(log p(x|z) - KL + log p(r|z,a,z')) averaged over the batch (same noise: same seed).
    th.manual_seed(1)
    loss, loss_terms = model.loss(images, actions, rewards)
    expected = (loss_terms.kl - loss_terms.image_log_likelihood - loss_terms.reward_log_likelihood).mean()
    assert loss.item() == pytest.approx(expected.item())


@pytest.mark.parametrize("size", [15, 24, 0])
def test_frame_sizes_that_are_not_multiples_of_16_are_refused(size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        LatentModel((3, size, size), 2)


def test_the_decoder_ends_with_a_leaky_relu_of_slope_0_2() -> None:
    """Both references end the decoder with a leaky ReLU of slope 0.2 (TensorFlow's ``leaky_relu`` default in the
    original, ``nn.LeakyReLU(0.2)`` in the port): the mean image is the last transposed convolution's output with its
    negative values scaled by 0.2 and the others unchanged."""
    th.manual_seed(0)
    decoder = LatentModel(FRAME_SHAPE, 2, features_dim=8, z1_dim=3, z2_dim=5, hidden_sizes=(16,), base_channels=2).decoder
    latents = 3.0 * th.randn(2, 4, 8)
    with th.no_grad():
        means = decoder(latents)
        pre_activation = decoder.net[:-1](latents.reshape(-1, 8, 1, 1)).reshape(means.shape)
    negative = pre_activation < 0
    assert negative.any() and (~negative).any()
    th.testing.assert_close(means[negative], 0.2 * pre_activation[negative], rtol=1e-6, atol=0.0)
    assert th.equal(means[~negative], pre_activation[~negative])


# ---------------------------------------------------------------------------------------------- sequence replay


def filled_buffer(
    n_envs: int = 1,
    buffer_size: int = 40,
    steps: int = 30,
    episode_length: int = 6,
    truncate: bool = False,
    storage_device: str | None = None,
    pad_with_first_frame: bool = False,
    sequence_length: int = SEQUENCE_LENGTH,
):
    env = DummyVecEnv([lambda: CountingEnv(episode_length, truncate) for _ in range(n_envs)])
    env.seed(0)
    buffer = SequenceReplayBuffer(
        buffer_size,
        env.observation_space,
        env.action_space,
        device="cpu",
        n_envs=n_envs,
        sequence_length=sequence_length,
        storage_device=storage_device,
        pad_with_first_frame=pad_with_first_frame,
    )
    obs = env.reset()
    rng = np.random.default_rng(0)
    for _ in range(steps):
        actions = rng.uniform(-1, 1, (n_envs, 2)).astype(np.float32)
        next_obs, rewards, dones, infos = env.step(actions)
        real_next = next_obs.copy()
        for i, done in enumerate(dones):
            if done:
                real_next[i] = infos[i]["terminal_observation"]
        buffer.add(obs, real_next, actions, rewards, dones, infos)
        obs = next_obs
    return buffer


@pytest.mark.parametrize("n_envs", [1, 2])
@pytest.mark.parametrize("truncate", [False, True])
@pytest.mark.parametrize("pad_with_first_frame", [False, True])
def test_sequences_never_mix_episodes_and_pad_before_the_first_observation(
    n_envs: int, truncate: bool, pad_with_first_frame: bool
) -> None:
    # 30 steps into a ring of 20 per env: the buffer has wrapped, and episodes of 6 steps end every 6th transition.
    buffer = filled_buffer(
        n_envs=n_envs, buffer_size=20 * n_envs, steps=30, truncate=truncate, pad_with_first_frame=pad_with_first_frame
    )
    assert buffer.full
    np.random.seed(0)
    for _ in range(20):
        sample = buffer.sample(16)
        frames, observed = sample.observations.numpy(), sample.observed.numpy().astype(bool)
        assert frames.shape == (16, SEQUENCE_LENGTH, *FRAME_SHAPE) and observed.shape == (16, SEQUENCE_LENGTH)
        episodes, steps = frames[:, :, 0, 0, 0].astype(int), frames[:, :, 1, 0, 0].astype(int)
        # The observed steps are a suffix of consecutive steps of the last observation's episode, as many as the
        # episode has had (its step counter + 1, up to S; fewer in episode 1, whose first steps the ring overwrote),
        # and the padding before them is all zeros, or copies of the first observed frame.
        assert observed[:, -2:].all()
        n_observed = observed.sum(axis=1)
        expected = np.minimum(steps[:, -1] + 1, SEQUENCE_LENGTH)
        whole = episodes[:, -1] >= 2
        np.testing.assert_array_equal(n_observed[whole], expected[whole])
        assert (n_observed <= expected).all()
        for row in range(16):
            kept = slice(SEQUENCE_LENGTH - n_observed[row], None)
            assert (episodes[row, kept] == episodes[row, -1]).all(), "a sequence spans two episodes"
            assert (np.diff(steps[row, kept]) == 1).all(), "a sequence skips or repeats a step"
            padding = frames[row, : SEQUENCE_LENGTH - n_observed[row]]
            if pad_with_first_frame:
                assert (padding == frames[row, SEQUENCE_LENGTH - n_observed[row]]).all(), "padding is not the first frame"
            else:
                assert (padding == 0).all(), "padding is not zeros"
        # Rewards are step + action / 10 of the same steps, zero in the padding; terminal only at an episode's last step.
        actions, rewards = sample.actions[..., 0].numpy(), sample.rewards[..., 0].numpy()
        expected = np.where(observed[:, :-1], steps[:, 1:] + actions / 10, 0.0)
        np.testing.assert_allclose(rewards, expected, rtol=1e-6)
        assert (actions[~observed[:, :-1]] == 0).all()
        expected_dones = (steps[:, 1:] == 6) & observed[:, :-1] & (not truncate)
        np.testing.assert_array_equal(sample.dones[..., 0].numpy(), expected_dones.astype(np.float32))
        assert not sample.dones[:, :-1].any()  # only the last step of a sequence can end its episode


def test_a_device_frame_store_samples_the_same_sequences() -> None:
    """The torch store (``storage_device``, the GPU path, run here on the CPU) gathers the same frames as the host one,
    and a saved and loaded buffer samples the same sequences."""
    host = filled_buffer(n_envs=2, buffer_size=40, steps=30)
    device = filled_buffer(n_envs=2, buffer_size=40, steps=30, storage_device="cpu")
    loaded = pickle.loads(pickle.dumps(device))
    samples = []
    for buffer in (host, device, loaded):
        np.random.seed(4)
        samples.append(buffer.sample(16))
    for other in samples[1:]:
        assert_same(samples[0]._asdict(), other._asdict())


def test_sequence_steps_by_hand() -> None:
    # Episodes of 6 steps: transitions 0-5 (episode 0) and 6-11 (episode 1), 12 of 14 slots used.
    buffer = filled_buffer(buffer_size=14, steps=12)
    steps, observed = buffer.sequence_steps(np.array([1, 3, 5, 6, 8]), np.zeros(5, dtype=np.int64))
    np.testing.assert_array_equal(steps[:, -1], [1, 3, 5, 6, 8])
    np.testing.assert_array_equal(steps[0], [13, 0, 1])  # before transition 0: nothing stored yet, padding
    np.testing.assert_array_equal(
        observed, [[False, True, True], [True, True, True], [True, True, True], [False, False, True], [True, True, True]]
    )
    # 15 steps into a ring of 12: transitions 0-2 hold steps 12-14, the oldest stored one is at index 3.
    buffer = filled_buffer(buffer_size=12, steps=15)
    assert buffer.full and buffer.pos == 3
    _, observed = buffer.sequence_steps(np.array([3, 4, 2]), np.zeros(3, dtype=np.int64))
    # index 3 (step 3) is the oldest: nothing before it; index 4 (step 4) has one; index 2 (step 14, episode 2's
    # third transition) has two, wrapping to the end of the ring.
    np.testing.assert_array_equal(observed, [[False, False, True], [False, True, True], [True, True, True]])


def test_sequences_early_in_an_episode_repeat_its_first_frame() -> None:
    """Sequences of 8 ending k < 7 steps into an episode: the 7 - k padded frames are the episode's first frame, byte
    for byte, the padded actions and rewards zeros (the original's ``filter_before_first_step``), the rest the stored
    steps; the zero-padded buffer (Dreamer's) differs only in the padded frames."""
    padded = filled_buffer(buffer_size=40, steps=20, episode_length=10, pad_with_first_frame=True, sequence_length=8)
    zeroed = filled_buffer(buffer_size=40, steps=20, episode_length=10, sequence_length=8)
    episode_start = 10  # episode 1's first transition: its observation is the episode's first frame
    first_frame = padded.get_stacks(np.array([episode_start]), np.array([0]))[0][0]
    assert first_frame[1, 0, 0] == 0 and first_frame[0, 0, 0] == 1  # step 0 of episode 1
    ends = episode_start + np.arange(7)  # the last transition is k = 0 .. 6 steps into the episode
    sample = padded.sequences(ends, np.zeros(7, dtype=np.int64))
    reference = zeroed.sequences(ends, np.zeros(7, dtype=np.int64))
    frames = sample.observations.numpy()
    for k in range(7):
        n_padded = 6 - k
        np.testing.assert_array_equal(sample.observed[k].numpy(), [0.0] * n_padded + [1.0] * (k + 2))
        for step in range(n_padded):
            np.testing.assert_array_equal(frames[k, step], first_frame)
        observed_steps = np.arange(episode_start, ends[k] + 1)
        stored = padded.get_stacks(observed_steps, np.zeros_like(observed_steps))[0]
        np.testing.assert_array_equal(frames[k, n_padded:-1], stored)
        expected_actions = np.concatenate([np.zeros((n_padded, 2), np.float32), padded.actions[observed_steps, 0]])
        np.testing.assert_array_equal(sample.actions[k].numpy(), expected_actions)
        assert (sample.rewards[k, :n_padded] == 0).all()
        assert (reference.observations[k, :n_padded] == 0).all()
    for name in ("observations", "actions", "rewards", "dones", "observed"):
        if name != "observations":
            assert th.equal(getattr(sample, name), getattr(reference, name)), name
    assert th.equal(sample.observations[reference.observed.bool()], reference.observations[reference.observed.bool()])


def test_sequences_are_drawn_like_sb3_transitions() -> None:
    """The last transitions and envs are SB3's ``ReplayBuffer.sample`` draw: same seed, same transitions."""
    buffer = filled_buffer(n_envs=2, buffer_size=40, steps=15)
    np.random.seed(5)
    sample = buffer.sample(6)
    np.random.seed(5)
    ends = np.random.randint(0, buffer.pos, size=6)
    envs = np.random.randint(0, 2, size=(6,))
    np.testing.assert_array_equal(sample.actions[:, -1].numpy(), buffer.actions[ends, envs])


def test_sampling_an_empty_buffer_says_what_to_do() -> None:
    buffer = SequenceReplayBuffer(10, spaces.Box(0, 255, FRAME_SHAPE, np.uint8), ACTION_SPACE)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        SequenceReplayBuffer(
            10,
            spaces.Box(0, 255, FRAME_SHAPE, np.uint8),
            ACTION_SPACE,
            optimize_memory_usage=True,
            handle_timeout_termination=False,
        )
    with pytest.raises(ValueError, match="sequence_length must be an integer of at least 2"):
        SequenceReplayBuffer(10, spaces.Box(0, 255, FRAME_SHAPE, np.uint8), ACTION_SPACE, sequence_length=1)


def test_each_frame_is_stored_once() -> None:
    buffer = filled_buffer(buffer_size=40, steps=30, episode_length=6)
    # 30 transitions in 5 episodes: 30 next frames + 5 reset frames, plus the permanent zero slot.
    assert buffer._n_frame_slots == 30 + 5 + 1
    frame = int(np.prod(FRAME_SHAPE))
    per_transition_arrays = buffer._transition_arrays_nbytes() / buffer.buffer_size
    assert per_transition_arrays == 2 * 4 + 3 * 4 + 2 * 4  # actions (2 x float32), reward/done/timeout, 2 int32 slots
    expected = (buffer._transition_arrays_nbytes() + 36 * (frame + 8) + buffer._last_next_frames.nbytes) / 30
    assert buffer.bytes_per_transition() == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------- the actor's history


def test_history_advances_and_restarts_at_episode_starts() -> None:
    first = np.full((2, *FRAME_SHAPE), 1, dtype=np.uint8)
    history = advance_history(None, first, None, action_dim=2, sequence_length=3)
    assert history.observations.shape == (2, 3, *FRAME_SHAPE) and history.actions.shape == (2, 2, 2)
    assert (history.observations == 1).all()  # the first frame, repeated before it
    assert (history.actions == 0).all()
    history = record_action(history, np.array([[0.5, 0.5], [-0.5, -0.5]], dtype=np.float32))
    second = np.full((2, *FRAME_SHAPE), 2, dtype=np.uint8)
    history = advance_history(history, second, np.array([False, True]), action_dim=2, sequence_length=3)
    # env 0 continues: frames [1, 1, 2], actions [0, a_1]; env 1 restarted: frames [2, 2, 2], no actions.
    assert [int(frame[0, 0, 0]) for frame in history.observations[0]] == [1, 1, 2]
    np.testing.assert_array_equal(history.actions[0], [[0, 0], [0.5, 0.5]])
    assert (history.observations[1] == 2).all()
    assert (history.actions[1] == 0).all()
    with pytest.raises(ValueError, match="pass the state the previous predict returned"):
        advance_history(history, np.zeros((2, 3, 32, 32), np.uint8), None, action_dim=2, sequence_length=3)


def test_predict_carries_the_history_and_resets_it_at_episode_start() -> None:
    model = make_slac()
    env = DummyVecEnv([CountingEnv])
    obs = obs_0 = env.reset()
    actions, state = model.predict(obs, deterministic=True)
    assert isinstance(state, SLACHistory) and actions.shape == (1, 2)
    fresh_actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, fresh_actions)  # same observation, fresh history: same action
    np.testing.assert_allclose(state.actions[0, -1], actions[0], atol=1e-7)  # the chosen action (scaled = unscaled here)
    obs, *_ = env.step(actions)
    continued, state2 = model.predict(obs, state=state, episode_start=np.array([False]), deterministic=True)
    restarted, state3 = model.predict(obs, state=state, episode_start=np.array([True]), deterministic=True)
    alone, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(restarted, alone)
    assert not np.array_equal(continued, restarted)  # the history changes the action
    np.testing.assert_array_equal(state2.observations[0, -2], state.observations[0, -1])
    assert (state.observations[0] == obs_0[0]).all()  # the first frame, repeated before it
    assert (state3.observations[0] == obs[0]).all() and (state3.actions[0, :-1] == 0).all()  # restarted on the new frame
    # One env's observation, not vectorized: one action back.
    single, _ = model.predict(obs[0], deterministic=True)
    assert single.shape == (2,)


def test_training_rollouts_restart_the_history_after_each_episode() -> None:
    model = make_slac(env=CountingEnv(episode_length=6), learning_starts=100)
    model.learn(total_timesteps=8)  # episode 0 (6 steps), then 2 steps of episode 1
    history = model._rollout_history
    assert history is not None
    # The last action was chosen at episode 1's second observation (step 1): its first frame repeated before it.
    episode_ids = [int(frame[0, 0, 0]) for frame in history.observations[0]]
    step_ids = [int(frame[1, 0, 0]) for frame in history.observations[0]]
    assert episode_ids[-2:] == [1, 1] and step_ids[-2:] == [0, 1]
    assert (history.observations[0, :-2] == history.observations[0, -2]).all()
    assert (history.actions[0, :-2] == 0).all() and (history.actions[0, -2:] != 0).all()


def test_evaluate_policy_passes_the_history() -> None:
    model = make_slac()
    env = DummyVecEnv([lambda: Monitor(CountingEnv())])
    calls: list[Any] = []
    original = model.policy.predict

    def spy(observation, state=None, episode_start=None, deterministic=False):
        calls.append((state, None if episode_start is None else episode_start.copy()))
        return original(observation, state, episode_start, deterministic)

    model.policy.predict = spy  # type: ignore[method-assign]
    evaluate_policy(model, env, n_eval_episodes=2)
    assert calls[0][0] is None and calls[1][0] is not None
    assert [bool(start[0]) for _, start in calls[:8]] == [True, False, False, False, False, False, True, False]


# ---------------------------------------------------------------------------------------------- updates


def test_pretraining_runs_before_the_first_agent_update() -> None:
    model = make_slac(model_pretraining_steps=5)
    model.learn(total_timesteps=13)  # 10 random steps, then 3 steps with an update each
    assert model._n_updates == 3
    assert model._n_model_updates == 5 + 3
    history = model.logger.history
    assert {"train/model_loss", "train/kl", "train/critic_loss", "train/actor_loss", "train/ent_coef"} <= set(history)
    assert history["train/n_model_updates"][-1] == 8


def test_gradient_routing() -> None:
    """The model's loss moves only the model; the agent's losses move the actor, the critic (and its target by the
    EMA) and the temperature, never the model (SLAC §5: separate objectives)."""
    model = make_slac(model_pretraining_steps=0)
    model.learn(total_timesteps=10)
    policy = model.policy
    parts = {"model": policy.latent_model, "actor": policy.actor, "critic": policy.critic, "target": policy.critic_target}

    before = {name: snapshot(module) for name, module in parts.items()}
    model.model_step(model._sample_model_batch(), lambda name, value: None)
    assert {name: moved(before[name], module) for name, module in parts.items()} == {
        "model": True,
        "actor": False,
        "critic": False,
        "target": False,
    }

    before = {name: snapshot(module) for name, module in parts.items()}
    log_alpha = model.log_ent_coef.detach().clone()
    model.agent_step(model.replay_buffer.sample(8), lambda name, value: None)
    assert {name: moved(before[name], module) for name, module in parts.items()} == {
        "model": False,
        "actor": True,
        "critic": True,
        "target": True,
    }
    assert not th.equal(log_alpha, model.log_ent_coef)
    # No gradient of the agent's losses reaches the model.
    policy.latent_model.zero_grad(set_to_none=True)
    model.agent_step(model.replay_buffer.sample(8), lambda name, value: None)
    assert all(param.grad is None for param in policy.latent_model.parameters())


def test_the_critic_reads_the_last_two_latents_and_the_actor_the_whole_history() -> None:
    model = make_slac(model_pretraining_steps=0)
    model.learn(total_timesteps=10)
    seen: dict[str, th.Tensor] = {}
    original = model.sac_update

    def spy(history, latent, next_latent, sequences, record):
        seen.update(history=history, latent=latent, next_latent=next_latent, observations=sequences.observations)
        return original(history, latent, next_latent, sequences, record)

    model.sac_update = spy  # type: ignore[method-assign]
    model.agent_step(model.replay_buffer.sample(8), lambda name, value: None)
    policy = model.policy
    assert seen["history"].shape == (8, SEQUENCE_LENGTH * 8 + (SEQUENCE_LENGTH - 1) * 2) == (8, policy.history_dim)
    assert seen["latent"].shape == seen["next_latent"].shape == (8, 3 + 5)
    assert not seen["history"].requires_grad and not seen["latent"].requires_grad
    features = policy.latent_model.encode(seen["observations"])
    # The history's features are the encoder's of all S frames (before this step's updates: the model did not move).
    th.testing.assert_close(seen["history"][:, : SEQUENCE_LENGTH * 8], features.flatten(1))


# ---------------------------------------------------------------------------------------------- save, load, resume


def test_save_load_restores_everything(tmp_path: Path) -> None:
    model = make_slac(model_pretraining_steps=2)
    model.learn(total_timesteps=14)
    model.save(tmp_path / "model.zip")
    loaded = SLAC.load(tmp_path / "model.zip", device="cpu")
    assert_same(snapshot(model.policy), snapshot(loaded.policy), "policy")
    for name in ("actor.optimizer", "critic.optimizer", "latent_model.optimizer", "ent_coef_optimizer"):
        original = model
        for part in name.split("."):
            original = getattr(original, part)
        restored = loaded
        for part in name.split("."):
            restored = getattr(restored, part)
        assert_same(original.state_dict(), restored.state_dict(), name)
    assert loaded._n_model_updates == model._n_model_updates and loaded._n_updates == model._n_updates
    assert_same(loaded._rollout_history.observations, model._rollout_history.observations)
    assert loaded.sequence_length == SEQUENCE_LENGTH and loaded.model_batch_size == 4
    obs = DummyVecEnv([CountingEnv]).reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    with pytest.raises(ValueError, match="sequence_length=8 cannot be changed when loading"):
        SLAC.load(tmp_path / "model.zip", sequence_length=8)


def test_tensorboard_gets_a_sequence_and_its_reconstruction(tmp_path: Path) -> None:
    model = make_slac(model_pretraining_steps=0, reconstruction_log_interval=2)
    model.set_logger(configure(str(tmp_path), ["tensorboard"]))
    model.learn(total_timesteps=12)
    events = b"".join(path.read_bytes() for path in tmp_path.rglob("events.out.tfevents*"))
    assert b"train/reconstructions" in events


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("observation_space", "action_space", "match"),
    [
        (spaces.Box(0, 255, (3, 16, 32), np.uint8), ACTION_SPACE, "square frames"),
        (spaces.Box(0, 255, (3, 24, 24), np.uint8), ACTION_SPACE, "multiple of 16"),
    ],
)
def test_bad_spaces_are_refused_with_the_fix(observation_space: spaces.Space, action_space: spaces.Space, match: str) -> None:
    class Env(CountingEnv):
        def __init__(self) -> None:
            super().__init__()
            self.observation_space, self.action_space = observation_space, action_space

    with pytest.raises(ValueError, match=match):
        SLAC("CnnPolicy", Env(), policy_kwargs=dict(TINY_POLICY))


def test_stacked_frames_are_warned_about() -> None:
    class Stacked(CountingEnv):
        def __init__(self) -> None:
            super().__init__()
            self.observation_space = spaces.Box(0, 255, (9, 16, 16), np.uint8)

    with pytest.warns(UserWarning, match="frame_stack=1"):
        SLAC("CnnPolicy", Stacked(), policy_kwargs=dict(TINY_POLICY), buffer_size=10)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"sequence_length": 1}, "sequence_length must be an integer >= 2"),
        ({"model_batch_size": 0}, "model_batch_size must be an integer >= 1"),
        ({"model_pretraining_steps": -1}, "model_pretraining_steps must be an integer >= 0"),
        ({"reconstruction_log_interval": 1.5}, "reconstruction_log_interval must be an integer"),
        ({"model_learning_rate": 0}, "model_learning_rate must be a positive number"),
        ({"replay_buffer_kwargs": {"sequence_length": 3}}, r"replay_buffer_kwargs\['sequence_length'\]=3 contradicts"),
        ({"policy_kwargs": {**TINY_POLICY, "sequence_length": 3}}, r"policy_kwargs\['sequence_length'\]=3 contradicts"),
        ({"replay_buffer_class": SequenceReplayBuffer.__mro__[1]}, "SLAC trains on sequences from SequenceReplayBuffer"),
        ({"replay_buffer_kwargs": {"pad_with_first_frame": False}}, "leave pad_with_first_frame out"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_slac(**overrides)


def test_the_actor_trains_on_the_history_it_acts_on() -> None:
    """The replayed sequence that ends with an episode's first transition gives the actor exactly the input ``predict``
    gives it at that episode's second step: the episode's first frame repeated before it, zero actions."""
    model = make_slac(env=CountingEnv(episode_length=6), learning_starts=100)
    model.learn(total_timesteps=9)
    buffer, policy = model.replay_buffer, model.policy
    first = 6  # episode 1's first transition: x_6 -> a_6 -> x_7
    sample = buffer.sequences(np.array([first]), np.array([0]))
    np.testing.assert_array_equal(sample.observed.numpy(), [[0, 0, 1, 1]])
    assert buffer.pad_with_first_frame and (sample.observations[0, :2] == sample.observations[0, 2]).all()
    with th.no_grad():
        replayed = policy.actor_input(policy.latent_model.encode(sample.observations), sample.actions)
    x_6, x_7 = buffer.get_stacks(np.array([first]), np.array([0]))
    history = advance_history(None, x_6, np.array([True]), policy.action_dim, SEQUENCE_LENGTH)
    history = record_action(history, buffer.actions[first])
    history = advance_history(history, x_7, np.array([False]), policy.action_dim, SEQUENCE_LENGTH)
    assert_same(replayed, policy.history_input(history))


def test_training_on_an_empty_buffer_says_what_to_do() -> None:
    model = make_slac()
    with pytest.raises(ValueError, match="empty"):
        model.train(gradient_steps=1, batch_size=4)


def test_saving_to_a_file_object() -> None:
    model = make_slac()
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = SLAC.load(buffer, device="cpu")
    assert_same(snapshot(model.policy), snapshot(loaded.policy))


# ---------------------------------------------------------------------------------------------- learning


#: agent steps and evaluation episodes of the CPU-scale learning check that runs in CI (PixelReach, the study's
#: CPU-scale SLAC settings, seed 0); the README's two-seed figures come from ``_train_slac(seed, 30)`` for seeds 0 and 1
#: side by side
LEARNING_STEPS = 4_000
LEARNING_EPISODES = 60


def _reconstruction_mse(model: SLAC, ends: np.ndarray) -> float:
    """The model's reconstruction error on fixed replayed sequences (the decoder's mean at posterior samples drawn
    from a forked, seeded generator, so that measuring leaves training's random numbers alone)."""
    sequences = model.replay_buffer.sequences(ends, np.zeros_like(ends))
    with th.no_grad(), th.random.fork_rng():
        th.manual_seed(0)
        terms, _, _ = model.latent_model.elbo(sequences.observations, sequences.actions, sequences.rewards, sequences.observed)
    return float(terms.reconstruction_mse)


def _train_slac(seed: int, episodes: int = LEARNING_EPISODES) -> tuple[list[float], float, float, float, int]:
    """Train SLAC with the study's CPU-scale settings on PixelReach (one core); its evaluation returns, training time,
    reconstruction errors before and after training (on the random policy's first sequences) and action repeat."""
    import copy
    import time

    from sb3_gaara.study import AGENTS, make_train_env, resolve_task

    th.set_num_threads(1)
    task = resolve_task("pixel_reach").for_agent(AGENTS["slac"])
    env = make_train_env(task, seed=seed)
    eval_env = make_train_env(task, seed=seed, eval_env=True)
    model = SLAC("CnnPolicy", env, seed=seed, buffer_size=LEARNING_STEPS, **copy.deepcopy(dict(task.model_kwargs)))
    start = time.time()
    model.learn(model.learning_starts)  # the random steps: the buffer fills, nothing trains yet
    ends = np.arange(0, model.learning_starts, 5)
    before = _reconstruction_mse(model, ends)
    model.learn(LEARNING_STEPS - model.learning_starts, reset_num_timesteps=False)
    train_time = time.time() - start
    after = _reconstruction_mse(model, ends)
    rewards, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True)
    return [float(reward) for reward in rewards], train_time, before, after, int(env.get_attr("action_repeat")[0])


@pytest.mark.slow
def test_slac_learns_from_pixels() -> None:
    """SLAC on PixelReach with the study's CPU-scale settings (seed 0, 4000 agent steps, ~3 min on one core): the
    deterministic returns beat a random policy by more than 4 standard errors and close a third of the gap to a
    scripted policy, and the model's reconstruction error falls below half of its start."""
    from conftest import check_margin

    from sb3_gaara.study import AGENTS, resolve_task

    rewards, train_time, before, after, action_repeat = _train_slac(0)
    print(f"\nSLAC seed 0: reconstruction MSE {before:.4f} -> {after:.4f}")
    assert after < 0.5 * before, "the reconstruction error did not fall"
    task = resolve_task("pixel_reach").for_agent(AGENTS["slac"])
    check_margin("SLAC", rewards, task, LEARNING_STEPS, action_repeat, LEARNING_EPISODES, train_time)

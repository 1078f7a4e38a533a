"""Dreamer: lambda-returns and the CEM by hand, the RSSM's shapes and restarts, the free-nats clamp, gradient routing,
the planners, recurrent acting, save/load, errors, and a CPU-scale learning check. (The exact resume and the errors
every algorithm shares: ``test_every_algorithm.py``.)"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import RecordingLogger, assert_same, check_margin
from gymnasium import spaces
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import DummyVecEnv

from sb3_gaara import Dreamer, SequenceReplayBuffer, cem_plan, evaluate_planners, lambda_returns
from sb3_gaara.dreamer.policies import DreamerPolicy, DreamerState
from sb3_gaara.dreamer.world_model import RSSM, RSSMState, WorldModel, model_loss

FRAME_SHAPE = (3, 64, 64)
ACTION_SPACE = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
SEQUENCE_LENGTH = 4
TINY_POLICY = dict(depth=2, deter_size=8, stoch_size=4, hidden_size=8, units=8, layers=1)
TINY_WORLD_MODEL = dict(depth=2, deter_size=8, stoch_size=4, hidden_size=8, units=8, reward_layers=1)


class CountingEnv(gym.Env):
    """64 px frames of noise whose pixel ``[0, 0, 0]`` is the step within the episode; episodes end (terminate, or
    truncate when ``truncate``) after ``episode_length`` steps; the reward is ``step + action[0] / 10``."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # SB3 makes an env from its id with rgb_array

    def __init__(self, episode_length: int = 6, truncate: bool = False) -> None:
        super().__init__()
        self.observation_space = spaces.Box(0, 255, FRAME_SHAPE, dtype=np.uint8)
        self.action_space = ACTION_SPACE
        self.episode_length, self.truncate = episode_length, truncate
        self.step_count = 0

    def _frame(self) -> np.ndarray:
        frame = self.np_random.integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
        frame[0, 0, 0] = self.step_count
        return frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.step_count = 0
        return self._frame(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.step_count += 1
        reward = self.step_count + float(action[0]) / 10
        end = self.step_count >= self.episode_length
        return self._frame(), reward, end and not self.truncate, end and self.truncate, {}


#: ``CountingEnv`` registered under an id, to build Dreamer from an env id
COUNTING_ENV_ID = "DreamerCountingEnv-v0"


def make_dreamer(env: gym.Env | DummyVecEnv | None = None, **overrides: Any) -> Dreamer:
    kwargs: dict[str, Any] = dict(
        buffer_size=200,
        learning_starts=6,
        batch_size=3,
        sequence_length=SEQUENCE_LENGTH,
        train_freq=4,
        gradient_steps=2,
        imagination_horizon=3,
        policy_kwargs=dict(TINY_POLICY),
        seed=0,
        device="cpu",
    )
    kwargs.update(overrides)
    model = Dreamer("CnnPolicy", env if env is not None else CountingEnv(), **kwargs)
    model.set_logger(RecordingLogger())
    return model


def snapshot(module: th.nn.Module) -> dict[str, th.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def moved(before: dict[str, th.Tensor], module: th.nn.Module) -> bool:
    return any(not th.equal(before[name], tensor) for name, tensor in module.state_dict().items())


# ---------------------------------------------------------------------------------------------- lambda-returns


def test_lambda_returns_by_hand_with_a_discount_of_zero_inside_the_horizon() -> None:
    rewards = th.tensor([[1.0], [2.0], [3.0]])
    values = th.tensor([[10.0], [20.0], [30.0], [40.0]])
    discounts = th.tensor([[0.9], [0.0], [0.9]])
    # R_3 = v_3 = 40; R_2 = 3 + 0.9 (0.5 * 40 + 0.5 * 40) = 39; R_1 = 2 + 0 = 2; R_0 = 1 + 0.9 (0.5 * 20 + 0.5 * 2).
    expected = th.tensor([[10.9], [2.0], [39.0]])
    assert th.allclose(lambda_returns(rewards, values, discounts, 0.5), expected)


def test_lambda_returns_at_lambda_one_and_zero() -> None:
    rewards = th.tensor([[1.0, 0.0], [2.0, 1.0]])
    values = th.tensor([[5.0, 1.0], [6.0, 2.0], [7.0, 3.0]])
    discounts = th.full((2, 2), 0.5)
    # lambda = 1: the 2-step return bootstrapped by v_2; lambda = 0: one-step TD targets r_t + d v_{t+1}.
    assert th.allclose(
        lambda_returns(rewards, values, discounts, 1.0),
        th.tensor([[1 + 0.5 * (2 + 0.5 * 7), 0 + 0.5 * (1 + 0.5 * 3)], [2 + 3.5, 1 + 1.5]]),
    )
    assert th.allclose(lambda_returns(rewards, values, discounts, 0.0), rewards + discounts * values[1:])


def test_lambda_returns_refuse_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one row more than rewards"):
        lambda_returns(th.zeros(3, 2), th.zeros(3, 2), th.zeros(3, 2), 0.95)
    with pytest.raises(ValueError, match="same shape"):
        lambda_returns(th.zeros(3, 2), th.zeros(4, 2), th.zeros(3, 1), 0.95)
    with pytest.raises(ValueError, match=r"lambda_ must lie in \[0, 1\]"):
        lambda_returns(th.zeros(3, 2), th.zeros(4, 2), th.zeros(3, 2), 1.5)


# ---------------------------------------------------------------------------------------------- the CEM


def test_cem_plan_finds_the_maximum_of_a_concave_objective() -> None:
    target = th.tensor([[0.3, -0.5], [0.1, 0.7], [-0.8, 0.0]])

    def objective(plans: th.Tensor) -> th.Tensor:
        return -((plans - target) ** 2).sum(dim=(1, 2))

    generator = th.Generator().manual_seed(0)
    plan = cem_plan(objective, 3, 2, iterations=10, candidates=1000, top_k=100, generator=generator)
    assert plan.shape == (3, 2)
    assert th.allclose(plan, target, atol=0.02)


def test_cem_plan_respects_the_bounds() -> None:
    seen: list[th.Tensor] = []

    def objective(plans: th.Tensor) -> th.Tensor:  # its maximum, 2.0, lies outside [-1, 0.5]
        seen.append(plans)
        return -((plans - 2.0) ** 2).sum(dim=(1, 2))

    plan = cem_plan(objective, 2, 1, iterations=5, candidates=200, top_k=20, init_std=3.0, low=-1.0, high=0.5)
    assert all(bool(((plans >= -1.0) & (plans <= 0.5)).all()) for plans in seen)
    assert th.allclose(plan, th.full((2, 1), 0.5), atol=1e-3)


def test_cem_plan_starts_from_the_initial_mean() -> None:
    init = th.tensor([[0.25], [-0.5]])
    plan = cem_plan(
        lambda plans: plans.sum(dim=(1, 2)), 2, 1, iterations=3, candidates=10, top_k=2, init_mean=init, init_std=0.0
    )
    assert th.equal(plan, init)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"top_k": 20}, "top_k must be at most candidates"),
        ({"iterations": 0}, "iterations must be an integer >= 1"),
        ({"init_mean": th.zeros(3, 1)}, r"init_mean must have shape \(horizon, action_dim\) = \(2, 1\)"),
        ({"low": 1.0, "high": -1.0}, "low < high"),
    ],
)
def test_cem_plan_refuses_bad_settings(kwargs: dict[str, Any], match: str) -> None:
    settings: dict[str, Any] = dict(horizon=2, action_dim=1, iterations=2, candidates=10, top_k=2)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cem_plan(lambda plans: plans.sum(dim=(1, 2)), **settings)


def test_cem_plan_refuses_an_objective_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="one score per plan"):
        cem_plan(lambda plans: plans.sum(dim=2), 2, 1, iterations=1, candidates=4, top_k=2)


# ---------------------------------------------------------------------------------------------- the world model


def test_rssm_and_world_model_shapes() -> None:
    model = WorldModel(3, 2, **TINY_WORLD_MODEL)
    assert model.encoder.embed_dim == 32 * TINY_POLICY["depth"] and model.features_dim == 8 + 4
    frames = th.randint(0, 256, (5, 7, *FRAME_SHAPE), dtype=th.uint8)
    actions = th.rand(5, 6, 2) * 2 - 1
    posterior, prior = model.rssm.observe(model.encoder(frames), actions)
    assert posterior.deter.shape == prior.deter.shape == (5, 7, 8)
    assert posterior.stoch.shape == posterior.mean.shape == posterior.std.shape == (5, 7, 4)
    assert bool((posterior.std >= 0.1).all()) and bool((prior.std >= 0.1).all())
    assert th.equal(posterior.deter, prior.deter)  # the posterior corrects s, not h
    assert model.decoder(posterior.features).shape == (5, 7, *FRAME_SHAPE)
    terms, states = model.loss(frames, actions, th.zeros(5, 6, 1), th.ones(5, 7))
    assert terms.loss.shape == () and states.features.shape == (5, 7, 12)


def test_32_px_frames_drop_the_outermost_layers() -> None:
    """The paper's 64 px networks (four layers each way, Dreamer's channels), and the CPU-scale 32 px ones (three)."""
    paper = WorldModel(3, 2, image_size=64, depth=32)
    assert paper.encoder.embed_dim == 1024 and paper.decoder.linear.out_features == 1024
    convs = [layer.out_channels for layer in paper.encoder.convs if isinstance(layer, th.nn.Conv2d)]
    deconvs = [
        (layer.out_channels, layer.kernel_size[0])
        for layer in paper.decoder.deconvs
        if isinstance(layer, th.nn.ConvTranspose2d)
    ]
    assert convs == [32, 64, 128, 256] and deconvs == [(128, 5), (64, 5), (32, 6), (3, 6)]
    small = WorldModel(3, 2, image_size=32, depth=4)
    frames = th.zeros(2, 3, 32, 32, dtype=th.uint8)
    assert small.encoder(frames).shape == (2, 64) and small.decoder(th.zeros(2, small.features_dim)).shape == (2, 3, 32, 32)


def _dense_widths(head: th.nn.Module) -> list[tuple[int, int]]:
    return [(layer.in_features, layer.out_features) for layer in head.modules() if isinstance(layer, th.nn.Linear)]


def _policy(**policy_kwargs: Any) -> DreamerPolicy:
    return DreamerPolicy(spaces.Box(0, 255, FRAME_SHAPE, np.uint8), ACTION_SPACE, lambda _: 8e-5, **policy_kwargs)


def test_dense_heads_follow_dreamers_code_or_the_papers_text() -> None:
    """Dreamer's code (danijar/dreamer, ``_build_model``: ``num_units=400``; ``DenseDecoder((), 2, ...)`` for the reward,
    ``DenseDecoder((), 3, ...)`` for the value, ``ActionDecoder(..., 4, ...)`` for the actor) by default; the paper's
    appendix A (three layers of 300 each) with ``units=300, layers=3``. Features ``[s, h]``: 30 + 200."""
    code = _policy()
    assert _dense_widths(code.world_model.reward_model) == [(230, 400), (400, 400), (400, 1)]
    assert _dense_widths(code.value) == [(230, 400), (400, 400), (400, 400), (400, 1)]
    assert _dense_widths(code.actor) == [(230, 400), (400, 400), (400, 400), (400, 400), (400, 2 * 2)]
    paper = _policy(units=300, layers=3)
    for head, outputs in ((paper.world_model.reward_model, 1), (paper.value, 1), (paper.actor, 4)):
        assert _dense_widths(head) == [(230, 300), (300, 300), (300, 300), (300, outputs)]
    mixed = _policy(units=16, reward_layers=1, value_layers=0, actor_layers=2)
    assert [len(_dense_widths(head)) for head in (mixed.world_model.reward_model, mixed.value, mixed.actor)] == [2, 1, 3]
    with pytest.raises(ValueError, match="weight_init must be one of"):
        _policy(weight_init="xavier")
    with pytest.raises(ValueError, match="actor_layers must be an integer >= 0"):
        _policy(actor_layers=-1)


def _glorot_bound(weight: th.Tensor, transposed: bool = False) -> float:
    """Keras's ``glorot_uniform`` limit ``sqrt(6 / (fan_in + fan_out))``, its fans ported: a kernel's receptive field
    times its input and output channels. Torch stores a dense or convolution weight ``(out, in, ...)`` and a transposed
    convolution's ``(in, out, ...)``; the sum of the fans is the same either way."""
    receptive_field = math.prod(weight.shape[2:])
    out_channels, in_channels = (weight.shape[1], weight.shape[0]) if transposed else (weight.shape[0], weight.shape[1])
    return math.sqrt(6.0 / ((in_channels + out_channels) * receptive_field))


def test_networks_are_initialized_as_keras_initializes_dreamers_code() -> None:
    """Dreamer's code builds Keras layers with their default initializers: Dense, Conv2D and Conv2DTranspose kernels
    Glorot uniform, biases zero; GRUCell's kernel Glorot uniform, its recurrent kernel orthogonal, its biases zero.
    Keras draws the recurrent kernel ``(units, 3 units)`` as *one* orthogonal matrix (one QR of a ``(3 units, units)``
    Gaussian, transposed): its rows are orthonormal, ``K K^T = I``. Torch's ``weight_hh`` is ``K^T`` with the gates
    reordered, so ``weight_hh^T weight_hh = I`` (a per-gate orthogonal draw would give ``3 I``)."""
    th.manual_seed(0)
    policy = _policy()
    parts = {"world_model": policy.world_model, "actor": policy.actor, "value": policy.value}
    for part_name, part in parts.items():
        for name, parameter in part.named_parameters():
            if "bias" in name:
                assert not parameter.detach().abs().any(), f"{part_name}.{name}"
        for name, layer in part.named_modules():
            if isinstance(layer, (th.nn.Linear, th.nn.Conv2d, th.nn.ConvTranspose2d)):
                bound = _glorot_bound(layer.weight, transposed=isinstance(layer, th.nn.ConvTranspose2d))
                weight = layer.weight.detach()
                assert weight.abs().max() <= bound, f"{part_name}.{name}"
                assert weight.abs().max() > 0.9 * bound, f"{part_name}.{name}"  # spread over the whole interval
    # Variance of U(-b, b) = b^2 / 3 = 2 / (fan_in + fan_out), on the decoder's first layer (230 x 1024 weights) and
    # the encoder's last convolution (128 x 256 x 4 x 4).
    for weight in (policy.world_model.decoder.linear.weight, policy.world_model.encoder.convs[-2].weight):
        assert float(weight.detach().var()) == pytest.approx(_glorot_bound(weight) ** 2 / 3, rel=0.02)
    gru = policy.world_model.rssm.gru
    assert gru.weight_ih.shape == (3 * 200, 200) and gru.weight_hh.shape == (3 * 200, 200)
    assert gru.weight_ih.detach().abs().max() <= math.sqrt(6.0 / (200 + 3 * 200))
    recurrent = gru.weight_hh.detach().double()
    assert th.allclose(recurrent.T @ recurrent, th.eye(200, dtype=th.float64), atol=1e-5)
    update_gate = recurrent[200:400]  # torch's order: reset, update, new
    assert not th.allclose(update_gate.T @ update_gate, th.eye(200, dtype=th.float64), atol=0.1)
    # PyTorch's defaults on request: uniform biases.
    torch_init = _policy(units=16, weight_init="torch")
    assert torch_init.value.net[0].bias.detach().abs().sum() > 0
    assert torch_init.world_model.rssm.gru.bias_hh.detach().abs().sum() > 0


def test_the_actor_starts_broad_and_bounded() -> None:
    """Dreamer's actor: a standard deviation of 5 (+ its floor 1e-4) before the tanh at initialization, whatever the
    layer's output; the mean bounded by 5; both settable."""
    from sb3_gaara.dreamer.policies import ActionModel

    actor = ActionModel(4, 2, units=8, layers=1)
    with th.no_grad():
        actor.net.net[-1].weight.zero_()
        actor.net.net[-1].bias.zero_()
    mean, std = actor.distribution(th.randn(3, 4))
    assert th.allclose(std, th.full((3, 2), 5.0 + 1e-4)) and th.equal(mean, th.zeros(3, 2))
    with th.no_grad():
        actor.net.net[-1].bias.fill_(100.0)
    assert th.allclose(actor.distribution(th.randn(3, 4))[0], th.full((3, 2), 5.0), atol=1e-4)
    narrow = ActionModel(4, 2, units=8, layers=1, init_std=1.0, mean_scale=2.0)
    with th.no_grad():
        narrow.net.net[-1].weight.zero_()
        narrow.net.net[-1].bias.fill_(0.0)
    assert th.allclose(narrow.distribution(th.randn(3, 4))[1], th.full((3, 2), 1.0 + 1e-4))
    with pytest.raises(ValueError, match="init_std must exceed"):
        ActionModel(4, 2, init_std=0.0)


def test_the_filter_restarts_at_the_first_observed_step() -> None:
    """A padded sequence's first observed step is filtered from the initial state, as an episode's first frame is."""
    th.manual_seed(0)
    rssm = RSSM(action_dim=2, embed_dim=6, deter_size=5, stoch_size=3, hidden_size=4)
    embeds, actions = th.randn(1, 4, 6), th.randn(1, 3, 2)
    observed = th.tensor([[0.0, 0.0, 1.0, 1.0]])
    padded, _ = rssm.observe(embeds, actions * observed[:, :-1, None], observed)
    fresh, _ = rssm.observe(embeds[:, 2:], actions[:, 2:])
    assert th.allclose(padded.deter[:, 2], fresh.deter[:, 0]) and th.allclose(padded.mean[:, 2], fresh.mean[:, 0])
    unmasked, _ = rssm.observe(embeds, actions)
    assert not th.allclose(unmasked.mean[:, 2], fresh.mean[:, 0])


def _states(mean: th.Tensor, std: th.Tensor) -> RSSMState:
    return RSSMState(th.zeros(*mean.shape[:-1], 1), mean, mean, std)


def test_model_loss_by_hand_and_the_free_nats_clamp() -> None:
    """Images equal to their means: log p(o) = -pixels * log(2 pi) / 2 per frame. Rewards 1 below their means:
    log p(r) = -1/2 - log(2 pi) / 2. KL(N(m, 1) || N(0, 1)) = m^2 / 2 per unit, 2 units."""
    images = th.zeros(2, 3, 1, 2, 2)
    rewards, reward_means = th.zeros(2, 2), th.ones(2, 2)
    observed = th.ones(2, 3)
    log_2pi = math.log(2 * math.pi)
    for offset, free_nats in ((1.0, 3.0), (3.0, 3.0)):
        mean = th.full((2, 3, 2), offset, requires_grad=True)
        terms = model_loss(
            images, images, rewards, reward_means, _states(mean, th.ones(2, 3, 2)),
            _states(th.zeros(2, 3, 2), th.ones(2, 3, 2)), observed, free_nats=free_nats,
        )  # fmt: skip
        kl = offset**2  # 2 units of offset^2 / 2
        assert terms.kl.item() == pytest.approx(kl)
        assert terms.image_log_likelihood.item() == pytest.approx(-4 * log_2pi / 2)
        assert terms.reward_log_likelihood.item() == pytest.approx(-0.5 - log_2pi / 2)
        assert terms.loss.item() == pytest.approx(max(kl, free_nats) + 2 * log_2pi + 0.5 + log_2pi / 2)
        assert terms.reward_mse.item() == pytest.approx(1.0)
        (gradient,) = th.autograd.grad(terms.loss, mean)
        # Below the free nats (KL 1 < 3) the KL gives the posterior no gradient; above (KL 9) it does.
        assert (gradient.abs().sum().item() == 0.0) == (kl < free_nats)


def test_kl_balancing_splits_the_gradient_between_prior_and_posterior() -> None:
    """DreamerV2's balancing keeps the loss's value and gives the prior ``alpha`` of the KL's gradient, the posterior
    ``1 - alpha``."""
    images, observed = th.zeros(1, 2, 1, 2, 2), th.ones(1, 2)

    def gradients(kl_balance: float | None) -> tuple[float, th.Tensor, th.Tensor]:
        q_mean = th.full((1, 2, 2), 3.0, requires_grad=True)
        p_mean = th.zeros(1, 2, 2, requires_grad=True)
        terms = model_loss(
            images, images, th.zeros(1, 1), th.zeros(1, 1), _states(q_mean, th.ones(1, 2, 2)),
            _states(p_mean, th.ones(1, 2, 2)), observed, free_nats=1.0, kl_balance=kl_balance,
        )  # fmt: skip
        q_grad, p_grad = th.autograd.grad(terms.loss, [q_mean, p_mean])
        return terms.loss.item(), q_grad, p_grad

    plain, q_plain, p_plain = gradients(None)
    balanced, q_balanced, p_balanced = gradients(0.8)
    assert balanced == pytest.approx(plain)
    assert th.allclose(q_balanced, 0.2 * q_plain) and th.allclose(p_balanced, 0.8 * p_plain)
    assert q_plain.abs().sum() > 0


def test_model_loss_skips_the_padding() -> None:
    images = th.zeros(1, 3, 1, 2, 2)
    means = images.clone()
    means[:, 0] = 5.0  # a padded frame: however wrong, it counts nowhere
    rewards = th.tensor([[7.0, 0.0]])  # the reward of the action taken from the padding
    observed = th.tensor([[0.0, 1.0, 1.0]])
    states = _states(th.zeros(1, 3, 2), th.ones(1, 3, 2))
    terms = model_loss(images, means, rewards, th.zeros(1, 2), states, states, observed)
    assert terms.reconstruction_mse.item() == 0.0 and terms.reward_mse.item() == 0.0


# ---------------------------------------------------------------------------------------------- training


def test_gradient_routing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's loss reaches only the world model, the actor's only the actor (through the model's dynamics, whose
    parameters stay frozen), the value's only the value."""
    model = make_dreamer()
    model.learn(total_timesteps=6)
    parts = {"world_model": model.world_model, "actor": model.actor, "value": model.value}
    reached: list[tuple[str, set[str]]] = []

    def clipped_step(module: th.nn.Module, loss: th.Tensor) -> th.Tensor:
        for part in parts.values():
            part.zero_grad(set_to_none=True)
        loss.backward()
        touched = {
            name
            for name, part in parts.items()
            if any(parameter.grad is not None and bool(parameter.grad.abs().sum() > 0) for parameter in part.parameters())
        }
        name = next(name for name, part in parts.items() if part is module)
        reached.append((name, touched))
        module.optimizer.step()  # type: ignore[operator]
        return th.zeros(())

    monkeypatch.setattr(model, "_clipped_step", clipped_step)
    before = {name: snapshot(part) for name, part in parts.items()}
    model.train(gradient_steps=1, batch_size=3)
    assert reached == [("world_model", {"world_model"}), ("actor", {"actor"}), ("value", {"value"})]
    assert all(moved(before[name], part) for name, part in parts.items())
    assert all(parameter.requires_grad for part in parts.values() for parameter in part.parameters())


def test_behaviour_starts_from_observed_states_only() -> None:
    model = make_dreamer()
    model.learn(total_timesteps=6)
    sequences = model.replay_buffer.sequences(np.array([0, 1, 5]), np.zeros(3, dtype=int))
    starts: list[int] = []
    imagine = model.policy.imagine

    def recording(start: RSSMState, horizon: int, actions: th.Tensor | None = None) -> tuple[RSSMState, th.Tensor]:
        starts.append(start.deter.shape[0])
        return imagine(start, horizon, actions)

    model.policy.imagine = recording  # type: ignore[method-assign]
    posterior = model.model_step(sequences, lambda name, value: None)
    model.behaviour_step(posterior, sequences.observed, lambda name, value: None)
    assert starts == [int(sequences.observed.sum())] and starts[0] < 3 * SEQUENCE_LENGTH


def test_training_logs_the_losses_and_counts_updates() -> None:
    model = make_dreamer()
    model.learn(total_timesteps=10)  # rollouts of 4 steps: trains after steps 8 and 12 (> learning_starts), 2 updates each
    logged = model.logger.name_to_value  # type: ignore[attr-defined]
    assert model._n_updates == 4 and model.num_timesteps == 12
    for key in ("model_loss", "kl", "reconstruction_mse", "reward_mse", "actor_loss", "value_loss", "imagined_return"):
        assert math.isfinite(logged[f"train/{key}"]), key


def test_exploration_noise_is_sb3_gaussian_action_noise(tmp_path: Path) -> None:
    """Dreamer's additive Gaussian of std 0.3, whatever form the env takes: an instance, an id, a VecEnv; and after
    ``load`` of a model built without an env instance."""
    from stable_baselines3.common.noise import NormalActionNoise

    if COUNTING_ENV_ID not in gym.registry:
        gym.register(COUNTING_ENV_ID, entry_point=CountingEnv)
    for env in (CountingEnv(), COUNTING_ENV_ID, DummyVecEnv([CountingEnv, CountingEnv])):
        model = make_dreamer(env=env)  # type: ignore[arg-type]
        assert isinstance(model.action_noise, NormalActionNoise), env
        np.testing.assert_array_equal(model.action_noise._sigma, [0.3, 0.3])
    model.save(tmp_path / "model.zip")
    loaded = Dreamer.load(tmp_path / "model.zip", device="cpu")
    assert isinstance(loaded.action_noise, NormalActionNoise)
    np.testing.assert_array_equal(loaded.action_noise._sigma, [0.3, 0.3])
    assert make_dreamer(env=COUNTING_ENV_ID, exploration_noise=0.0).action_noise is None  # type: ignore[arg-type]


def test_the_first_update_comes_where_dreamers_code_makes_it() -> None:
    """Dreamer's code: 5000 environment steps of random actions (``prefill``), then, before its agent's first action
    at environment step 5000, ``pretrain`` (100) updates, then ``train_steps`` (100) at every ``train_every`` (1000)
    environment steps: 6000, 7000, ... At action repeat 2: agent steps 2500, 3000, 3500 with ``learning_starts=2500``,
    ``train_freq=500``. Here scaled to 8 random steps and rollouts of 4: updates at agent steps 8, 12, 16, the first
    before the actor's first action. ``learn(learning_starts)`` alone collects the random steps and trains nothing."""
    model = make_dreamer(learning_starts=8, train_freq=4, gradient_steps=2)
    trained_at: list[int] = []
    acted_after_updates: list[int] = []
    train, act = model.train, model.policy.act

    def recording_train(gradient_steps: int, batch_size: int = 50) -> None:
        trained_at.append(model.num_timesteps)
        train(gradient_steps, batch_size)

    def recording_act(posterior: RSSMState, deterministic: bool) -> th.Tensor:
        acted_after_updates.append(model._n_updates)
        return act(posterior, deterministic)

    model.train = recording_train  # type: ignore[method-assign]
    model.policy.act = recording_act  # type: ignore[method-assign]
    model.learn(total_timesteps=8)
    assert trained_at == [] and acted_after_updates == []
    model.learn(total_timesteps=8, reset_num_timesteps=False)
    assert trained_at == [8, 12, 16] and model._n_updates == 6
    assert acted_after_updates[0] == 2  # the actor's first action comes after the first 2 updates
    straight = make_dreamer(learning_starts=8, train_freq=4, gradient_steps=2)
    straight_at: list[int] = []
    straight_train = straight.train

    def recording_straight(gradient_steps: int, batch_size: int = 50) -> None:
        straight_at.append(straight.num_timesteps)
        straight_train(gradient_steps, batch_size)

    straight.train = recording_straight  # type: ignore[method-assign]
    straight.learn(total_timesteps=16)
    assert straight_at == [8, 12, 16]


# ---------------------------------------------------------------------------------------------- acting


def test_predict_carries_the_state_and_resets_it_at_episode_start() -> None:
    model = make_dreamer()
    env = CountingEnv()
    first, _ = env.reset(seed=0)
    second, *_ = env.step(np.zeros(2, dtype=np.float32))
    action, state = model.predict(first, deterministic=True)
    assert isinstance(state, DreamerState) and state.deter.shape == (1, 8) and state.action.shape == (1, 2)
    np.testing.assert_allclose(state.action[0], action, rtol=1e-6, atol=1e-7)  # actions in [-1, 1]: their own scaled values
    carried, _ = model.predict(second, state=state, episode_start=np.array([False]), deterministic=True)
    restarted, _ = model.predict(second, state=state, episode_start=np.array([True]), deterministic=True)
    fresh, _ = model.predict(second, deterministic=True)
    np.testing.assert_array_equal(restarted, fresh)
    assert not np.array_equal(carried, fresh)
    with pytest.raises(ValueError, match="pass the state the previous predict returned"):
        model.predict(second, state=DreamerState(np.zeros((1, 3)), state.stoch, state.action))


def test_evaluate_policy_passes_the_state() -> None:
    model = make_dreamer()
    calls: list[bool] = []
    predict = model.policy.predict

    def recording(observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic: bool = False) -> Any:
        calls.append(state is not None)
        return predict(observation, state, episode_start, deterministic)

    model.policy.predict = recording  # type: ignore[method-assign]
    evaluate_policy(model, DummyVecEnv([CountingEnv]), n_eval_episodes=1)
    assert calls[0] is False and all(calls[1:]) and len(calls) == 6


def test_the_mpc_planner_starts_from_the_actor_plan() -> None:
    """With no spread around the actor's imagined plan, Dreamer's MPC acts as the actor does."""
    model = make_dreamer()
    observation = CountingEnv().reset(seed=1)[0]
    actor_action, _ = model.predict(observation, deterministic=True)
    model.set_planner("dreamer_mpc", {"init_std": 0.0, "candidates": 4, "top_k": 2, "iterations": 2})
    mpc_action, _ = model.predict(observation, deterministic=True)
    np.testing.assert_allclose(mpc_action, actor_action, atol=1e-6)


@pytest.mark.parametrize("planner", ["cem", "dreamer_mpc"])
def test_planners_act_within_the_bounds_and_differ_from_the_actor(planner: str) -> None:
    model = make_dreamer(planner=planner, planner_kwargs={"candidates": 16, "top_k": 4, "iterations": 2, "horizon": 3})
    observation = CountingEnv().reset(seed=1)[0]
    action, _ = model.predict(observation, deterministic=True)
    assert action.shape == (2,) and bool(((action >= -1) & (action <= 1)).all())
    model.set_planner("actor")
    actor_action, _ = model.predict(observation, deterministic=True)
    assert not np.allclose(action, actor_action)


def test_evaluate_planners_compares_one_model_and_restores_its_planner() -> None:
    model = make_dreamer(planner_kwargs={})
    small = {"candidates": 8, "top_k": 2, "iterations": 1, "horizon": 2}
    results = evaluate_planners(
        model, DummyVecEnv([CountingEnv]), n_eval_episodes=1, planner_kwargs={"cem": small, "dreamer_mpc": small}
    )
    assert set(results) == {"actor", "cem", "dreamer_mpc"}
    assert all(math.isfinite(mean) for mean, _ in results.values())
    assert model.planner == "actor" and model.policy.planner == "actor"


def test_training_rollouts_restart_the_state_after_each_episode(monkeypatch: pytest.MonkeyPatch) -> None:
    model = make_dreamer(env=CountingEnv(episode_length=3))
    starts: list[bool] = []
    filter_ = model.policy.filter

    def recording(state: Any, frames: np.ndarray, episode_start: Any, deterministic: bool) -> RSSMState:
        starts.append(state is None or bool(np.asarray(episode_start).all()))
        return filter_(state, frames, episode_start, deterministic)

    monkeypatch.setattr(model.policy, "filter", recording)
    model.learn(total_timesteps=7)  # two rollouts of 4 steps
    assert starts == [True, False, False, True, False, False, True, False]


def test_open_loop_reconstructs_the_context_then_imagines() -> None:
    model = make_dreamer()
    frames = th.randint(0, 256, (1, 6, *FRAME_SHAPE), dtype=th.uint8)
    actions = th.zeros(1, 5, 2)
    predicted = model.open_loop(frames, actions, context=2)
    assert predicted.shape == (1, 6, *FRAME_SHAPE)
    with th.no_grad():
        embeds = model.world_model.encoder(frames[:, :2])
        posterior, _ = model.world_model.rssm.observe(embeds, actions[:, :1])
    th.manual_seed(0)  # the context's posterior samples differ run to run; the decoder of the same states agrees
    assert predicted[:, 2:].shape == (1, 4, *FRAME_SHAPE) and posterior.features.shape == (1, 2, 12)


# ---------------------------------------------------------------------------------------------- save, load, resume


def test_save_load_restores_everything(tmp_path: Path) -> None:
    model = make_dreamer(planner_kwargs={})
    model.learn(total_timesteps=10)
    model.set_planner("cem", {"candidates": 8, "top_k": 2})
    model.save(tmp_path / "model.zip")
    loaded = Dreamer.load(tmp_path / "model.zip", device="cpu")
    assert_same(snapshot(model.policy), snapshot(loaded.policy), "policy")
    for name in ("world_model", "actor", "value"):
        assert_same(getattr(model, name).optimizer.state_dict(), getattr(loaded, name).optimizer.state_dict(), name)
    assert loaded._n_updates == model._n_updates == 4
    assert model._rollout_state is not None and loaded._rollout_state is not None
    assert_same(loaded._rollout_state.deter, model._rollout_state.deter)
    assert loaded.planner == "cem" and loaded.policy.planner_settings["candidates"] == 8
    assert loaded.sequence_length == SEQUENCE_LENGTH and loaded.imagination_horizon == 3
    obs = CountingEnv().reset(seed=0)[0]
    model.set_planner("actor")
    loaded.set_planner("actor")
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    switched = Dreamer.load(tmp_path / "model.zip", device="cpu", planner="actor")
    assert switched.policy.planner == "actor"


def test_tensorboard_gets_real_and_imagined_frames(tmp_path: Path) -> None:
    model = make_dreamer(imagination_log_interval=2)
    model.set_logger(configure(str(tmp_path), ["tensorboard"]))
    model.learn(total_timesteps=10)
    events = b"".join(path.read_bytes() for path in tmp_path.rglob("events.out.tfevents*"))
    assert b"train/imagination" in events


def test_save_load_keeps_the_network_sizes_and_initialization_choice(tmp_path: Path) -> None:
    policy_kwargs = dict(TINY_POLICY, layers=None, reward_layers=1, value_layers=2, actor_layers=3, weight_init="torch")
    model = make_dreamer(policy_kwargs=policy_kwargs)
    model.save(tmp_path / "model.zip")
    loaded = Dreamer.load(tmp_path / "model.zip", device="cpu")
    assert (loaded.policy.reward_layers, loaded.policy.value_layers, loaded.policy.actor_layers) == (1, 2, 3)
    assert loaded.policy.weight_init == "torch" and loaded.policy.layers is None
    assert_same(snapshot(model.policy), snapshot(loaded.policy), "policy")


def test_saving_to_a_file_object() -> None:
    model = make_dreamer()
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = Dreamer.load(buffer, device="cpu")
    assert_same(snapshot(model.policy), snapshot(loaded.policy))


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("observation_space", "action_space", "match"),
    [
        (spaces.Box(0, 255, (3, 48, 48), np.uint8), ACTION_SPACE, "built for 64 x 64 frames"),
        (spaces.Box(0, 255, (3, 64, 48), np.uint8), ACTION_SPACE, "height=64, width=64"),
    ],
)
def test_bad_spaces_are_refused_with_the_fix(observation_space: spaces.Space, action_space: spaces.Space, match: str) -> None:
    class Env(CountingEnv):
        def __init__(self) -> None:
            super().__init__()
            self.observation_space, self.action_space = observation_space, action_space

    with pytest.raises(ValueError, match=match):
        Dreamer("CnnPolicy", Env(), policy_kwargs=dict(TINY_POLICY))


def test_stacked_frames_are_warned_about() -> None:
    class Stacked(CountingEnv):
        def __init__(self) -> None:
            super().__init__()
            self.observation_space = spaces.Box(0, 255, (9, 64, 64), np.uint8)

    with pytest.warns(UserWarning, match="frame_stack=1"):
        Dreamer("CnnPolicy", Stacked(), policy_kwargs=dict(TINY_POLICY), buffer_size=10)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"sequence_length": 1}, "sequence_length must be an integer >= 2"),
        ({"imagination_horizon": 0}, "imagination_horizon must be an integer >= 1"),
        ({"imagination_log_interval": 1.5}, "imagination_log_interval must be an integer"),
        ({"model_learning_rate": 0}, "model_learning_rate must be a positive number"),
        ({"grad_clip": -1.0}, "grad_clip must be a positive number"),
        ({"free_nats": -1.0}, "free_nats must be a number >= 0"),
        ({"lambda_": 1.5}, r"lambda_ must lie in \[0, 1\]"),
        ({"gamma": "0.99"}, r"gamma must lie in \[0, 1\]"),
        ({"kl_balance": "0.8"}, r"kl_balance must be None"),
        ({"kl_balance": 1.2}, r"kl_balance must be None \(Dreamer\) or lie in \[0, 1\]"),
        ({"planner": "mpc"}, "planner must be one of"),
        ({"planner": "cem", "planner_kwargs": {"init_std": 2.0}}, r"\['init_std'\] are not settings of the 'cem' planner"),
        ({"planner": "cem", "planner_kwargs": {"top_k": 200, "candidates": 100}}, "top_k=200 exceeds candidates=100"),
        ({"planner": "cem", "planner_kwargs": {"horizon": 0}}, r"planner_kwargs\['horizon'\] must be a positive integer"),
        ({"replay_buffer_kwargs": {"sequence_length": 3}}, r"replay_buffer_kwargs\['sequence_length'\]=3 contradicts"),
        ({"policy_kwargs": {**TINY_POLICY, "planner": "cem"}}, r"policy_kwargs\['planner'\]='cem' contradicts"),
        ({"replay_buffer_class": SequenceReplayBuffer.__mro__[1]}, "Dreamer trains on sequences from SequenceReplayBuffer"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_dreamer(**overrides)


def test_training_on_an_empty_buffer_says_what_to_do() -> None:
    model = make_dreamer()
    with pytest.raises(ValueError, match="empty"):
        model.train(gradient_steps=1, batch_size=2)


# ---------------------------------------------------------------------------------------------- learning


#: agent steps of the CPU-scale check that runs in CI (PixelReach, the study's CPU-scale Dreamer settings, seed 0); the
#: README's figures come from ``_train_dreamer(seed)`` for seeds 0 and 1 side by side
LEARNING_STEPS = 3_000
#: evaluation episodes of the actor (the margin over the random policy is asserted on it) and of each planner (printed)
EVAL_EPISODES = {"actor": 100, "cem": 10, "dreamer_mpc": 10}
#: the planners' search in the learning check: the study's CPU-scale one
SMALL_SEARCH = {"candidates": 100, "top_k": 10, "iterations": 3, "horizon": 8}


def _model_errors(model: Dreamer, ends: np.ndarray) -> tuple[float, float]:
    """The world model's reconstruction and reward errors on fixed replayed sequences (posterior samples drawn from
    a forked, seeded generator, so that measuring leaves training's random numbers alone)."""
    sequences = model.replay_buffer.sequences(ends, np.zeros_like(ends))
    with th.no_grad(), th.random.fork_rng():
        th.manual_seed(0)
        terms, _ = model.world_model.loss(sequences.observations, sequences.actions, sequences.rewards, sequences.observed)
    return float(terms.reconstruction_mse), float(terms.reward_mse)


def _train_dreamer(seed: int, steps: int = LEARNING_STEPS, episodes: dict[str, int] = EVAL_EPISODES) -> dict[str, Any]:
    """Train Dreamer with the study's CPU-scale settings on PixelReach (one core) for ``steps`` agent steps; the
    deterministic returns of each planner acting with the trained model (``episodes[planner]`` episodes), the training
    time, and the model's errors before and after training (on the random policy's first sequences)."""
    import copy
    import time

    from sb3_gaara.study import AGENTS, make_train_env, resolve_task

    th.set_num_threads(1)
    task = resolve_task("pixel_reach").for_agent(AGENTS["dreamer"])
    env = make_train_env(task, seed=seed)
    eval_env = make_train_env(task, seed=seed, eval_env=True)
    model = Dreamer("CnnPolicy", env, seed=seed, buffer_size=steps, **copy.deepcopy(dict(task.model_kwargs)))
    start = time.time()
    model.learn(model.learning_starts)  # the random steps: the buffer fills, nothing trains yet
    ends = np.arange(model.sequence_length, model.learning_starts, 5)
    before = _model_errors(model, ends)
    model.learn(steps - model.learning_starts, reset_num_timesteps=False)
    train_time = time.time() - start
    after = _model_errors(model, ends)
    returns = {}
    for planner, n_episodes in episodes.items():
        model.set_planner(planner, None if planner == "actor" else SMALL_SEARCH)
        rewards, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=n_episodes, deterministic=True, return_episode_rewards=True
        )
        returns[planner] = [float(reward) for reward in rewards]
    action_repeat = int(env.get_attr("action_repeat")[0])
    return {"returns": returns, "train_time": train_time, "before": before, "after": after, "action_repeat": action_repeat}


@pytest.mark.slow
def test_dreamer_learns_from_pixels() -> None:
    """Dreamer on PixelReach with the study's CPU-scale settings (seed 0, 3000 agent steps, ~8 min on one core): the
    actor's deterministic policy beats a random one by more than 4 standard errors and closes a third of the gap to a
    scripted policy, and the world model's reconstruction and reward errors fall below 0.3 of their start. The two
    planners acting with the trained model are evaluated too and their returns printed (10 episodes each)."""
    from sb3_gaara.study import AGENTS, resolve_task

    outcome = _train_dreamer(0)
    task = resolve_task("pixel_reach").for_agent(AGENTS["dreamer"])
    (mse_before, reward_before), (mse_after, reward_after) = outcome["before"], outcome["after"]
    planners = ", ".join(
        f"{planner} {np.mean(rewards):.1f} ± {np.std(rewards):.1f}"
        for planner, rewards in outcome["returns"].items()
        if planner != "actor"
    )
    print(
        f"\nDreamer's planners after {LEARNING_STEPS} agent steps: {planners} ({EVAL_EPISODES['cem']} episodes each); "
        f"reconstruction MSE {mse_before:.4f} -> {mse_after:.4f}, reward MSE {reward_before:.3f} -> {reward_after:.3f}"
    )
    assert mse_after < 0.3 * mse_before, "the reconstruction error did not fall"
    assert reward_after < 0.3 * reward_before, "the reward error did not fall"
    assert all(np.isfinite(rewards).all() for rewards in outcome["returns"].values())
    check_margin(
        "Dreamer (actor)", outcome["returns"]["actor"], task, LEARNING_STEPS, outcome["action_repeat"],
        EVAL_EPISODES["actor"], outcome["train_time"],
    )  # fmt: skip

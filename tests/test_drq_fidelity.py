"""DrQ's initialisation and log-probability against the authors' code (denisyarats/drq), and SAC+AE's kept for the
others: whole-kernel orthogonal convolutions and the exact tanh log-determinant for DrQ; delta-orthogonal
convolutions and SB3's clamped correction (SAC+AE's and CURL's formula) for GAARA, SAC+AE and CURL."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.distributions import SquashedDiagGaussianDistribution
from torch import nn
from torch.distributions import Normal

from sb3_gaara import CURLSAC, GAARASAC, SACAE, DrQ
from sb3_gaara.common.torch_layers import orthogonal_weight_init, weight_init
from sb3_gaara.gaara.policies import ExactSquashedDiagGaussianDistribution

RELU_GAIN = math.sqrt(2.0)
SAC_AE_FAMILY = (GAARASAC, SACAE, CURLSAC)


def convolutions(model: GAARASAC) -> list[nn.Conv2d]:
    return [layer for layer in model.policy.critic_encoder.convs if isinstance(layer, nn.Conv2d)]


def assert_orthogonal(matrix: th.Tensor, gain: float) -> None:
    """The rows (or, for a tall matrix, the columns) of ``matrix`` are orthogonal with norm ``gain``: the promise of
    ``nn.init.orthogonal_(matrix, gain)``."""
    rows, cols = matrix.shape
    gram = matrix @ matrix.T if rows <= cols else matrix.T @ matrix
    th.testing.assert_close(gram, gain**2 * th.eye(min(rows, cols)), atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------- initialisation


def test_orthogonal_weight_init_is_torchs_orthogonal_of_the_whole_kernel_with_the_relu_gain():
    for conv in (nn.Conv2d(6, 32, 3, stride=2), nn.Conv2d(32, 32, 3), nn.ConvTranspose2d(32, 6, 3, stride=2)):
        th.manual_seed(3)
        orthogonal_weight_init(conv)
        expected = th.empty_like(conv.weight)
        th.manual_seed(3)
        nn.init.orthogonal_(expected, RELU_GAIN)
        assert th.equal(conv.weight, expected)
        assert conv.bias is not None and th.count_nonzero(conv.bias) == 0
    # Linear layers: SAC+AE's and DrQ's codes agree (orthogonal, gain 1, zero bias)
    linear, reference = nn.Linear(50, 1024), nn.Linear(50, 1024)
    th.manual_seed(4)
    orthogonal_weight_init(linear)
    th.manual_seed(4)
    weight_init(reference)
    assert th.equal(linear.weight, reference.weight) and th.count_nonzero(linear.bias) == 0


def test_drq_convolutions_start_with_every_tap_drawn_and_the_whole_kernel_orthogonal(make_model):
    model = make_model(DrQ)
    assert model.policy.conv_init == "orthogonal"
    convs = convolutions(model)
    assert len(convs) == 4
    for conv in convs:
        weight = conv.weight.detach()
        out_channels, in_channels, k, _ = weight.shape
        off_centre = th.ones(k, k, dtype=th.bool)
        off_centre[k // 2, k // 2] = False
        # every off-centre tap of every kernel has non-zero weights (delta-orthogonal would leave them all 0)
        assert (weight[:, :, off_centre].abs().sum(dim=(0, 1)) > 0).all()
        assert_orthogonal(weight.reshape(out_channels, in_channels * k * k), RELU_GAIN)
        assert th.count_nonzero(conv.bias) == 0
    # the target critic starts as a copy, the actor on the same convolutions
    target_convs = [layer for layer in model.policy.target_encoder.convs if isinstance(layer, nn.Conv2d)]
    for conv, target in zip(convs, target_convs, strict=True):
        assert th.equal(conv.weight, target.weight)
    assert model.actor.features_extractor.convs is model.policy.critic_encoder.convs
    # the Linear layers are orthogonal with gain 1 in both codes
    assert_orthogonal(model.policy.critic_encoder.fc.weight.detach(), 1.0)


@pytest.mark.parametrize("cls", SAC_AE_FAMILY)
def test_sac_ae_family_convolutions_stay_delta_orthogonal(make_model, cls):
    model = make_model(cls)
    assert model.policy.conv_init == "delta_orthogonal"
    for conv in convolutions(model):
        weight = conv.weight.detach().clone()
        mid = weight.shape[2] // 2
        assert_orthogonal(weight[:, :, mid, mid], RELU_GAIN)
        weight[:, :, mid, mid] = 0.0
        assert th.count_nonzero(weight) == 0
        assert th.count_nonzero(conv.bias) == 0


def test_drq_policy_kwargs_merge_over_drqs_defaults(make_model):
    model = make_model(DrQ, policy_kwargs={"net_arch": [32, 32], "conv_init": "delta_orthogonal"})
    assert model.policy.conv_init == "delta_orthogonal" and model.policy.squash_correction == "exact"
    assert model.actor.net_arch == [32, 32]
    for conv in convolutions(model):
        mid = conv.weight.shape[2] // 2
        assert th.count_nonzero(conv.weight) == th.count_nonzero(conv.weight[:, :, mid, mid]) > 0
    model = make_model(DrQ, policy_kwargs={"net_arch": [32, 32], "squash_correction": "clamped"})
    assert model.policy.conv_init == "orthogonal" and model.policy.squash_correction == "clamped"
    assert type(model.actor.action_dist) is SquashedDiagGaussianDistribution


@pytest.mark.parametrize(
    ("option", "value"), [("conv_init", "kaiming"), ("squash_correction", "clipped"), ("squash_correction", None)]
)
def test_unknown_options_are_refused_naming_the_choices(make_model, option, value):
    with pytest.raises(ValueError, match=rf"{option}={value!r} is not supported: use one of \["):
        make_model(GAARASAC, policy_kwargs={"net_arch": [32, 32], option: value})


# ------------------------------------------------------------------------------------------------- log-probability

#: pre-tanh actions, ordinary to saturated; each row is one 2-d action
U = th.tensor([[0.5, -1.0], [3.0, -3.0], [6.0, -6.0], [-3.0, 6.0], [9.0, 12.0]], dtype=th.float64)
MU = U + th.tensor([0.3, -0.2], dtype=th.float64)
LOG_STD = th.full_like(U, math.log(0.5))


def drq_reference_log_prob(mu: th.Tensor, std: th.Tensor, u: th.Tensor) -> th.Tensor:
    """DrQ's code: ``SquashedNormal(mu, std).log_prob(tanh(u)).sum(-1)`` with ``TanhTransform.log_abs_det_jacobian``."""
    log_abs_det_jacobian = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (Normal(mu, std).log_prob(u) - log_abs_det_jacobian).sum(-1)


def sac_ae_reference_log_prob(mu: th.Tensor, std: th.Tensor, u: th.Tensor) -> th.Tensor:
    """SAC+AE's and CURL's code: the Gaussian's log-density minus ``log(relu(1 - tanh(u)^2) + 1e-6)``."""
    return (Normal(mu, std).log_prob(u) - th.log(F.relu(1 - th.tanh(u).pow(2)) + 1e-6)).sum(-1)


def test_the_exact_log_prob_is_drqs_and_the_clamped_one_sac_aes(make_model):
    drq_actor, gaara_actor = make_model(DrQ).actor, make_model(GAARASAC).actor
    assert type(drq_actor.action_dist) is ExactSquashedDiagGaussianDistribution
    assert type(gaara_actor.action_dist) is SquashedDiagGaussianDistribution
    exact = drq_actor.action_dist.proba_distribution(MU, LOG_STD).log_prob(th.tanh(U), U)
    clamped = gaara_actor.action_dist.proba_distribution(MU, LOG_STD).log_prob(th.tanh(U), U)
    th.testing.assert_close(exact, drq_reference_log_prob(MU, LOG_STD.exp(), U), atol=1e-10, rtol=0)
    th.testing.assert_close(clamped, sac_ae_reference_log_prob(MU, LOG_STD.exp(), U), atol=1e-10, rtol=0)
    # They agree for ordinary actions and part as actions saturate: the clamped Jacobian is floored at 1e-6, so its
    # log-probability is the lower. Per dimension, log(1 - tanh(u)^2 + 1e-6) - log(1 - tanh(u)^2) is, by hand,
    # 2.4e-6 at |u| = 1 (1 - tanh^2 = 0.42), 1.0135e-4 at 3 (0.009866), 0.039883 at 6 (2.4576e-5),
    # 2.85733 at 9 (6.0918e-8) and 8.79835 at 12 (1.5101e-10).
    at_3, at_6, at_9, at_12 = 1.0135e-4, 0.039883, 2.85733, 8.79835
    gap = (exact - clamped).tolist()
    assert gap[0] == pytest.approx(0.0, abs=1e-5)
    assert gap[1] == pytest.approx(2 * at_3, rel=1e-3)
    assert gap[2] == pytest.approx(2 * at_6, rel=1e-4)
    assert gap[3] == pytest.approx(at_3 + at_6, rel=1e-4)
    assert gap[4] == pytest.approx(at_9 + at_12, rel=1e-5)


def test_the_exact_log_prob_of_sampled_and_given_actions(make_model):
    dist = make_model(DrQ).actor.action_dist
    th.manual_seed(0)
    actions, log_prob = dist.log_prob_from_params(MU, LOG_STD)
    u = dist.gaussian_actions
    assert u is not None and th.equal(actions, th.tanh(u))
    th.testing.assert_close(log_prob, drq_reference_log_prob(MU, LOG_STD.exp(), u), atol=1e-10, rtol=0)
    # an action given without its pre-tanh value is inverted first (exactly enough where tanh is not saturated)
    ordinary = U[:2]
    given = dist.proba_distribution(MU[:2], LOG_STD[:2]).log_prob(th.tanh(ordinary))
    th.testing.assert_close(given, drq_reference_log_prob(MU[:2], LOG_STD[:2].exp(), ordinary), atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------------------------- save / load


@pytest.mark.parametrize(
    ("cls", "policy_kwargs", "expected"),
    [
        (DrQ, {}, ("orthogonal", "exact")),
        (DrQ, {"squash_correction": "clamped"}, ("orthogonal", "clamped")),
        (GAARASAC, {}, ("delta_orthogonal", "clamped")),
    ],
)
def test_save_load_keeps_the_options(make_model, make_env, tmp_path, cls, policy_kwargs, expected):
    model = make_model(cls, policy_kwargs={"net_arch": [32, 32], **policy_kwargs})
    model.save(tmp_path / "model.zip")
    loaded = cls.load(tmp_path / "model.zip", env=make_env(), device="cpu")
    for policy in (model.policy, loaded.policy):
        assert (policy.conv_init, policy.squash_correction) == expected
        assert policy.actor.squash_correction == expected[1]
    assert type(loaded.actor.action_dist) is type(model.actor.action_dist)
    reference = drq_reference_log_prob if expected[1] == "exact" else sac_ae_reference_log_prob
    log_prob = loaded.actor.action_dist.proba_distribution(MU, LOG_STD).log_prob(th.tanh(U), U)
    th.testing.assert_close(log_prob, reference(MU, LOG_STD.exp(), U), atol=1e-10, rtol=0)


def test_a_drq_model_learns_with_drqs_defaults(make_model):
    model = make_model(DrQ)
    model.learn(total_timesteps=model.learning_starts + 6)
    assert model._n_updates > 0
    for name in ("train/critic_loss", "train/actor_loss", "train/ent_coef_loss"):
        assert all(np.isfinite(value) for value in model.logger.history[name]), name

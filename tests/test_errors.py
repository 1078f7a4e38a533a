"""Bad input fails at construction, with a message that names the problem and the fix: GAARASAC's own settings here;
the spaces and image sizes every algorithm refuses in ``test_every_algorithm.py``."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces

from sb3_gaara import GAARASAC, SACAE


def image(shape=(6, 20, 20), dtype=np.uint8, high=255) -> spaces.Box:
    return spaces.Box(0, high, shape, dtype=dtype)


def test_vector_observations_of_an_env_id():
    # An env given by id is only built by SB3: the check in _setup_model catches it.
    with pytest.raises(ValueError, match=r"observations have shape \(3,\), which is not an image.*MlpPolicy"):
        GAARASAC("CnnPolicy", "Pendulum-v1", image_size=16, buffer_size=10, device="cpu")


def test_images_smaller_than_image_size(make_model, make_env):
    env = make_env(observation_space=image(shape=(6, 20, 24)))
    with pytest.raises(
        ValueError,
        match=r"observations are 20x24 pixels, smaller than image_size=21.*Render larger images.*smaller image_size",
    ):
        make_model(env=env, image_size=21)


def test_comparison_lambda_min_above_comparison_lambda(make_model):
    with pytest.raises(
        ValueError,
        match=r"comparison_lambda_min=0.5 exceeds the initial comparison_lambda=0.3.*Set comparison_lambda_min <= ",
    ):
        make_model(comparison_lambda=0.3)


def test_negative_comparison_lambda_decay(make_model):
    with pytest.raises(
        ValueError, match=r"comparison_lambda_decay=-1e-06 is negative.*positive decay.*or 0 for a fixed weight"
    ):
        make_model(comparison_lambda_decay=-1e-6)


def test_negative_comparison_lambda(make_model):
    with pytest.raises(ValueError, match=r"comparison_lambda must be non-negative, got -1.0"):
        make_model(comparison_lambda=-1.0, comparison_lambda_min=-2.0)


def test_unknown_variant(make_model):
    with pytest.raises(ValueError, match=r"Unknown variant 'curl'; choose one of \['contrastive', .*'gaara'"):
        make_model(variant="curl")


def test_use_sde(make_model):
    with pytest.raises(ValueError, match=r"does not support gSDE \(use_sde=True\)"):
        make_model(use_sde=True)


def test_share_features_extractor(make_model):
    with pytest.raises(
        ValueError, match=r"share_features_extractor=True would train them with the actor loss.*Leave it False"
    ):
        make_model(policy_kwargs=dict(net_arch=[32, 32], share_features_extractor=True))


@pytest.mark.parametrize(
    "conv_dtype, message",
    [
        ("float16", r"float16 would need loss scaling.*use one of \['bfloat16', 'float32'\]"),
        ("int8", r"'int8' is not supported"),
    ],
)
def test_unsupported_conv_dtype(make_model, conv_dtype, message):
    with pytest.raises(ValueError, match=message):
        make_model(policy_kwargs=dict(net_arch=[32, 32], conv_dtype=conv_dtype))


def test_policy_kwargs_contradicting_the_model(make_model):
    with pytest.raises(ValueError, match=r"policy_kwargs\['image_size'\]=12 contradicts the model's 16.*set it on GAARASAC"):
        make_model(policy_kwargs=dict(net_arch=[32, 32], image_size=12))
    with pytest.raises(ValueError, match=r"policy_kwargs\['use_decoder'\]=False contradicts.*variant='gaara'"):
        make_model(policy_kwargs=dict(net_arch=[32, 32], use_decoder=False))


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("actor_update_freq", 0, r"actor_update_freq must be a positive integer"),
        ("decoder_update_freq", 1.5, r"decoder_update_freq must be a positive integer"),
        ("encoder_tau", 1.5, r"encoder_tau must lie in \[0, 1\], got 1.5"),
        ("decoder_latent_lambda", -1.0, r"decoder_latent_lambda must be non-negative"),
        ("target_update_interval", 0, r"target_update_interval must be a positive integer, got 0"),
    ],
)
def test_other_bad_hyperparameters(make_model, name, value, message):
    with pytest.raises(ValueError, match=message):
        make_model(**{name: value})


@pytest.mark.parametrize(("key", "value"), [("image_size", 20), ("variant", "contrastive")])
def test_load_with_another_network_setting(make_model, tmp_path, key, value):
    make_model().save(tmp_path / "model.zip")
    with pytest.raises(ValueError, match=rf"{key}={value!r} cannot be changed when loading.*Train a new model"):
        GAARASAC.load(tmp_path / "model.zip", device="cpu", **{key: value})


def test_load_with_an_env_of_another_shape(make_model, make_env, tmp_path):
    make_model(SACAE).save(tmp_path / "model.zip")
    with pytest.raises(ValueError, match=r"Observation spaces do not match"):
        SACAE.load(tmp_path / "model.zip", env=make_env(observation_space=image(shape=(6, 24, 24))), device="cpu")

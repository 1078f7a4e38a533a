"""What a new user meets first: progress printed, the single-frame warning, reconstructions in TensorBoard,
and the policy saved alone for deployment."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import FakeImageEnv, assert_same, tiny_kwargs
from gymnasium import spaces
from stable_baselines3.common.logger import configure

from sb3_gaara import CURLSAC, GAARASAC, SACAE, GAARAPolicy, SingleFrameWarning
from sb3_gaara.plotting import reconstruction_grid


def _image_env(channels: int, channels_first: bool = True) -> FakeImageEnv:
    shape = (channels, 20, 20) if channels_first else (20, 20, channels)
    return FakeImageEnv(observation_space=spaces.Box(0, 255, shape, dtype=np.uint8))


# ---------------------------------------------------------------------------------------------------------------
# Single frames


@pytest.mark.parametrize(("channels", "channels_first"), [(3, True), (3, False), (1, True)])
@pytest.mark.parametrize("cls", [GAARASAC, SACAE, CURLSAC])
def test_a_single_frame_warns_how_to_stack(cls, channels, channels_first):
    with pytest.warns(SingleFrameWarning, match=r"frame_stack=3.*VecFrameStack") as caught:
        cls("CnnPolicy", _image_env(channels, channels_first), **tiny_kwargs())
    assert cls.__name__ in str(caught[0].message)


@pytest.mark.parametrize("channels", [6, 9, 12])
def test_stacked_frames_train_without_the_warning(channels, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingleFrameWarning)
        model = GAARASAC("CnnPolicy", _image_env(channels), **tiny_kwargs())
        model.save(tmp_path / "model")
        GAARASAC.load(tmp_path / "model", env=_image_env(channels))


def test_the_dmc_stacked_env_is_silent_and_the_single_frame_env_warns():
    import sb3_gaara  # noqa: F401  (registers PixelReach-v0)

    with warnings.catch_warnings():
        warnings.simplefilter("error", SingleFrameWarning)
        GAARASAC("CnnPolicy", gym.make("PixelReach-v0", frame_stack=3), **tiny_kwargs(image_size=32))
    with pytest.warns(SingleFrameWarning):
        GAARASAC("CnnPolicy", gym.make("PixelReach-v0"), **tiny_kwargs(image_size=32))


# ---------------------------------------------------------------------------------------------------------------
# Progress


def test_learn_prints_training_statistics_after_the_first_episode(capsys):
    model = GAARASAC("CnnPolicy", FakeImageEnv(episode_length=5), verbose=1, **tiny_kwargs())
    model.learn(6)  # one finished episode: SB3's default interval of 4 episodes would print nothing
    out = capsys.readouterr().out
    assert "ep_rew_mean" in out and "total_timesteps" in out


# ---------------------------------------------------------------------------------------------------------------
# Reconstructions


def test_reconstruction_grid_places_inputs_and_reconstructions_frame_by_frame():
    # one observation of 2 RGB frames of 1 x 2 px
    observations = np.zeros((1, 6, 1, 2), dtype=np.uint8)
    observations[0, 0, 0, 1] = 255  # frame 0, red channel, right pixel
    observations[0, 5, 0, 0] = 51  # frame 1, blue channel, left pixel
    reconstructions = np.full((1, 6, 1, 2), -0.5, dtype=np.float32)
    reconstructions[0, 4, 0, 1] = 0.25  # frame 1, green channel, right pixel: shown as 0.75
    reconstructions[0, 1, 0, 0] = 9.0  # clipped to 1
    grid = reconstruction_grid(observations, reconstructions, gap=1)
    assert grid.shape == (1, 2 * 2 + 1 + 2 * 2, 3) and grid.dtype == np.float32
    expected = np.zeros((1, 9, 3), dtype=np.float32)
    expected[0, 1] = [1.0, 0.0, 0.0]
    expected[0, 2] = [0.0, 0.0, 0.2]
    expected[0, 4] = 1.0  # the gap
    expected[0, 5] = [0.0, 1.0, 0.0]
    expected[0, 8] = [0.0, 0.75, 0.0]
    np.testing.assert_allclose(grid, expected, atol=1e-7)
    gray = reconstruction_grid(np.full((2, 2, 3, 4), 255, dtype=np.uint8), np.zeros((2, 2, 3, 4)), gap=2)
    assert gray.shape == (2 * 3, 2 * 4 + 2 + 2 * 4, 3)  # 2 grayscale frames per row, repeated to RGB
    with pytest.raises(ValueError, match="must both be"):
        reconstruction_grid(observations, reconstructions[:, :3])


def _tensorboard_images(log_dir) -> list:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    accumulator.Reload()
    return accumulator.Images("train/reconstructions") if "train/reconstructions" in accumulator.Tags()["images"] else []


@pytest.mark.parametrize("cls", [GAARASAC, SACAE])
def test_reconstructions_reach_tensorboard_every_n_updates(cls, tmp_path):
    model = cls("CnnPolicy", FakeImageEnv(), reconstruction_log_interval=3, **tiny_kwargs())
    model.set_logger(configure(str(tmp_path), ["tensorboard"]))
    model.learn(model.learning_starts + 7)  # updates 1..7 -> grids after updates 3 and 6
    images = _tensorboard_images(tmp_path)
    assert model._n_updates == 7
    assert [image.step for image in images] == [model.learning_starts + 3, model.learning_starts + 6]
    # 4 rows of 2 stacked 16 px crops, inputs then reconstructions with a 4 px gap
    assert (images[0].height, images[0].width) == (4 * 16, 2 * 2 * 16 + 4)


def test_logging_reconstructions_changes_no_update(tmp_path):
    def trained(interval: int) -> GAARASAC:
        model = GAARASAC("CnnPolicy", FakeImageEnv(), reconstruction_log_interval=interval, **tiny_kwargs())
        model.set_logger(configure(str(tmp_path / str(interval)), ["tensorboard"]))
        return model.learn(model.learning_starts + 6)

    assert_same(trained(0).policy.state_dict(), trained(2).policy.state_dict())
    assert _tensorboard_images(tmp_path / "0") == []
    assert len(_tensorboard_images(tmp_path / "2")) == 3


def test_reconstruction_logging_without_tensorboard_warns(tmp_path):
    model = GAARASAC("CnnPolicy", FakeImageEnv(), reconstruction_log_interval=1, **tiny_kwargs())
    model.set_logger(configure(str(tmp_path), ["csv"]))
    with pytest.warns(UserWarning, match="tensorboard_log"):
        model.learn(model.learning_starts + 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(reconstruction_log_interval=-1), "non-negative integer"),
        (dict(reconstruction_log_interval=1.5), "non-negative integer"),
        (dict(reconstruction_log_interval=10, variant="contrastive"), "has no decoder"),
    ],
)
def test_bad_reconstruction_log_interval_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GAARASAC("CnnPolicy", FakeImageEnv(), **tiny_kwargs(**kwargs))


# ---------------------------------------------------------------------------------------------------------------
# The policy alone, for deployment


@pytest.mark.parametrize("cls", [GAARASAC, CURLSAC])
def test_policy_saves_and_loads_alone_and_acts_identically(cls, tmp_path):
    env = FakeImageEnv()
    model = cls("CnnPolicy", env, **tiny_kwargs())
    model.learn(model.learning_starts + 3)
    model.save(tmp_path / "model.zip")
    model.policy.save(tmp_path / "policy.pt")  # SB3's BasePolicy.save: constructor arguments and weights

    policy = GAARAPolicy.load(tmp_path / "policy.pt", device="cpu")
    assert isinstance(policy, GAARAPolicy)
    assert_same(policy.state_dict(), model.policy.state_dict())
    obs = np.stack([env.observation_space.sample() for _ in range(5)])
    np.testing.assert_array_equal(policy.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    # no optimizer states, no replay buffer: smaller than the model's zip
    assert (tmp_path / "policy.pt").stat().st_size < (tmp_path / "model.zip").stat().st_size
    crops = th.as_tensor(obs[:, :, 2:18, 2:18])  # center crops
    with th.no_grad():  # and the latent code of a loaded policy is the trained one
        assert th.equal(policy.encode(crops), model.policy.encode(crops))

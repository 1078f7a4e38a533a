"""Checks of the spaces the package's algorithms learn from, with errors that name the algorithm and say how to fix
the input. Each algorithm passes its own name (and, for vector observations, the SB3 algorithm that would take them),
so that no family rewrites another's message."""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first


def channel_first_shape(observation_space: spaces.Box) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image space, whichever axis holds the channels.

    SB3 transposes channel-last images itself (``VecTransposeImage``), so both layouts are accepted.
    """
    shape = observation_space.shape
    assert shape is not None and len(shape) == 3
    if is_image_space_channels_first(observation_space):
        return shape[0], shape[1], shape[2]
    return shape[2], shape[0], shape[1]


def check_pixel_observation_space(
    observation_space: spaces.Space, image_size: int, algorithm: str = "GAARASAC", state_algorithm: str = "SAC"
) -> tuple[int, int, int]:
    """Raise a clear error unless ``observation_space`` is a uint8 image at least ``image_size`` px wide.

    :param algorithm: the name the messages give the algorithm that refuses the space
    :param state_algorithm: the SB3 algorithm the messages suggest for state vectors and dict observations
    :return: the channel-first shape ``(C, H, W)``
    """
    if isinstance(observation_space, spaces.Dict):
        raise ValueError(
            f"{algorithm} learns from a single image observation, but the observation space is a Dict "
            f"with keys {list(observation_space.spaces)}. Give it one channel-first uint8 image "
            "(e.g. a `dmc-<domain>-<task>` env, or keep only the image key with gymnasium's FilterObservation), "
            f"or use SB3's {state_algorithm} with 'MultiInputPolicy'."
        )
    if not isinstance(observation_space, spaces.Box):
        raise ValueError(f"{algorithm} needs an image (Box) observation space, got {observation_space}.")
    shape = observation_space.shape
    if shape is None or len(shape) != 3:
        raise ValueError(
            f"{algorithm} encodes images, but the observations have shape {shape}, which is not an image "
            f"(channels, height, width). For state vectors use SB3's {state_algorithm}('MlpPolicy', env); for pixels "
            "render them, e.g. gymnasium.make('dmc-cheetah-run') (pixels) instead of from_pixels=False."
        )
    if not is_image_space(observation_space, check_channels=False):
        raise ValueError(
            f"{algorithm} needs uint8 images with values in [0, 255] (it scales them by 1/255), got dtype "
            f"{observation_space.dtype} with bounds [{observation_space.low.min()}, {observation_space.high.max()}]. "
            "Render uint8 frames."
        )
    channels, height, width = channel_first_shape(observation_space)
    if height < image_size or width < image_size:
        raise ValueError(
            f"The observations are {height}x{width} pixels, smaller than image_size={image_size}: the crops "
            f"need at least image_size pixels per side. Render larger images (the papers render 100 px for "
            f"84 px crops) or pass a smaller image_size."
        )
    return channels, height, width


def check_channels_first(observation_space: spaces.Space, policy: str, algorithm: str) -> None:
    """Raise a clear error unless ``observation_space`` is a channel-first image, as the algorithm gives its policy
    (SB3 wraps channel-last envs in ``VecTransposeImage``): a policy built by hand on the env's own space says so."""
    assert isinstance(observation_space, spaces.Box) and observation_space.shape is not None
    if not is_image_space_channels_first(observation_space):
        raise ValueError(
            f"{policy} reads channel-first frames, got observation shape {observation_space.shape}: {algorithm} "
            "transposes channel-last images itself (VecTransposeImage); build the policy with the transposed space."
        )


def check_continuous_action_space(action_space: spaces.Space | None, algorithm: str, reason: str) -> None:
    """Raise a clear error unless ``action_space`` is continuous (a ``Box``); ``None`` (no env yet) passes.

    SB3 asserts ``supported_action_spaces`` too, but only after building the model and without saying what to use
    instead. ``reason`` completes "``<algorithm> <reason>: it needs a continuous Box action space``" (``"is SAC"``).
    """
    if action_space is not None and not isinstance(action_space, spaces.Box):
        raise ValueError(
            f"{algorithm} {reason}: it needs a continuous Box action space, got {action_space}. For discrete actions "
            "use an algorithm such as SB3's DQN or PPO (e.g. with CnnPolicy)."
        )


class SingleFrameWarning(UserWarning):
    """A pixel agent was given one frame per observation, in which velocities cannot be seen."""


def warn_if_single_frame(observation_space: spaces.Space, agent: str) -> None:
    """Warn (:class:`SingleFrameWarning`) when the observations are one RGB (3-channel) or grayscale (1-channel) frame.

    A single frame shows positions but not velocities, so the agent cannot tell where the body is going; every
    paper this package follows stacks the last 3 frames. A 3-channel observation may also be 3 stacked grayscale
    frames, which this cannot tell apart: then silence it with
    ``warnings.filterwarnings("ignore", category=SingleFrameWarning)``.
    """
    if not isinstance(observation_space, spaces.Box) or observation_space.shape is None:
        return
    if len(observation_space.shape) != 3 or not is_image_space(observation_space, check_channels=False):
        return
    channels = channel_first_shape(observation_space)[0]
    if channels not in (1, 3):
        return
    frame = "RGB frame (3 channels)" if channels == 3 else "grayscale frame (1 channel)"
    warnings.warn(
        f"{agent} gets a single {frame} per observation: velocities cannot be seen in one frame, and the papers "
        "stack the last 3. Stack frames in the env (dmc-* and PixelReach-v0: env_kwargs=dict(frame_stack=3); rl-zoo3: "
        "env_kwargs: {frame_stack: 3}, as the packaged hyper-parameters do) or with SB3's VecFrameStack(env, n_stack=3). "
        "If the channels already are stacked grayscale frames, filter sb3_gaara.SingleFrameWarning.",
        SingleFrameWarning,
        stacklevel=_stacklevel_of_the_caller(),
    )


#: the folder of the package: frames in it are not the user's
_PACKAGE_DIR = str(Path(__file__).parent.parent) + "/"


def _stacklevel_of_the_caller() -> int:
    """The ``stacklevel`` that makes a warning of the function calling this one point at the first frame outside the
    package: the user's line that built the model, however many constructors (a subclass's, the refusal of speed
    options of :class:`~sb3_gaara.common.training.CheckedTraining`) lie between."""
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None  # the warning function: stacklevel 1
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level

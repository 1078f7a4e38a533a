"""Environment steps: the papers' x-axis, counted in one place; and the other fact an algorithm reads from its env
once, the frames per observation.

SAC+AE, CURL, DrQ and SAC+GAARA count *environment steps*: simulator steps after action repeat. SB3 and
the RL Zoo count *agent steps* (``model.num_timesteps``, one per ``env.step`` call and parallel env). On
cheetah-run (action repeat 4), 100k environment steps are 25k agent steps.
"""

from __future__ import annotations

from typing import TypeVar

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

Steps = TypeVar("Steps", int, np.ndarray)


def env_steps(num_timesteps: Steps, action_repeat: int) -> Steps:
    """Environment steps of ``num_timesteps`` agent steps (SB3's count, every parallel env included; an int or
    an array of counts)."""
    return num_timesteps * action_repeat


def _env_int_attribute(env: gym.Env | VecEnv, name: str, meaning: str) -> int | None:
    """The integer attribute ``name`` of ``env``, looking through gymnasium and SB3 wrappers; ``None`` if it has none.
    Every sub-environment of a ``VecEnv`` must agree (``meaning`` names the value in the error)."""
    if isinstance(env, VecEnv):
        if not env.has_attr(name):
            return None
        values = {int(value) for value in env.get_attr(name)}
        if len(values) != 1:
            raise ValueError(f"The sub-environments use different {meaning} {sorted(values)}; give them one.")
        return values.pop()
    try:
        return int(env.get_wrapper_attr(name))
    except AttributeError:
        return None


def get_action_repeat(env: gym.Env | VecEnv) -> int:
    """Simulator steps per agent step of ``env``: its ``action_repeat`` attribute, or 1 if it has none.

    Looks through gymnasium and SB3 wrappers (e.g. ``VecFrameStack`` over ``make_vec_env``) and checks
    that every sub-environment of a ``VecEnv`` agrees.
    """
    repeat = _env_int_attribute(env, "action_repeat", "action repeats (env steps are ambiguous)")
    return 1 if repeat is None else repeat


def get_frame_stack(env: gym.Env | VecEnv | None) -> int | None:
    """Frames per observation that ``env`` stacks: its ``frame_stack`` attribute (the ``dmc-*`` and PixelReach envs'
    keyword), looking through gymnasium and SB3 wrappers; ``None`` when it has none (or there is no env), where the
    replay buffer infers it from the channels.

    The env is the one owner of this number: the algorithms read it here, once, and hand it to their replay buffer,
    whose frame store keeps each frame once (a buffer told 1 frame of 3 channels where the env stacks 3 grayscale
    frames would store every stack whole).
    """
    return None if env is None else _env_int_attribute(env, "frame_stack", "numbers of stacked frames")

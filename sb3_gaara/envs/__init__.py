"""DeepMind Control suite tasks as Gymnasium environments: ``gym.make("dmc-cheetah-run")``.

Importing this package is cheap (no dm_control, MuJoCo or torch); see :mod:`sb3_gaara.envs.dmc`
for the observation protocol, :func:`register_dmc_envs` for the ids and :class:`FrameStack` for frame
stacking as the papers' code does it (the ``dmc-*`` envs' ``frame_stack`` keyword).
"""

from sb3_gaara.envs.frame_stack import FrameStack, FrameStacker
from sb3_gaara.envs.registration import DMC_ENTRY_POINT, register_dmc_envs
from sb3_gaara.envs.tasks import (
    ACTION_REPEAT,
    DMC_TASKS,
    EPISODE_LENGTH,
    default_action_repeat,
    default_camera_id,
    dmc_env_id,
)

__all__ = [
    "ACTION_REPEAT",
    "DMC_ENTRY_POINT",
    "DMC_TASKS",
    "EPISODE_LENGTH",
    "FrameStack",
    "FrameStacker",
    "default_action_repeat",
    "default_camera_id",
    "dmc_env_id",
    "register_dmc_envs",
]

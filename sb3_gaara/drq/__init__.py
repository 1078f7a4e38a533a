"""The DrQ family: SAC and DDPG from pixels regularised by image augmentation (DrQ, DrQ-v2, AD(a, d))."""

from sb3_gaara.common.saving import DurableSaves
from sb3_gaara.drq.drq import DrQ
from sb3_gaara.drq.drqv2 import AD_VARIANTS, ADVariant, DrQv2, DrQv2Policy
from sb3_gaara.drq.nstep_buffer import NStepPixelReplayBuffer
from sb3_gaara.drq.tasks import DRQV2_TASKS, drqv2_task_settings

#: The algorithms of the family, each registered in the RL Zoo under its ``zoo_name``.
ALGORITHMS: tuple[type[DurableSaves], ...] = (DrQ, DrQv2)

__all__ = [
    "AD_VARIANTS",
    "ALGORITHMS",
    "DRQV2_TASKS",
    "ADVariant",
    "DrQ",
    "DrQv2",
    "DrQv2Policy",
    "NStepPixelReplayBuffer",
    "drqv2_task_settings",
]

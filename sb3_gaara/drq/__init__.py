"""The DrQ family: SAC and DDPG from pixels regularised by image augmentation (DrQ, DrQ-v2, AD(a, d))."""

from sb3_gaara.drq.drq import DrQ
from sb3_gaara.gaara.gaara_sac import GAARASAC

#: The algorithms of the family, each registered in the RL Zoo under its ``zoo_name``.
ALGORITHMS: tuple[type[GAARASAC], ...] = (DrQ,)

__all__ = ["ALGORITHMS", "DrQ"]

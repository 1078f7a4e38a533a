"""SLAC: stochastic latent actor-critic (Lee et al. 2020), SAC on the latents of a sequential latent variable model."""

from sb3_gaara.common.saving import DurableSaves
from sb3_gaara.common.sequence_buffer import SequenceReplayBuffer, SequenceSamples
from sb3_gaara.slac.latent_model import LatentModel
from sb3_gaara.slac.policies import SLACHistory, SLACPolicy
from sb3_gaara.slac.slac import SLAC

#: The algorithms of the family, each registered in the RL Zoo under its ``zoo_name``.
ALGORITHMS: tuple[type[DurableSaves], ...] = (SLAC,)

__all__ = [
    "ALGORITHMS",
    "SLAC",
    "LatentModel",
    "SLACHistory",
    "SLACPolicy",
    "SequenceReplayBuffer",
    "SequenceSamples",
]

"""sb3-gaara: SAC+GAARA, SAC+AE and contrastive pixel SAC for Stable-Baselines3 and the RL Zoo."""

import os

from sb3_gaara.buffers import AugmentedPixelReplayBuffer, AugmentedReplayBufferSamples
from sb3_gaara.callbacks import (
    AuxiliaryLossCallback,
    ComparisonLossCallback,
    DecoderDiscriminatorLossCallback,
    JointLossCallback,
    ReconstructionLossCallback,
)
from sb3_gaara.envs import register_dmc_envs
from sb3_gaara.envs.pixel_reach import register_pixel_reach
from sb3_gaara.gaara_sac import CURLSAC, GAARASAC, SACAE, VARIANTS
from sb3_gaara.policies import CnnPolicy, GAARAPolicy
from sb3_gaara.torch_layers import ComparisonModule, PixelDecoder, PixelEncoder

# Registration records entry-point strings only: dm_control and MuJoCo load when an env is made.
register_dmc_envs()
register_pixel_reach()

with open(os.path.join(os.path.dirname(__file__), "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "CURLSAC",
    "GAARASAC",
    "SACAE",
    "VARIANTS",
    "AugmentedPixelReplayBuffer",
    "AugmentedReplayBufferSamples",
    "AuxiliaryLossCallback",
    "CnnPolicy",
    "ComparisonLossCallback",
    "ComparisonModule",
    "DecoderDiscriminatorLossCallback",
    "GAARAPolicy",
    "JointLossCallback",
    "PixelDecoder",
    "PixelEncoder",
    "ReconstructionLossCallback",
]

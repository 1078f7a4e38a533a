"""sb3-gaara: SAC+GAARA, SAC+AE, contrastive pixel SAC, DrQ, DrQ-v2, SLAC and Dreamer for Stable-Baselines3 and the RL
Zoo."""

import os

from sb3_gaara import _compat
from sb3_gaara._compat import (
    MOVED_MODULES,
    AuxiliaryLossCallback,
    ComparisonLossCallback,
    DecoderDiscriminatorLossCallback,
    JointLossCallback,
    ReconstructionLossCallback,
)
from sb3_gaara.common.buffers import AugmentedPixelReplayBuffer, AugmentedReplayBufferSamples
from sb3_gaara.common.crops import random_shift
from sb3_gaara.common.preprocessing import SingleFrameWarning
from sb3_gaara.common.torch_layers import PixelDecoder, PixelEncoder
from sb3_gaara.dreamer import Dreamer, DreamerPolicy, cem_plan, evaluate_planners, lambda_returns
from sb3_gaara.drq import AD_VARIANTS, DrQ, DrQv2, DrQv2Policy, NStepPixelReplayBuffer
from sb3_gaara.envs import register_dmc_envs
from sb3_gaara.envs.pixel_reach import register_pixel_reach
from sb3_gaara.gaara.auxiliary_losses import (
    AuxiliaryBatch,
    AuxiliaryLoss,
    ComparisonLoss,
    DecoderDiscriminatorLoss,
    JointLoss,
    ReconstructionLoss,
)
from sb3_gaara.gaara.comparison import ComparisonModule
from sb3_gaara.gaara.gaara_sac import CURLSAC, GAARASAC, SACAE
from sb3_gaara.gaara.policies import CnnPolicy, GAARAPolicy
from sb3_gaara.gaara.variants import VARIANTS
from sb3_gaara.slac import SLAC, SequenceReplayBuffer, SLACPolicy

# Old module paths and class names stay importable (sb3_gaara._compat).
_compat.install()

# Registration records entry-point strings only: dm_control and MuJoCo load when an env is made.
register_dmc_envs()
register_pixel_reach()

with open(os.path.join(os.path.dirname(__file__), "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "AD_VARIANTS",
    "CURLSAC",
    "GAARASAC",
    "MOVED_MODULES",
    "SACAE",
    "SLAC",
    "VARIANTS",
    "AugmentedPixelReplayBuffer",
    "AugmentedReplayBufferSamples",
    "AuxiliaryBatch",
    "AuxiliaryLoss",
    "AuxiliaryLossCallback",
    "CnnPolicy",
    "ComparisonLoss",
    "ComparisonLossCallback",
    "ComparisonModule",
    "DecoderDiscriminatorLoss",
    "DecoderDiscriminatorLossCallback",
    "DrQ",
    "DrQv2",
    "DrQv2Policy",
    "Dreamer",
    "DreamerPolicy",
    "GAARAPolicy",
    "JointLoss",
    "JointLossCallback",
    "NStepPixelReplayBuffer",
    "PixelDecoder",
    "PixelEncoder",
    "ReconstructionLoss",
    "ReconstructionLossCallback",
    "SLACPolicy",
    "SequenceReplayBuffer",
    "SingleFrameWarning",
    "cem_plan",
    "evaluate_planners",
    "lambda_returns",
    "random_shift",
]

"""sb3-gaara: SAC+GAARA, SAC+AE, contrastive pixel SAC, DrQ, DrQ-v2, SLAC and Dreamer for Stable-Baselines3 and the RL
Zoo."""

import importlib
import os
import sys

from sb3_gaara.common.buffers import AugmentedPixelReplayBuffer, AugmentedReplayBufferSamples
from sb3_gaara.common.crops import random_shift
from sb3_gaara.common.preprocessing import SingleFrameWarning
from sb3_gaara.common.torch_layers import ComparisonModule, PixelDecoder, PixelEncoder
from sb3_gaara.dreamer import Dreamer, DreamerPolicy, cem_plan, evaluate_planners, lambda_returns
from sb3_gaara.drq import AD_VARIANTS, DrQ, DrQv2, DrQv2Policy, NStepPixelReplayBuffer
from sb3_gaara.envs import register_dmc_envs
from sb3_gaara.envs.pixel_reach import register_pixel_reach
from sb3_gaara.gaara.auxiliary_losses import (
    AuxiliaryBatch,
    AuxiliaryLoss,
    AuxiliaryLossCallback,
    ComparisonLoss,
    ComparisonLossCallback,
    DecoderDiscriminatorLoss,
    DecoderDiscriminatorLossCallback,
    JointLoss,
    JointLossCallback,
    ReconstructionLoss,
    ReconstructionLossCallback,
)
from sb3_gaara.gaara.gaara_sac import CURLSAC, GAARASAC, SACAE
from sb3_gaara.gaara.policies import CnnPolicy, GAARAPolicy
from sb3_gaara.gaara.variants import VARIANTS
from sb3_gaara.slac import SLAC, SequenceReplayBuffer, SLACPolicy

#: Module paths of sb3-gaara 0.1, where each module now lives. Saved models and replay buffers pickle the
#: paths of their classes, and users import them: the old paths stay importable as the same modules.
MOVED_MODULES = {
    "buffers": "sb3_gaara.common.buffers",
    "crops": "sb3_gaara.common.crops",
    "cuda_graphs": "sb3_gaara.common.cuda_graphs",
    "losses": "sb3_gaara.common.losses",
    "preprocessing": "sb3_gaara.common.preprocessing",
    "torch_layers": "sb3_gaara.common.torch_layers",
    "callbacks": "sb3_gaara.gaara.auxiliary_losses",
    "gaara_sac": "sb3_gaara.gaara.gaara_sac",
    "policies": "sb3_gaara.gaara.policies",
}
for _old, _new in MOVED_MODULES.items():
    globals()[_old] = sys.modules.setdefault(f"{__name__}.{_old}", importlib.import_module(_new))

# Registration records entry-point strings only: dm_control and MuJoCo load when an env is made.
register_dmc_envs()
register_pixel_reach()

with open(os.path.join(os.path.dirname(__file__), "version.txt")) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "AD_VARIANTS",
    "CURLSAC",
    "GAARASAC",
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

"""Names and module paths of earlier versions, kept importable and unpicklable; canonical code never imports this.

Saved models and replay buffers pickle the import paths of their classes, and users' scripts import the old names, so
every module that moved keeps its old path as an alias of the same module object, every renamed class keeps its old
name as an attribute of the module it now lives in, and every name that moved stays reachable from its old module.
:mod:`sb3_gaara` imports this module once, for these side effects, and re-exports the old names it lists in
``__all__``.
"""

from __future__ import annotations

import importlib
import sys

from sb3_gaara.common import losses, torch_layers
from sb3_gaara.gaara import auxiliary_losses, comparison
from sb3_gaara.gaara.auxiliary_losses import (
    AuxiliaryLoss,
    ComparisonLoss,
    DecoderDiscriminatorLoss,
    JointLoss,
    ReconstructionLoss,
)

#: Module paths of earlier versions (relative to ``sb3_gaara``), and where each module now lives. The first block is
#: sb3-gaara 0.1's flat layout; the rest moved when ``common/`` stopped holding what one family alone uses and families
#: stopped importing each other.
MOVED_MODULES: dict[str, str] = {
    "buffers": "sb3_gaara.common.buffers",
    "crops": "sb3_gaara.common.crops",
    "cuda_graphs": "sb3_gaara.gaara.cuda_graphs",
    "losses": "sb3_gaara.common.losses",
    "preprocessing": "sb3_gaara.common.preprocessing",
    "torch_layers": "sb3_gaara.common.torch_layers",
    "callbacks": "sb3_gaara.gaara.auxiliary_losses",
    "gaara_sac": "sb3_gaara.gaara.gaara_sac",
    "policies": "sb3_gaara.gaara.policies",
    "common.cuda_graphs": "sb3_gaara.gaara.cuda_graphs",
    "slac.sequence_buffer": "sb3_gaara.common.sequence_buffer",
}

#: sb3-gaara 0.1's names of the auxiliary losses (they were SB3-style callbacks then)
AuxiliaryLossCallback = AuxiliaryLoss
ReconstructionLossCallback = ReconstructionLoss
ComparisonLossCallback = ComparisonLoss
JointLossCallback = JointLoss
DecoderDiscriminatorLossCallback = DecoderDiscriminatorLoss
RENAMED_CLASSES = {
    "AuxiliaryLossCallback": AuxiliaryLoss,
    "ReconstructionLossCallback": ReconstructionLoss,
    "ComparisonLossCallback": ComparisonLoss,
    "JointLossCallback": JointLoss,
    "DecoderDiscriminatorLossCallback": DecoderDiscriminatorLoss,
}


#: names that moved from one module to another: (old module, name) -> the module they live in now (GAARA's comparison
#: left ``common/``, which no longer holds what one family alone uses)
MOVED_NAMES = {
    (losses, "comparison_logits"): comparison,
    (losses, "info_nce_loss"): comparison,
    (losses, "anneal_comparison_lambda"): comparison,
    (torch_layers, "ComparisonModule"): comparison,
}


def install() -> None:
    """Make every old module path an alias of its module (``sys.modules`` and the parent package's attribute), and
    every old class name an attribute of the module the class lives in (a pickle of sb3-gaara 0.1 names
    ``sb3_gaara.callbacks.ReconstructionLossCallback``)."""
    for old, new in MOVED_MODULES.items():
        module = sys.modules.setdefault(f"sb3_gaara.{old}", importlib.import_module(new))
        parent, _, name = f"sb3_gaara.{old}".rpartition(".")
        setattr(importlib.import_module(parent), name, module)
    for name, cls in RENAMED_CLASSES.items():
        setattr(auxiliary_losses, name, cls)
    for (module, name), home in MOVED_NAMES.items():
        setattr(module, name, getattr(home, name))


__all__ = [
    "MOVED_MODULES",
    "AuxiliaryLossCallback",
    "ComparisonLossCallback",
    "DecoderDiscriminatorLossCallback",
    "JointLossCallback",
    "ReconstructionLossCallback",
]

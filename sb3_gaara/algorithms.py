"""Every algorithm of the package, each with its RL Zoo name: the one list that the zoo's registration, the Optuna
samplers and the study read. A new family adds its ``ALGORITHMS`` tuple here."""

from __future__ import annotations

from sb3_gaara.common.saving import DurableSaves
from sb3_gaara.dreamer import ALGORITHMS as DREAMER_ALGORITHMS
from sb3_gaara.drq import ALGORITHMS as DRQ_ALGORITHMS
from sb3_gaara.gaara.gaara_sac import ALGORITHMS as GAARA_ALGORITHMS
from sb3_gaara.slac import ALGORITHMS as SLAC_ALGORITHMS

#: the GAARA family (GAARASAC, SACAE, CURLSAC), the DrQ family (DrQ, DrQv2), then SLAC, then Dreamer
ALGORITHMS: tuple[type[DurableSaves], ...] = (
    *GAARA_ALGORITHMS,
    *DRQ_ALGORITHMS,
    *SLAC_ALGORITHMS,
    *DREAMER_ALGORITHMS,
)
#: ``--algo`` name -> class
BY_ZOO_NAME: dict[str, type[DurableSaves]] = {algorithm.zoo_name: algorithm for algorithm in ALGORITHMS}

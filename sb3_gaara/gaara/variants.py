"""The variants of SAC+GAARA: what each one trains the encoder with. The one table of them.

``GAARASAC(variant=...)`` builds its policy and auxiliary losses from it; the study's agents, the RL Zoo's
algorithm names and the Optuna search spaces are derived from it (``SACAE`` and ``CURLSAC`` are
``GAARASAC`` with another ``default_variant``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sb3_gaara.gaara.auxiliary_losses import (
    AuxiliaryLoss,
    ComparisonLoss,
    DecoderDiscriminatorLoss,
    JointLoss,
    ReconstructionLoss,
)


@dataclass(frozen=True)
class Variant:
    """What one named variant trains the encoder with.

    :param auxiliary_losses: the auxiliary losses run after the SAC updates, in order
    :param use_decoder: whether the policy builds the pixel decoder
    :param use_comparison: whether the policy builds the bilinear ``W``
    :param anchor_crop: crop of the contrastive anchor, ``"center"`` or ``"random"``
    :param label: name in curves, plots and tables
    :param source: where the variant comes from
    """

    auxiliary_losses: tuple[type[AuxiliaryLoss], ...]
    use_decoder: bool
    use_comparison: bool
    anchor_crop: str
    label: str
    source: str

    @property
    def anneals(self) -> bool:
        """Whether a loss of the variant is weighted by the annealed comparison weight ``c``."""
        return any(loss.anneals for loss in self.auxiliary_losses)

    @property
    def views(self) -> frozenset[str]:
        """The views of the contrastive pair its losses read (``"anchor"``, ``"positive"``): what its samples carry."""
        return frozenset(view for loss in self.auxiliary_losses for view in loss.views)


VARIANTS: dict[str, Variant] = {
    "gaara": Variant(
        (ReconstructionLoss, ComparisonLoss),
        use_decoder=True,
        use_comparison=True,
        anchor_crop="center",
        label="GAARA",
        source="SAC+GAARA §4, Algorithm 1 (default)",
    ),
    "sac_ae": Variant(
        (ReconstructionLoss,),
        use_decoder=True,
        use_comparison=False,
        anchor_crop="center",
        label="SAC+AE",
        source="SAC+AE (Yarats et al. 2019): reconstruction only",
    ),
    "contrastive": Variant(
        (ComparisonLoss,),
        use_decoder=False,
        use_comparison=True,
        anchor_crop="center",
        label="Contrastive",
        source="CURL-like: comparison loss only, no decoder (SAC+GAARA baseline)",
    ),
    "pixel_sac": Variant(
        (),
        use_decoder=False,
        use_comparison=False,
        anchor_crop="center",
        label="SAC:pixel",
        source="SAC from pixels, the encoder trained by the critic alone (SAC+AE's SAC:pixel; DrQ without augmentation)",
    ),
    "joint": Variant(
        (JointLoss,),
        use_decoder=True,
        use_comparison=True,
        anchor_crop="center",
        label="GAARA-joint",
        source="SAC+GAARA §5.1: one joint reconstruction+comparison step",
    ),
    "random_anchor": Variant(
        (ReconstructionLoss, ComparisonLoss),
        use_decoder=True,
        use_comparison=True,
        anchor_crop="random",
        label="GAARA-random-anchor",
        source="SAC+GAARA §5.2: random-crop anchor",
    ),
    "decoder_discriminator": Variant(
        (ReconstructionLoss, DecoderDiscriminatorLoss),
        use_decoder=True,
        use_comparison=False,
        anchor_crop="center",
        label="GAARA-decoder-disc",
        source="SAC+GAARA §5.3: decoder as discriminator (collapses in the paper)",
    ),
}

"""The auxiliary (representation) losses of SAC+GAARA and its variants.

SB3's ``SAC.train`` has no hook for representation losses, so every pixel-SAC variant in the wild is a
copy of it. Here ``GAARASAC._update`` runs the SAC updates once, then each :class:`AuxiliaryLoss` of
its variant in order (reconstruction, then comparison). A variant is a different list of losses, not a
different SAC.

A loss is given what it reads: the policy's modules, the batch's images (:class:`AuxiliaryBatch`) and the
comparison weight ``c``. It returns the loss to apply and the values to log, and never writes the model's
state: the model applies the loss with the loss's optimizer and anneals ``c``. ``c`` is a float in the
eager update and a device tensor inside a CUDA graph (:mod:`sb3_gaara.gaara.cuda_graphs`).

Each loss owns its optimizer (an ``nn.Module`` attribute, so that ``model.save`` keeps it under
``auxiliary_losses.<name>.optimizer``). The networks it trains (encoder, decoder, ``W``) live in the
policy, and ``model.save`` keeps them there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_gaara.common.losses import preprocess_reconstruction_target, reconstruction_loss
from sb3_gaara.gaara.comparison import comparison_logits, info_nce_loss

if TYPE_CHECKING:
    from sb3_gaara.common.buffers import AugmentedReplayBufferSamples
    from sb3_gaara.common.torch_layers import PixelDecoder, PixelEncoder
    from sb3_gaara.gaara.policies import GAARAPolicy


class AuxiliaryBatch(NamedTuple):
    """The images of one gradient step that the auxiliary losses read.

    :param observations: uint8 center crops (the reconstruction target is built from them)
    :param scaled: ``observations`` as floats in ``[0, 1]``, in the encoder's memory format
    :param anchor: the contrastive anchor, scaled: ``scaled`` itself (the same tensor) with the center
        anchor, a random crop with ``anchor_crop="random"``; ``None`` when no loss of the variant reads it
    :param positive: the random crop of the same observations, scaled; ``None`` when no loss reads it
    :param conv_features: the encoder's conv maps of ``scaled``, computed after the critic's step with their
        graph (the actor step used them detached). Only the first loss of a step receives them: its step moves
        the encoder, after which they are stale. ``None`` otherwise.
    """

    observations: th.Tensor
    scaled: th.Tensor
    anchor: th.Tensor | None
    positive: th.Tensor | None
    conv_features: th.Tensor | None


@dataclass(frozen=True)
class AuxiliarySettings:
    """The hyper-parameters of the auxiliary losses (``GAARASAC``'s arguments of the same names)."""

    encoder_lr: float
    decoder_lr: float
    comparison_lr: float
    decoder_latent_lambda: float
    decoder_weight_lambda: float


class AuxiliaryLoss(nn.Module):
    """One auxiliary representation-learning loss, applied by ``GAARASAC`` after the SAC updates.

    A subclass builds its optimizer in ``__init__`` from the policy's parameters and computes its loss in
    :meth:`forward`. It is an ``nn.Module`` only so that the model can reach ``auxiliary_losses.<name>.optimizer``
    when saving; a parameter a custom subclass registers is saved with the model too.
    """

    #: key in ``model.auxiliary_losses`` (and in the saved files)
    name: ClassVar[str] = "auxiliary"
    #: whether each applied step of this loss anneals the comparison weight (SAC+GAARA §4.4)
    anneals: ClassVar[bool] = False
    #: the views of :class:`AuxiliaryBatch` the loss reads besides the observations: ``"anchor"``, ``"positive"``
    views: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, policy: GAARAPolicy, settings: AuxiliarySettings) -> None:
        super().__init__()
        self.optimizer = th.optim.Adam(self.parameter_groups(policy, settings), **policy.adam_kwargs())

    def parameter_groups(self, policy: GAARAPolicy, settings: AuxiliarySettings) -> list[dict[str, Any]]:
        """The Adam parameter groups this loss trains."""
        raise NotImplementedError

    def forward(  # type: ignore[override]
        self, policy: GAARAPolicy, batch: AuxiliaryBatch, comparison_lambda: float | th.Tensor
    ) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        """The loss to apply with :attr:`optimizer`, and the detached values to log under ``train/``."""
        raise NotImplementedError


def auxiliary_batch(
    policy: GAARAPolicy,
    losses: Sequence[AuxiliaryLoss],
    replay_data: AugmentedReplayBufferSamples,
    obs: th.Tensor,
    conv_features: th.Tensor | None,
) -> AuxiliaryBatch:
    """The images that ``losses`` read from one batch, each view scaled once by ``policy`` (``obs``: the batch's
    observations scaled already; ``conv_features``: see :class:`AuxiliaryBatch`).

    The replay buffer draws the views the losses declare (``contrastive_views``, set by ``GAARASAC._setup_model`` and
    ``load_replay_buffer``) and leaves the others ``None``.
    """
    views = {view for auxiliary in losses for view in auxiliary.views}
    sampled = {"anchor": replay_data.obs_anchor, "positive": replay_data.obs_pos}
    missing = sorted(view for view in views if sampled[view] is None)
    if missing:
        raise ValueError(
            f"The auxiliary losses read the views {missing}, which the replay sample lacks: build the replay buffer "
            f"with contrastive_views={tuple(sorted(views))!r}."
        )
    anchor = positive = None
    if replay_data.obs_anchor is not None and "anchor" in views:
        center = replay_data.obs_anchor is replay_data.observations
        anchor = obs if center else policy.scale_images(replay_data.obs_anchor)
    if replay_data.obs_pos is not None and "positive" in views:
        positive = policy.scale_images(replay_data.obs_pos)
    return AuxiliaryBatch(replay_data.observations, obs, anchor, positive, conv_features)


# ---------------------------------------------------------------------------------------------- parts


def _decoder(policy: GAARAPolicy) -> PixelDecoder:
    if policy.decoder is None:
        raise RuntimeError("This auxiliary loss needs the pixel decoder: build the policy with use_decoder=True.")
    return policy.decoder


def _comparison_weight(policy: GAARAPolicy) -> th.Tensor:
    if policy.comparison is None:
        raise RuntimeError("This auxiliary loss needs the comparison module: build the policy with use_comparison=True.")
    return policy.comparison.W


def _encoder_group(policy: GAARAPolicy, settings: AuxiliarySettings) -> dict[str, Any]:
    """Adam parameter group of the critic's encoder in an auxiliary step."""
    return {"params": list(policy.critic_encoder.parameters()), "lr": settings.encoder_lr}


def _decoder_group(policy: GAARAPolicy, settings: AuxiliarySettings) -> dict[str, Any]:
    """Adam parameter group of the decoder, with the weight decay ``lambda_theta`` of SAC+AE's eq. 8."""
    return {
        "params": list(_decoder(policy).parameters()),
        "lr": settings.decoder_lr,
        "weight_decay": settings.decoder_weight_lambda,
    }


def _comparison_group(policy: GAARAPolicy, settings: AuxiliarySettings) -> dict[str, Any]:
    """Adam parameter group of the comparison matrix ``W``."""
    return {"params": [_comparison_weight(policy)], "lr": settings.comparison_lr}


def _encode(encoder: PixelEncoder, images: th.Tensor, conv_features: th.Tensor | None) -> th.Tensor:
    """The code of ``images``, from their conv features when given (the same pass, without recomputing it)."""
    return encoder.forward_head(conv_features) if conv_features is not None else encoder(images)


def _anchor_conv_features(batch: AuxiliaryBatch) -> th.Tensor | None:
    """``batch.conv_features`` when the anchor is the center crop they were computed from."""
    return batch.conv_features if batch.anchor is batch.scaled else None


def _reconstruction(policy: GAARAPolicy, batch: AuxiliaryBatch, decoder_latent_lambda: float) -> th.Tensor:
    """SAC+AE's RAE loss of the center-cropped observations."""
    decoder = _decoder(policy)
    latent = _encode(policy.critic_encoder, batch.scaled, batch.conv_features)
    # Same layout as the decoder's output: see preprocess_reconstruction_target's memory_format.
    target = preprocess_reconstruction_target(batch.observations, memory_format=decoder.memory_format)
    return reconstruction_loss(decoder(latent), target, latent, decoder_latent_lambda)


def _contrastive(policy: GAARAPolicy, anchor: th.Tensor, positive: th.Tensor, conv_features: th.Tensor | None) -> th.Tensor:
    """Unweighted InfoNCE between the anchor (online encoder) and the positive (EMA target encoder, no gradient)."""
    z_anchor = _encode(policy.critic_encoder, anchor, conv_features)
    with th.no_grad():
        z_pos = policy.target_encoder(positive)
    return info_nce_loss(comparison_logits(z_anchor, z_pos, _comparison_weight(policy)))


def _views(batch: AuxiliaryBatch) -> tuple[th.Tensor, th.Tensor]:
    if batch.anchor is None or batch.positive is None:
        raise ValueError("This auxiliary loss reads the anchor and the positive: build the batch with both views.")
    return batch.anchor, batch.positive


# ---------------------------------------------------------------------------------------------- the losses


class ReconstructionLoss(AuxiliaryLoss):
    """SAC+AE's reconstruction step (SAC+GAARA Algorithm 1, step 4a): encoder and decoder, one optimizer.

    The decoder's parameter group carries the weight decay ``decoder_weight_lambda`` (the ``lambda_theta``
    term of eq. 8); the encoder's has none.
    """

    name = "reconstruction"

    def __init__(self, policy: GAARAPolicy, settings: AuxiliarySettings) -> None:
        super().__init__(policy, settings)
        self.decoder_latent_lambda = settings.decoder_latent_lambda

    def parameter_groups(self, policy: GAARAPolicy, settings: AuxiliarySettings) -> list[dict[str, Any]]:
        return [_encoder_group(policy, settings), _decoder_group(policy, settings)]

    def forward(  # type: ignore[override]
        self, policy: GAARAPolicy, batch: AuxiliaryBatch, comparison_lambda: float | th.Tensor
    ) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        loss = _reconstruction(policy, batch, self.decoder_latent_lambda)
        return loss, {"reconstruction_loss": loss.detach()}


class ComparisonLoss(AuxiliaryLoss):
    """GAARA's comparison step (4b), ``c * InfoNCE(z_a W z_pos^T)``; the model anneals ``c`` after it (4c).

    The anchor goes through the online encoder with gradient, the positive through the EMA target
    encoder without (SAC+GAARA §4.2). One optimizer holds the encoder and ``W``.
    """

    name = "comparison"
    anneals = True
    views = frozenset({"anchor", "positive"})

    def parameter_groups(self, policy: GAARAPolicy, settings: AuxiliarySettings) -> list[dict[str, Any]]:
        return [_encoder_group(policy, settings), _comparison_group(policy, settings)]

    def forward(  # type: ignore[override]
        self, policy: GAARAPolicy, batch: AuxiliaryBatch, comparison_lambda: float | th.Tensor
    ) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        anchor, positive = _views(batch)
        contrastive = _contrastive(policy, anchor, positive, _anchor_conv_features(batch))
        loss = comparison_lambda * contrastive
        return loss, {"comparison_loss": loss.detach(), "contrastive_loss": contrastive.detach()}


class JointLoss(AuxiliaryLoss):
    """§5.1, the "discriminative decoder": ``RAE + c * InfoNCE`` in one step of encoder, decoder and ``W``.

    The anchor is encoded in a pass of its own, even when it is the center crop the reconstruction encodes.
    The paper reports this variant below SAC+AE; it stays an ablation.
    """

    name = "joint"
    anneals = True
    views = frozenset({"anchor", "positive"})

    def __init__(self, policy: GAARAPolicy, settings: AuxiliarySettings) -> None:
        super().__init__(policy, settings)
        self.decoder_latent_lambda = settings.decoder_latent_lambda

    def parameter_groups(self, policy: GAARAPolicy, settings: AuxiliarySettings) -> list[dict[str, Any]]:
        return [_encoder_group(policy, settings), _decoder_group(policy, settings), _comparison_group(policy, settings)]

    def forward(  # type: ignore[override]
        self, policy: GAARAPolicy, batch: AuxiliaryBatch, comparison_lambda: float | th.Tensor
    ) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        reconstruction = _reconstruction(policy, batch, self.decoder_latent_lambda)
        anchor, positive = _views(batch)
        contrastive = _contrastive(policy, anchor, positive, conv_features=None)
        comparison = comparison_lambda * contrastive
        metrics = {
            "reconstruction_loss": reconstruction.detach(),
            "comparison_loss": comparison.detach(),
            "contrastive_loss": contrastive.detach(),
        }
        return reconstruction + comparison, metrics


class DecoderDiscriminatorLoss(AuxiliaryLoss):
    """§5.3, the decoder as discriminator: ``c * ||dec(z_anchor) - dec(z_pos)||^2`` with the decoder frozen.

    Only the encoder is stepped; the paper reports that this variant collapses, so it is an ablation,
    never a default.
    """

    name = "decoder_discriminator"
    anneals = True
    views = frozenset({"anchor", "positive"})

    def parameter_groups(self, policy: GAARAPolicy, settings: AuxiliarySettings) -> list[dict[str, Any]]:
        return [_encoder_group(policy, settings)]

    def forward(  # type: ignore[override]
        self, policy: GAARAPolicy, batch: AuxiliaryBatch, comparison_lambda: float | th.Tensor
    ) -> tuple[th.Tensor, dict[str, th.Tensor]]:
        decoder = _decoder(policy)
        anchor, positive = _views(batch)
        z_anchor = _encode(policy.critic_encoder, anchor, _anchor_conv_features(batch))
        with th.no_grad():
            decoded_pos = decoder(policy.target_encoder(positive))
        decoder.requires_grad_(False)  # frozen: the gradient reaches the encoder only
        try:
            distance = F.mse_loss(decoder(z_anchor), decoded_pos)
        finally:
            decoder.requires_grad_(True)
        loss = comparison_lambda * distance
        return loss, {"comparison_loss": loss.detach(), "decoder_distance": distance.detach()}

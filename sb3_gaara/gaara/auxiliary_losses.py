"""Auxiliary-loss steps of SAC+GAARA and its variants, plugged into ``GAARASAC.train``.

SB3's ``SAC.train`` has no hook for representation losses, so every pixel-SAC variant in the wild is a
copy of it. Here ``GAARASAC.train`` runs the SAC updates once, then calls each
:class:`AuxiliaryLossCallback` of the model in order (reconstruction, then comparison, whose step
also anneals the comparison weight). A variant is a different list of callbacks, not a different SAC.

Each callback owns its optimizer. The networks it trains (encoder, decoder, ``W``) live in the policy,
so ``model.save`` keeps them with the policy and the optimizers with the callbacks.

A callback is given the comparison weight ``c`` as an argument and never writes the model's state: the
model anneals ``c`` after a step whose callback reports an applied annealing step. The weight is a float in
the eager update and a device tensor inside a CUDA graph (:mod:`sb3_gaara.common.cuda_graphs`), whose value the
host feeds in before each replay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch as th
import torch.nn.functional as F
from torch import nn

from sb3_gaara.common.buffers import AugmentedReplayBufferSamples
from sb3_gaara.common.losses import (
    comparison_logits,
    info_nce_loss,
    preprocess_reconstruction_target,
    reconstruction_loss,
)

if TYPE_CHECKING:
    from sb3_gaara.common.torch_layers import PixelDecoder
    from sb3_gaara.gaara.gaara_sac import GAARASAC
    from sb3_gaara.gaara.policies import GAARAPolicy


class AuxiliaryLossCallback(nn.Module):
    """One auxiliary representation-learning step, called by ``GAARASAC`` after the SAC updates.

    Subclasses build their optimizer in :meth:`init_callback` and do one gradient step in
    :meth:`on_gradient_step`, returning the scalars to log under ``train/``. They are ``nn.Module``s
    only so that the model can reach ``auxiliary_losses.<name>.optimizer`` when saving; any parameter a
    custom subclass registers is saved with the model too.
    """

    #: key in ``model.auxiliary_losses`` and prefix of the logged metrics
    name: str = "auxiliary"
    #: whether each applied step of this loss anneals the comparison weight (SAC+GAARA §4.4)
    anneals: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.optimizer: th.optim.Optimizer | None = None

    def init_callback(self, model: GAARASAC) -> None:
        """Build the optimizer once the policy exists."""
        raise NotImplementedError

    def on_gradient_step(
        self, model: GAARASAC, replay_data: AugmentedReplayBufferSamples, comparison_lambda: float | th.Tensor
    ) -> tuple[dict[str, th.Tensor], bool]:
        """Do one update on ``replay_data`` with the comparison weight ``comparison_lambda``.

        :return: the detached metrics to log, and whether the update was applied (``False`` only when
            ``skip_nonfinite_updates`` dropped it)
        """
        raise NotImplementedError


def _decoder(policy: GAARAPolicy) -> PixelDecoder:
    if policy.decoder is None:
        raise RuntimeError("This auxiliary loss needs the pixel decoder: build the policy with use_decoder=True.")
    return policy.decoder


def _comparison_weight(policy: GAARAPolicy) -> th.Tensor:
    if policy.comparison is None:
        raise RuntimeError("This auxiliary loss needs the comparison module: build the policy with use_comparison=True.")
    return policy.comparison.W


def _encoder_group(model: GAARASAC) -> dict[str, Any]:
    """Adam parameter group of the critic's encoder in an auxiliary step."""
    return {"params": list(model.policy.critic_encoder.parameters()), "lr": model.encoder_lr}


def _decoder_group(model: GAARASAC) -> dict[str, Any]:
    """Adam parameter group of the decoder, with the weight decay ``lambda_theta`` of SAC+AE's eq. 8."""
    return {
        "params": list(_decoder(model.policy).parameters()),
        "lr": model.decoder_lr,
        "weight_decay": model.decoder_weight_lambda,
    }


def _comparison_group(model: GAARASAC) -> dict[str, Any]:
    """Adam parameter group of the comparison matrix ``W``."""
    return {"params": [_comparison_weight(model.policy)], "lr": model.comparison_lr}


def _reconstruction_loss(model: GAARASAC, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """SAC+AE's RAE loss of the center-cropped observations, and the code it was computed from."""
    policy = model.policy
    decoder = _decoder(policy)
    latent = policy.encode(obs)
    # Same layout as the decoder's output: see preprocess_reconstruction_target's memory_format.
    target = preprocess_reconstruction_target(obs, memory_format=decoder.memory_format)
    return reconstruction_loss(decoder(latent), target, latent, model.decoder_latent_lambda), latent


def _contrastive_loss(model: GAARASAC, replay_data: AugmentedReplayBufferSamples) -> th.Tensor:
    """Unweighted InfoNCE between the anchor (online encoder) and the positive (target encoder)."""
    policy = model.policy
    z_anchor = policy.encode(replay_data.obs_anchor)
    with th.no_grad():
        z_pos = policy.encode(replay_data.obs_pos, target=True)
    return info_nce_loss(comparison_logits(z_anchor, z_pos, _comparison_weight(policy)))


class ReconstructionLossCallback(AuxiliaryLossCallback):
    """SAC+AE's reconstruction step (ALGORITHM step 4a): encoder and decoder, one optimizer.

    The decoder's parameter group carries the weight decay ``decoder_weight_lambda`` (the ``lambda_theta``
    term of eq. 8); the encoder's has none.
    """

    name = "reconstruction"

    def init_callback(self, model: GAARASAC) -> None:
        policy = model.policy
        self.optimizer = th.optim.Adam(
            [
                _encoder_group(model),
                _decoder_group(model),
            ],
            **policy.adam_kwargs(),
        )

    def on_gradient_step(
        self, model: GAARASAC, replay_data: AugmentedReplayBufferSamples, comparison_lambda: float | th.Tensor
    ) -> tuple[dict[str, th.Tensor], bool]:
        assert self.optimizer is not None
        loss, _ = _reconstruction_loss(model, replay_data.observations)
        applied = model.optimize(loss, self.optimizer)
        return {"reconstruction_loss": loss.detach()}, applied


class ComparisonLossCallback(AuxiliaryLossCallback):
    """GAARA's comparison step (4b), ``c * InfoNCE(z_a W z_pos^T)``; the model anneals ``c`` after it (4c).

    The anchor goes through the online encoder with gradient, the positive through the EMA target
    encoder without (SAC+GAARA §4.2). One optimizer holds the encoder and ``W``.
    """

    name = "comparison"
    anneals = True

    def init_callback(self, model: GAARASAC) -> None:
        policy = model.policy
        self.optimizer = th.optim.Adam(
            [
                _encoder_group(model),
                _comparison_group(model),
            ],
            **policy.adam_kwargs(),
        )

    def on_gradient_step(
        self, model: GAARASAC, replay_data: AugmentedReplayBufferSamples, comparison_lambda: float | th.Tensor
    ) -> tuple[dict[str, th.Tensor], bool]:
        assert self.optimizer is not None
        contrastive = _contrastive_loss(model, replay_data)
        loss = comparison_lambda * contrastive
        applied = model.optimize(loss, self.optimizer)
        return {"comparison_loss": loss.detach(), "contrastive_loss": contrastive.detach()}, applied


class JointLossCallback(AuxiliaryLossCallback):
    """§5.1, the "discriminative decoder": ``RAE + c * InfoNCE`` in one step of encoder, decoder and ``W``.

    The paper reports it below SAC+AE; it stays an ablation.
    """

    name = "joint"
    anneals = True

    def init_callback(self, model: GAARASAC) -> None:
        policy = model.policy
        self.optimizer = th.optim.Adam(
            [
                _encoder_group(model),
                _decoder_group(model),
                _comparison_group(model),
            ],
            **policy.adam_kwargs(),
        )

    def on_gradient_step(
        self, model: GAARASAC, replay_data: AugmentedReplayBufferSamples, comparison_lambda: float | th.Tensor
    ) -> tuple[dict[str, th.Tensor], bool]:
        assert self.optimizer is not None
        reconstruction, _ = _reconstruction_loss(model, replay_data.observations)
        contrastive = _contrastive_loss(model, replay_data)
        comparison = comparison_lambda * contrastive
        loss = reconstruction + comparison
        applied = model.optimize(loss, self.optimizer)
        metrics = {
            "reconstruction_loss": reconstruction.detach(),
            "comparison_loss": comparison.detach(),
            "contrastive_loss": contrastive.detach(),
        }
        return metrics, applied


class DecoderDiscriminatorLossCallback(AuxiliaryLossCallback):
    """§5.3, the decoder as discriminator: ``c * ||dec(z_anchor) - dec(z_pos)||^2`` with the decoder frozen.

    Only the encoder is stepped; the paper reports that this variant collapses, so it is an ablation,
    never a default.
    """

    name = "decoder_discriminator"
    anneals = True

    def init_callback(self, model: GAARASAC) -> None:
        self.optimizer = th.optim.Adam(
            model.policy.critic_encoder.parameters(), lr=model.encoder_lr, **model.policy.adam_kwargs()
        )

    def on_gradient_step(
        self, model: GAARASAC, replay_data: AugmentedReplayBufferSamples, comparison_lambda: float | th.Tensor
    ) -> tuple[dict[str, th.Tensor], bool]:
        assert self.optimizer is not None
        policy = model.policy
        decoder = _decoder(policy)
        z_anchor = policy.encode(replay_data.obs_anchor)
        with th.no_grad():
            decoded_pos = decoder(policy.encode(replay_data.obs_pos, target=True))
        decoder.requires_grad_(False)  # frozen: the gradient reaches the encoder only
        try:
            distance = F.mse_loss(decoder(z_anchor), decoded_pos)
        finally:
            decoder.requires_grad_(True)
        loss = comparison_lambda * distance
        applied = model.optimize(loss, self.optimizer)
        return {"comparison_loss": loss.detach(), "decoder_distance": distance.detach()}, applied

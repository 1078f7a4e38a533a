"""The settings of :class:`~sb3_gaara.gaara.gaara_sac.GAARASAC` checked, and turned into its buffer's and policy's
arguments: functions of the values, so that the algorithm's constructor and ``_setup_model`` read like SB3's.

Each check rejects a setting that cannot mean what the user wants, before anything is built, with a message that
names the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sb3_gaara.common.buffers import check_contrastive_views
from sb3_gaara.gaara.variants import VARIANTS

#: ``comparison_anneal`` values: how the annealed weight ``c`` acts on the comparison step
COMPARISON_ANNEALS = ("loss", "lr")
#: ``augmentation`` values: ``None`` (the center crops as sampled) or ``"shift"`` (DrQ's random shifts)
AUGMENTATIONS = (None, "shift")


def _is_integer(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def check_settings(
    *,
    variant: str,
    actor_update_freq: int,
    decoder_update_freq: int,
    encoder_tau: float,
    decoder_latent_lambda: float,
    decoder_weight_lambda: float,
    encoder_lr: float,
    decoder_lr: float,
    comparison_lr: float,
    ent_coef_lr: float,
    comparison_lambda: float,
    comparison_lambda_min: float,
    comparison_lambda_decay: float,
    comparison_anneal: str,
    init_gradient_steps: int | None,
    reconstruction_log_interval: int,
    augmentation: str | None,
    augmentation_pad: int,
    target_augmentations: int,
    q_augmentations: int,
) -> None:
    """Reject GAARASAC's settings that cannot mean what the user wants, naming the fix (its arguments of the same
    names; ``comparison_lambda`` is the initial weight)."""
    for name, value in (("actor_update_freq", actor_update_freq), ("decoder_update_freq", decoder_update_freq)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer (number of gradient steps), got {value!r}.")
    if not 0.0 <= encoder_tau <= 1.0:
        raise ValueError(f"encoder_tau must lie in [0, 1], got {encoder_tau}.")
    non_negative = {
        "decoder_latent_lambda": decoder_latent_lambda,
        "decoder_weight_lambda": decoder_weight_lambda,
        "encoder_lr": encoder_lr,
        "decoder_lr": decoder_lr,
        "comparison_lr": comparison_lr,
        "ent_coef_lr": ent_coef_lr,
        "comparison_lambda": comparison_lambda,
    }
    for name, amount in non_negative.items():
        if amount < 0:
            raise ValueError(f"{name} must be non-negative, got {amount}.")
    if comparison_anneal not in COMPARISON_ANNEALS:
        raise ValueError(
            f"comparison_anneal must be one of {COMPARISON_ANNEALS}, got {comparison_anneal!r}: 'loss' weights "
            "the comparison loss by c (the paper's form), 'lr' scales the comparison optimizer's step by c."
        )
    if comparison_anneal == "lr" and variant == "joint":
        raise ValueError(
            "comparison_anneal='lr' scales the comparison optimizer's step, but variant='joint' applies the "
            "reconstruction in the same step: use comparison_anneal='loss' with it."
        )
    if init_gradient_steps is not None and (not _is_integer(init_gradient_steps) or init_gradient_steps < 0):
        raise ValueError(
            f"init_gradient_steps must be a non-negative integer (0: no burst) or None (as many as learning_starts), "
            f"got {init_gradient_steps!r}."
        )
    interval = reconstruction_log_interval
    if not _is_integer(interval) or interval < 0:
        raise ValueError(
            f"reconstruction_log_interval must be a non-negative integer (gradient steps between two logged image "
            f"grids; 0: never), got {interval!r}."
        )
    if interval > 0 and not VARIANTS[variant].use_decoder:
        raise ValueError(
            f"reconstruction_log_interval={interval} logs the decoder's reconstructions, but variant={variant!r} "
            "has no decoder: leave it at 0, or train a variant with one ('gaara', 'sac_ae', ...)."
        )
    check_augmentation(augmentation, augmentation_pad, target_augmentations, q_augmentations)
    if comparison_lambda_decay < 0:
        raise ValueError(
            f"comparison_lambda_decay={comparison_lambda_decay} is negative: the comparison weight would grow "
            "without bound. Use a positive decay to anneal, or 0 for a fixed weight."
        )
    if comparison_lambda_min > comparison_lambda:
        raise ValueError(
            f"comparison_lambda_min={comparison_lambda_min} exceeds the initial comparison_lambda="
            f"{comparison_lambda}: annealing only lowers the weight. Set comparison_lambda_min <= comparison_lambda "
            "(for a fixed weight, use comparison_lambda_decay=0)."
        )


def check_augmentation(
    augmentation: str | None, augmentation_pad: int, target_augmentations: int, q_augmentations: int
) -> None:
    """Reject augmentation settings (DrQ's random shifts, ``K`` and ``M``) that cannot mean what the user wants,
    naming the fix."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be None or 'shift' (DrQ's random shifts), got {augmentation!r}.")
    if not _is_integer(augmentation_pad) or augmentation_pad < 0:
        raise ValueError(
            f"augmentation_pad must be a non-negative integer number of pixels (DrQ: 4), got {augmentation_pad!r}."
        )
    for name, value in (("target_augmentations", target_augmentations), ("q_augmentations", q_augmentations)):
        if not _is_integer(value) or value < 1:
            raise ValueError(f"{name} must be a positive integer (views averaged; DrQ: 2), got {value!r}.")
        if value > 1 and augmentation is None:
            raise ValueError(
                f"{name}={value} averages over differently augmented views, but augmentation=None makes every view "
                "the same center crop: set augmentation='shift', or leave it at 1."
            )


def replay_buffer_kwargs_for(
    variant: str, image_size: int, frames_on_device: bool, frame_stack: int | None, replay_buffer_kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The arguments of an :class:`~sb3_gaara.common.buffers.AugmentedPixelReplayBuffer` for ``variant``: crops of
    ``image_size``, the variant's anchor crop and only the contrastive views its losses read (the others would cost
    crops and random draws), the frames on the model's device under CUDA graphs (``frames_on_device``) and the env's
    ``frame_stack``; the user's ``replay_buffer_kwargs`` win.

    :raise ValueError: the user's ``contrastive_views`` lack a view that the variant's losses read
    """
    losses = VARIANTS[variant]
    kwargs = {
        "image_size": image_size,
        "anchor_crop": losses.anchor_crop,
        "contrastive_views": tuple(sorted(losses.views)),
        **({"storage_device": "auto"} if frames_on_device else {}),
        **({} if frame_stack is None else {"frame_stack": frame_stack}),
        **replay_buffer_kwargs,
    }
    missing = losses.views - set(check_contrastive_views(kwargs["contrastive_views"]))
    if missing:
        raise ValueError(
            f"replay_buffer_kwargs['contrastive_views']={kwargs['contrastive_views']!r} lacks "
            f"{sorted(missing)}, which the losses of variant={variant!r} read: leave contrastive_views unset."
        )
    return kwargs


def policy_kwargs_for(variant: str, image_size: int, policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a :class:`~sb3_gaara.gaara.policies.GAARAPolicy` for ``variant`` at ``image_size``: the
    decoder and ``W`` where the variant's losses use them; the user's other ``policy_kwargs`` added.

    :raise ValueError: the user's ``policy_kwargs`` contradict what the model's arguments decide
    """
    losses = VARIANTS[variant]
    decided = {"image_size": image_size, "use_decoder": losses.use_decoder, "use_comparison": losses.use_comparison}
    kwargs = {**decided, **policy_kwargs}
    for key, expected in decided.items():
        if kwargs[key] != expected:
            raise ValueError(
                f"policy_kwargs[{key!r}]={kwargs[key]!r} contradicts the model's {expected!r} "
                f"(image_size={image_size}, variant={variant!r}); set it on GAARASAC, not in policy_kwargs."
            )
    return kwargs

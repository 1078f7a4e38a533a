"""Batched image crops, shared by the replay buffer (training) and the encoder (acting).

The paper trains on 84 px crops of 100 px renders: the anchor is the *center* crop, the positive a
*random* crop (SAC+GAARA §4.1). Acting must see exactly the crop the critic was trained on, so both
paths call the functions below instead of re-implementing the offset arithmetic.

All functions work on channel-first batches ``(B, C, H, W)`` of any dtype and on any device: a crop
never leaves the device its input lives on, and no function loops over the batch in Python.
"""

from __future__ import annotations

import torch as th


def _check_size(height: int, width: int, size: int) -> None:
    if size > height or size > width:
        raise ValueError(
            f"Cannot crop {size}x{size} pixels out of a {height}x{width} image: the rendered image must be at "
            f"least `image_size` pixels on each side. Render larger images or lower `image_size`."
        )


def center_offset(length: int, size: int) -> int:
    """Offset of a centered crop of ``size`` out of ``length`` pixels: ``(100 - 84) // 2 = 8``."""
    return (length - size) // 2


def center_crop(obs: th.Tensor, size: int) -> th.Tensor:
    """Crop the central ``size x size`` window of every image of a batch (a view, no copy).

    :param obs: images ``(..., H, W)``
    :param size: side of the crop
    :return: ``(..., size, size)``
    """
    height, width = obs.shape[-2], obs.shape[-1]
    if height == size and width == size:
        return obs
    _check_size(height, width, size)
    top, left = center_offset(height, size), center_offset(width, size)
    return obs[..., top : top + size, left : left + size]


def random_crop_offsets(
    batch_size: int,
    height: int,
    width: int,
    size: int,
    device: th.device | str = "cpu",
    generator: th.Generator | None = None,
) -> tuple[th.Tensor, th.Tensor]:
    """Draw one (top, left) offset per sample, each uniform over ``0 .. H - size`` **inclusive**.

    The reference code draws with ``randint(0, H - size)`` and so never reaches the last offset;
    ``th.randint``'s exclusive upper bound is therefore ``H - size + 1`` here.
    """
    _check_size(height, width, size)
    top = th.randint(0, height - size + 1, (batch_size,), device=device, generator=generator)
    left = th.randint(0, width - size + 1, (batch_size,), device=device, generator=generator)
    return top, left


def crop(obs: th.Tensor, top: th.Tensor, left: th.Tensor, size: int) -> th.Tensor:
    """Crop each image of a batch at its own offset, by batched advanced indexing.

    Every channel of a sample (all stacked frames) shares the sample's offset, so the jitter is
    consistent in time (SAC+GAARA Fig. 2).

    :param obs: ``(B, C, H, W)``
    :param top: ``(B,)`` integer row offsets
    :param left: ``(B,)`` integer column offsets
    :param size: side of the crop
    :return: a contiguous ``(B, C, size, size)`` tensor
    """
    if obs.ndim != 4:
        raise ValueError(f"crop() expects a (batch, channels, height, width) tensor, got shape {tuple(obs.shape)}")
    batch_size, _, height, width = obs.shape
    _check_size(height, width, size)
    if top.shape != (batch_size,) or left.shape != (batch_size,):
        raise ValueError(f"crop() needs one top and one left offset per sample ({batch_size}), got {tuple(top.shape)}")
    span = th.arange(size, device=obs.device)
    rows = (top.to(obs.device)[:, None] + span)[:, :, None]  # (B, size, 1)
    cols = (left.to(obs.device)[:, None] + span)[:, None, :]  # (B, 1, size)
    batch = th.arange(batch_size, device=obs.device)[:, None, None]
    # Index a channel-last view so that one gather moves whole pixels (all channels) at once.
    return obs.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_crop(obs: th.Tensor, size: int, generator: th.Generator | None = None) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """Random ``size x size`` crop of every image of a batch, one offset per sample.

    :return: the crops ``(B, C, size, size)`` and the ``top`` and ``left`` offsets used
    """
    top, left = random_crop_offsets(obs.shape[0], obs.shape[-2], obs.shape[-1], size, obs.device, generator)
    return crop(obs, top, left, size), top, left

"""Batched image crops and shifts, shared by the replay buffer (training) and the encoder (acting).

The paper trains on 84 px crops of 100 px renders: the anchor is the *center* crop, the positive a
*random* crop (SAC+GAARA §4.1). Acting must see exactly the crop the critic was trained on, so both
paths call the functions below instead of re-implementing the offset arithmetic. DrQ's augmentation, a
random shift of up to 4 pixels with the borders replicated (:func:`random_shift`), lives here too.

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


def shift(obs: th.Tensor, top: th.Tensor, left: th.Tensor, pad: int) -> th.Tensor:
    """Shift each image of a batch by its own integer offset, as if padded by ``pad`` pixels with edge replication
    and cropped back to ``H x W`` at ``(top, left)`` of the padded image (DrQ's random shift, without building the
    padded copy).

    Output pixel ``(i, j)`` of sample ``b`` is input pixel ``(clamp(i + top[b] - pad), clamp(j + left[b] - pad))``,
    each clamped to the image: padding by edge replication repeats the border pixels. Every channel of a sample
    (all stacked frames) shares its offset.

    :param obs: ``(B, C, H, W)``, any dtype, any device
    :param top: ``(B,)`` integer row offsets in ``0 .. 2 * pad``
    :param left: ``(B,)`` integer column offsets in ``0 .. 2 * pad``
    :param pad: padding in pixels (0: the images unchanged)
    :return: a contiguous ``(B, C, H, W)`` tensor of ``obs``'s dtype
    """
    if obs.ndim != 4:
        raise ValueError(f"shift() expects a (batch, channels, height, width) tensor, got shape {tuple(obs.shape)}")
    _check_pad(pad)
    batch_size, _, height, width = obs.shape
    if top.shape != (batch_size,) or left.shape != (batch_size,):
        raise ValueError(f"shift() needs one top and one left offset per sample ({batch_size}), got {tuple(top.shape)}")
    top, left = top.to(obs.device), left.to(obs.device)
    if bool(((top < 0) | (top > 2 * pad) | (left < 0) | (left > 2 * pad)).any()):
        raise ValueError(f"shift() offsets must lie in 0 .. 2 * pad = {2 * pad}.")
    rows = (top[:, None] + th.arange(height, device=obs.device) - pad).clamp_(0, height - 1)[:, :, None]  # (B, H, 1)
    cols = (left[:, None] + th.arange(width, device=obs.device) - pad).clamp_(0, width - 1)[:, None, :]  # (B, 1, W)
    batch = th.arange(batch_size, device=obs.device)[:, None, None]
    # One gather of whole pixels (all channels) from a channel-last view, as crop() does.
    return obs.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_shift(obs: th.Tensor, pad: int = 4, generator: th.Generator | None = None) -> th.Tensor:
    """DrQ's image augmentation: every image of a batch shifted by up to ``pad`` pixels, borders replicated.

    The sample is padded by ``pad`` pixels with edge replication and cropped back to its size at a top-left offset
    drawn uniformly from ``0 .. 2 * pad`` (inclusive) on each axis, independently per sample and the same for all
    its channels (every stacked frame). Works on uint8 and float batches on any device; keeps shape and dtype.

    :param obs: ``(B, C, H, W)``
    :param pad: the largest shift in pixels (DrQ and DrQ-v2: 4 at 84 px)
    :param generator: torch generator of the offsets (default: torch's global one)
    """
    _check_pad(pad)
    if obs.ndim != 4:
        raise ValueError(f"random_shift() expects a (batch, channels, height, width) tensor, got shape {tuple(obs.shape)}")
    batch_size = obs.shape[0]
    top = th.randint(0, 2 * pad + 1, (batch_size,), device=obs.device, generator=generator)
    left = th.randint(0, 2 * pad + 1, (batch_size,), device=obs.device, generator=generator)
    return shift(obs, top, left, pad)


def _check_pad(pad: int) -> None:
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer number of pixels (DrQ uses 4), got {pad!r}.")

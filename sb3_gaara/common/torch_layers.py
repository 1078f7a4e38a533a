"""Torch layers of SAC+AE / CURL / SAC+GAARA: pixel encoder, pixel decoder and comparison module."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_gaara.common.crops import center_crop


def weight_init(module: nn.Module) -> None:
    """SAC+AE initialisation: orthogonal Linear layers and delta-orthogonal convolutions.

    Delta-orthogonal (Xiao et al. 2018) puts an orthogonal matrix at the kernel's centre tap and zeros
    elsewhere, so that at initialisation every convolution is an orthogonal map of the centre pixel,
    which keeps activations well scaled through the stack.
    """
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight.data)
        if module.bias is not None:
            module.bias.data.fill_(0.0)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        # ConvTranspose2d stores (in, out, kH, kW); the orthogonal centre tap is fine either way.
        module.weight.data.fill_(0.0)
        if module.bias is not None:
            module.bias.data.fill_(0.0)
        mid = module.weight.size(2) // 2
        gain = nn.init.calculate_gain("relu")
        nn.init.orthogonal_(module.weight.data[:, :, mid, mid], gain)


def orthogonal_weight_init(module: nn.Module) -> None:
    """DrQ's initialisation: Linear layers as :func:`weight_init`, and convolutions whose *whole* kernel is orthogonal.

    ``nn.init.orthogonal_`` flattens a ``(out, in, k, k)`` kernel to an ``(out, in * k * k)`` matrix and makes its
    rows (or, when it has more rows than columns, its columns) orthonormal, scaled by the ReLU gain; biases start at
    zero. Every tap of the kernel is drawn, where the delta-orthogonal init of SAC+AE and CURL draws only the centre.
    """
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.orthogonal_(module.weight.data, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            module.bias.data.fill_(0.0)
    else:
        weight_init(module)


def conv_output_size(image_size: int, num_layers: int) -> int:
    """Side of the encoder's last feature map: one 3x3 stride-2 conv, then ``num_layers - 1`` 3x3 stride-1."""
    size = (image_size - 3) // 2 + 1
    return size - 2 * (num_layers - 1)


def tied_encoder_kwargs(
    policy_name: str,
    share_features_extractor: bool,
    features_extractor_class: type[BaseFeaturesExtractor],
    features_extractor_kwargs: dict[str, Any] | None,
    image_size: int,
    why_pixel_encoder: str,
) -> dict[str, Any]:
    """Check the arguments of a policy whose actor borrows the critic's :class:`PixelEncoder` convolutions (GAARA's,
    DrQ-v2's) and return its encoder's keyword arguments, with ``image_size``.

    :param why_pixel_encoder: what the policy does with the convolutions, for the message when the class is another
    """
    if share_features_extractor:
        raise ValueError(
            f"{policy_name} ties the actor's convolutions to the critic's itself and trains them with the critic loss; "
            "SB3's share_features_extractor=True would train them with the actor loss instead. Leave it False."
        )
    if not issubclass(features_extractor_class, PixelEncoder):
        raise ValueError(
            f"{policy_name} needs a PixelEncoder features extractor ({why_pixel_encoder}), "
            f"got {features_extractor_class.__name__}."
        )
    kwargs = dict(features_extractor_kwargs or {})
    if kwargs.setdefault("image_size", image_size) != image_size:
        raise ValueError(
            f"features_extractor_kwargs['image_size']={kwargs['image_size']} disagrees with "
            f"image_size={image_size}; set image_size only."
        )
    return kwargs


class PixelEncoder(BaseFeaturesExtractor):
    """SAC+AE / CURL pixel encoder: conv stack, then Linear -> LayerNorm -> tanh.

    Input images are channel-first and already scaled to ``[0, 1]`` by SB3's ``preprocess_obs``.
    Images larger than ``image_size`` (the full 100 px render seen while acting) are center-cropped
    here with the same helper the replay buffer uses, so acting sees exactly the training anchor.

    The actor and the critic each own one encoder whose convolutions are *tied*
    (:meth:`tie_convs_to`). The actor's copy runs with ``detach_convs=True``: the actor loss then
    trains only the actor's Linear + LayerNorm, and the conv weights move only with the critic and
    the auxiliary losses (SAC+AE §6, "we do not propagate the actor's gradients into the encoder").

    :param observation_space: channel-first image space, e.g. ``Box(0, 255, (9, 100, 100), uint8)``
    :param features_dim: size of the latent code ``z`` (50 in the papers)
    :param image_size: side of the crop the convolutions are built for (84)
    :param num_layers: number of convolutions (4)
    :param num_filters: channels of every convolution (32)
    """

    def __init__(
        self,
        observation_space: gym.spaces.Box,
        features_dim: int = 50,
        image_size: int = 84,
        num_layers: int = 4,
        num_filters: int = 32,
    ) -> None:
        super().__init__(observation_space, features_dim)
        shape = observation_space.shape
        if shape is None or len(shape) != 3:
            raise ValueError(f"PixelEncoder needs channel-first images (C, H, W), got an observation shape {shape}.")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}.")
        out_size = conv_output_size(image_size, num_layers)
        if out_size < 1:
            raise ValueError(
                f"image_size={image_size} is too small for {num_layers} convolutions; use image_size >= {4 * num_layers - 1}."
            )
        self.image_size = image_size
        self.num_layers = num_layers
        self.num_filters = num_filters
        self.in_channels = shape[0]
        self.conv_output_size = out_size
        self.detach_convs = False
        # Set by GAARAPolicy(channels_last=True): oneDNN / cuDNN convolutions run faster on NHWC tensors.
        self.memory_format = th.contiguous_format
        # Set by GAARAPolicy(conv_dtype="bfloat16"): the convolutions run under autocast in that dtype, the
        # Linear head and everything after it in float32.
        self.conv_dtype: th.dtype | None = None
        # In-place ReLUs: a convolution's backward needs its input, not its output, so the output can be
        # overwritten; that saves one full-size activation per layer and pass.
        layers: list[nn.Module] = [nn.Conv2d(self.in_channels, num_filters, 3, stride=2), nn.ReLU(inplace=True)]
        for _ in range(num_layers - 1):
            layers += [nn.Conv2d(num_filters, num_filters, 3, stride=1), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.fc = nn.Linear(num_filters * out_size * out_size, features_dim)
        self.layer_norm = nn.LayerNorm(features_dim)

    def tie_convs_to(self, other: PixelEncoder) -> None:
        """Use ``other``'s convolutions (one set of weights) instead of this encoder's own."""
        if (other.in_channels, other.num_filters, other.num_layers) != (self.in_channels, self.num_filters, self.num_layers):
            raise ValueError("Cannot tie convolutions of encoders with different shapes.")
        self.convs = other.convs

    def tied(self, to: PixelEncoder, detach_convs: bool = False) -> PixelEncoder:
        """This encoder, its convolutions replaced by ``to``'s (:meth:`tie_convs_to`), its own trunk kept: how a
        policy builds the actor's encoder (``detach_convs=True``: its loss leaves the convolutions to the critic) and
        a target's from a fresh ``make_features_extractor()``."""
        self.tie_convs_to(to)
        self.detach_convs = detach_convs
        return self

    def forward_conv(self, obs: th.Tensor) -> th.Tensor:
        """Conv feature map ``(B, num_filters, s, s)`` of ``obs`` (float, ``[0, 1]``), center-cropped to
        ``image_size`` first."""
        images = center_crop(obs, self.image_size).contiguous(memory_format=self.memory_format)
        if self.conv_dtype is None:
            return self.convs(images)
        with th.autocast(device_type=images.device.type, dtype=self.conv_dtype):
            return self.convs(images).float()

    def forward_head(self, conv_features: th.Tensor) -> th.Tensor:
        """Latent code from the conv feature map: flatten (channel-major, as ``nn.Flatten``) -> Linear ->
        LayerNorm -> tanh.

        A channels-last training batch is not copied into channel-major order: it is flattened as it lies
        in memory (pixel-major, a view) and multiplied with the Linear weight's columns permuted to the same
        order. The product is the same and the copy is of the weight, smaller than a batch of more than
        ``features_dim`` maps.
        """
        batch, channels, height, width = conv_features.shape
        channels_last = conv_features.is_contiguous(memory_format=th.channels_last) and not conv_features.is_contiguous()
        if not channels_last or batch < self.features_dim:
            hidden = self.fc(conv_features.flatten(1))
        else:
            weight = self.fc.weight.view(-1, channels, height, width).permute(0, 2, 3, 1).flatten(1)
            hidden = F.linear(conv_features.permute(0, 2, 3, 1).reshape(batch, -1), weight, self.fc.bias)
        return th.tanh(self.layer_norm(hidden))

    def forward(self, observations: th.Tensor) -> th.Tensor:
        conv_features = self.forward_conv(observations)
        if self.detach_convs:
            conv_features = conv_features.detach()
        return self.forward_head(conv_features)


class PixelDecoder(nn.Module):
    """SAC+AE pixel decoder: Linear, then transposed convolutions mirroring :class:`PixelEncoder`.

    ``features_dim -> num_filters * s * s`` (``s = 35`` at 84 px), ``num_layers - 1`` 3x3 stride-1
    transposed convs with ReLU, and a last 3x3 stride-2 transposed conv whose output padding makes the
    output exactly ``image_size`` (84 px needs ``output_padding=1``).

    :param out_channels: channels to reconstruct (all stacked frames, 9)
    """

    @classmethod
    def mirroring(cls, encoder: PixelEncoder) -> PixelDecoder:
        """The decoder of ``encoder``'s images: its channels, size, layers, filters and feature width."""
        return cls(
            out_channels=encoder.in_channels,
            features_dim=encoder.features_dim,
            image_size=encoder.image_size,
            num_layers=encoder.num_layers,
            num_filters=encoder.num_filters,
        )

    def __init__(
        self,
        out_channels: int,
        features_dim: int = 50,
        image_size: int = 84,
        num_layers: int = 4,
        num_filters: int = 32,
    ) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.image_size = image_size
        self.num_filters = num_filters
        self.conv_output_size = conv_output_size(image_size, num_layers)
        if self.conv_output_size < 1:
            raise ValueError(f"image_size={image_size} is too small for {num_layers} layers.")
        self.fc = nn.Linear(features_dim, num_filters * self.conv_output_size**2)
        layers: list[nn.Module] = []
        for _ in range(num_layers - 1):
            layers += [nn.ConvTranspose2d(num_filters, num_filters, 3, stride=1), nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(num_filters, out_channels, 3, stride=2, output_padding=1 - image_size % 2))
        self.deconvs = nn.Sequential(*layers)
        self.memory_format = th.contiguous_format  # see PixelEncoder.memory_format
        self.conv_dtype: th.dtype | None = None  # see PixelEncoder.conv_dtype

    def forward(self, latent: th.Tensor) -> th.Tensor:
        """Images ``(B, out_channels, image_size, image_size)`` from codes ``(B, features_dim)``.

        With channels-last convolutions and a batch of more than ``features_dim`` codes, the Linear writes
        its output straight in channels-last order (its weight's rows permuted to pixel-major), instead of
        writing channel-major maps and copying them; the same trick as :meth:`PixelEncoder.forward_head`.
        """
        size, filters = self.conv_output_size, self.num_filters
        if self.memory_format == th.channels_last and latent.shape[0] >= latent.shape[1]:
            weight = self.fc.weight.view(filters, size, size, -1).permute(1, 2, 0, 3).reshape(size * size * filters, -1)
            bias = self.fc.bias.view(filters, size, size).permute(1, 2, 0).reshape(-1)
            h = th.relu_(F.linear(latent, weight, bias)).view(-1, size, size, filters).permute(0, 3, 1, 2)
        else:
            h = th.relu_(self.fc(latent)).view(-1, filters, size, size).contiguous(memory_format=self.memory_format)
        if self.conv_dtype is None:
            return self.deconvs(h)
        with th.autocast(device_type=h.device.type, dtype=self.conv_dtype):
            return self.deconvs(h).float()

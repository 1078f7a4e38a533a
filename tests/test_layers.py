"""Encoder, decoder and comparison module: shapes, cropping, tying and SAC+AE's initialisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from torch import nn

from sb3_gaara.common.crops import center_crop
from sb3_gaara.common.torch_layers import PixelDecoder, PixelEncoder, conv_output_size, weight_init
from sb3_gaara.gaara.comparison import ComparisonModule


def image_space(channels: int, size: int) -> spaces.Box:
    return spaces.Box(0, 255, (channels, size, size), dtype=np.uint8)


def test_conv_output_size_of_the_paper():
    # 84 px: one stride-2 conv -> 41, three stride-1 convs -> 35 (SAC+AE's 32 * 35 * 35).
    assert conv_output_size(84, 4) == 35
    assert conv_output_size(84, 1) == 41
    assert conv_output_size(16, 4) == 1
    assert conv_output_size(85, 4) == 36


def test_encoder_and_decoder_shapes_at_84_px():
    encoder = PixelEncoder(image_space(9, 100), features_dim=50, image_size=84)
    decoder = PixelDecoder(out_channels=9, features_dim=50, image_size=84)
    obs = th.rand(2, 9, 100, 100)
    conv = encoder.forward_conv(obs)
    assert conv.shape == (2, 32, 35, 35)
    assert encoder.fc.in_features == 32 * 35 * 35
    z = encoder(obs)
    assert z.shape == (2, 50)
    # Linear -> LayerNorm -> tanh: bounded codes.
    assert float(z.detach().abs().max()) <= 1.0
    assert decoder.fc.out_features == 32 * 35 * 35
    assert decoder(z).shape == (2, 9, 84, 84)


@pytest.mark.parametrize("batch", [1, 9])
def test_channels_last_head_equals_channel_major_flatten(batch):
    # A channels-last batch of at least features_dim maps multiplies a column-permuted weight instead of
    # copying the maps: same code as nn.Flatten -> Linear on the channel-major layout, same gradients.
    th.manual_seed(0)
    encoder = PixelEncoder(image_space(3, 20), features_dim=8, image_size=20, num_filters=4)
    conv_map = th.rand(batch, 4, *(2 * [conv_output_size(20, 4)]))
    weights = th.randn(batch, 8)
    reference = th.tanh(encoder.layer_norm(encoder.fc(conv_map.flatten(1))))
    (reference * weights).sum().backward()
    reference_grad = encoder.fc.weight.grad.clone()
    encoder.fc.weight.grad = None
    z = encoder.forward_head(conv_map.contiguous(memory_format=th.channels_last))
    (z * weights).sum().backward()
    assert th.allclose(z, reference, atol=1e-6)
    assert th.allclose(encoder.fc.weight.grad, reference_grad, atol=1e-5)


@pytest.mark.parametrize("batch", [1, 9])
def test_channels_last_decoder_equals_channel_major_decoder(batch):
    # From features_dim codes up, the channels-last decoder's Linear writes pixel-major rows directly.
    th.manual_seed(0)
    decoder = PixelDecoder(out_channels=3, features_dim=8, image_size=20, num_filters=4)
    latent, weights = th.randn(batch, 8), th.randn(batch, 3, 20, 20)
    reference = decoder(latent)
    (reference * weights).sum().backward()
    reference_grads = [param.grad.clone() for param in decoder.parameters()]
    decoder.zero_grad()
    decoder.to(memory_format=th.channels_last)  # type: ignore[call-overload]
    decoder.memory_format = th.channels_last
    images = decoder(latent)
    (images * weights).sum().backward()
    assert images.is_contiguous(memory_format=th.channels_last)
    assert th.allclose(images, reference, atol=1e-6)
    for param, reference_grad in zip(decoder.parameters(), reference_grads, strict=True):
        assert th.allclose(param.grad, reference_grad, atol=1e-5)


@pytest.mark.parametrize("image_size", [15, 16, 17, 20, 21, 33])
def test_decoder_output_matches_image_size_for_odd_and_even_sizes(image_size):
    encoder = PixelEncoder(image_space(3, image_size + 4), features_dim=8, image_size=image_size, num_filters=4)
    decoder = PixelDecoder(out_channels=3, features_dim=8, image_size=image_size, num_filters=4)
    z = encoder(th.rand(2, 3, image_size + 4, image_size + 4))
    assert decoder(z).shape == (2, 3, image_size, image_size)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_decoder_mirrors_shallower_encoders(num_layers):
    encoder = PixelEncoder(image_space(3, 20), features_dim=8, image_size=20, num_layers=num_layers, num_filters=4)
    decoder = PixelDecoder(out_channels=3, features_dim=8, image_size=20, num_layers=num_layers, num_filters=4)
    size = conv_output_size(20, num_layers)
    assert encoder.forward_conv(th.rand(1, 3, 20, 20)).shape == (1, 4, size, size)
    assert decoder(encoder(th.rand(1, 3, 20, 20))).shape == (1, 3, 20, 20)


def test_encoder_structure():
    encoder = PixelEncoder(image_space(9, 100), image_size=84)
    convs = [m for m in encoder.convs if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (9, 32, (3, 3), (2, 2)),
        (32, 32, (3, 3), (1, 1)),
        (32, 32, (3, 3), (1, 1)),
        (32, 32, (3, 3), (1, 1)),
    ]
    decoder = PixelDecoder(out_channels=9, image_size=84)
    deconvs = [m for m in decoder.deconvs if isinstance(m, nn.ConvTranspose2d)]
    assert [(d.stride, d.output_padding) for d in deconvs] == [((1, 1), (0, 0))] * 3 + [((2, 2), (1, 1))]


def test_encoder_center_crops_full_size_images():
    th.manual_seed(0)  # a 1x1 final map of 16 filters: seeded, so that no draw leaves every unit dead
    encoder = PixelEncoder(image_space(6, 20), features_dim=8, image_size=16, num_filters=16)
    obs = th.rand(3, 6, 20, 20)
    assert th.equal(encoder(obs), encoder(center_crop(obs, 16)))
    # ... and not any other crop.
    assert not th.allclose(encoder(obs), encoder(obs[..., :16, :16]))


def test_encoder_scale_images_in_unit_range_and_input_is_float():
    encoder = PixelEncoder(image_space(6, 16), features_dim=8, image_size=16, num_filters=4)
    z = encoder(th.rand(2, 6, 16, 16))
    assert z.dtype == th.float32


def test_tied_convs_share_weights_and_detached_convs_get_no_gradient():
    space = image_space(6, 16)
    critic_encoder = PixelEncoder(space, features_dim=8, image_size=16, num_filters=4)
    actor_encoder = PixelEncoder(space, features_dim=8, image_size=16, num_filters=4)
    actor_encoder.tie_convs_to(critic_encoder)
    actor_encoder.detach_convs = True
    assert actor_encoder.convs is critic_encoder.convs
    assert actor_encoder.fc is not critic_encoder.fc
    actor_encoder(th.rand(2, 6, 16, 16)).sum().backward()
    assert all(p.grad is None for p in critic_encoder.convs.parameters())
    assert actor_encoder.fc.weight.grad is not None and float(actor_encoder.fc.weight.grad.abs().sum()) > 0
    # Without detaching, the same forward does reach the convolutions.
    critic_encoder(th.rand(2, 6, 16, 16)).sum().backward()
    assert all(p.grad is not None for p in critic_encoder.convs.parameters())


def test_tying_encoders_of_different_shapes_is_refused():
    a = PixelEncoder(image_space(6, 16), features_dim=8, image_size=16, num_filters=4)
    b = PixelEncoder(image_space(3, 16), features_dim=8, image_size=16, num_filters=4)
    with pytest.raises(ValueError, match="different shapes"):
        a.tie_convs_to(b)


def test_encoder_too_small_image_is_refused_with_a_working_minimum():
    with pytest.raises(ValueError, match=r"image_size=14 is too small for 4 convolutions; use image_size >= 15"):
        PixelEncoder(image_space(3, 14), image_size=14)
    # The size the message proposes does build.
    PixelEncoder(image_space(3, 15), image_size=15, num_filters=4)
    with pytest.raises(ValueError, match=r"channel-first images"):
        PixelEncoder(spaces.Box(0, 255, (3, 16), dtype=np.uint8), image_size=16)


def _centre_tap_is_the_only_nonzero(weight: th.Tensor) -> None:
    mask = th.ones_like(weight, dtype=th.bool)
    mask[:, :, 1, 1] = False
    assert float(weight[mask].abs().max()) == 0.0


def _assert_scaled_orthogonal(matrix: th.Tensor, gain: float) -> None:
    rows, cols = matrix.shape
    gram = matrix @ matrix.T if rows <= cols else matrix.T @ matrix
    assert th.allclose(gram, gain**2 * th.eye(min(rows, cols)), atol=1e-5)


def test_delta_orthogonal_init_of_convolutions():
    gain = nn.init.calculate_gain("relu")  # sqrt(2)
    encoder = PixelEncoder(image_space(6, 16), features_dim=8, image_size=16, num_filters=32)
    decoder = PixelDecoder(out_channels=6, features_dim=8, image_size=16, num_filters=32)
    encoder.apply(weight_init)
    decoder.apply(weight_init)
    convs = [m for m in (*encoder.convs, *decoder.deconvs) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 8
    for conv in convs:
        _centre_tap_is_the_only_nonzero(conv.weight.data)
        _assert_scaled_orthogonal(conv.weight.data[:, :, 1, 1], gain)
        assert float(conv.bias.data.abs().max()) == 0.0
    # The first conv maps 6 channels into 32: its 32 x 6 centre tap has orthogonal columns of norm sqrt(2).
    first = encoder.convs[0].weight.data[:, :, 1, 1]
    assert th.allclose(first.T @ first, 2.0 * th.eye(6), atol=1e-5)


def test_orthogonal_init_of_linear_layers():
    layer = nn.Linear(12, 5)
    layer.bias.data.fill_(3.0)
    weight_init(layer)
    assert th.allclose(layer.weight.data @ layer.weight.data.T, th.eye(5), atol=1e-5)
    assert float(layer.bias.data.abs().max()) == 0.0


def test_comparison_module():
    module = ComparisonModule(features_dim=4)
    assert module.W.shape == (4, 4)
    assert module.W.min().item() >= 0.0 and module.W.max().item() < 1.0
    with th.no_grad():
        module.W.copy_(th.tensor([[1.0, 0.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]))
    z_anchor = th.tensor([[1.0, 2.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    z_positive = th.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    assert th.equal(module(z_anchor, z_positive), th.tensor([[-2.0, 0.0], [-1.0, 0.0]]))
    assert [name for name, _ in module.named_parameters()] == ["W"]

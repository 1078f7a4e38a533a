"""SLAC's sequential latent variable model (Lee, Nagabandi, Abbeel & Levine, "Stochastic Latent Actor-Critic", NeurIPS
2020, §5 and appendix B): the pure functions of its evidence lower bound and the torch modules of the model.

The model has two layers of latents per step, ``z1`` (32) and ``z2`` (256), ``z = [z1, z2]``:

* prior: ``p(z1_1) = N(0, I)``, ``p(z2_1 | z1_1)``, ``p(z1_{t+1} | z2_t, a_t)``, ``p(z2_{t+1} | z1_{t+1}, z2_t, a_t)``;
* posterior: ``q(z1_1 | x_1)``, ``q(z1_{t+1} | x_{t+1}, z2_t, a_t)``; ``z2`` is drawn from the *prior's* conditionals
  (the posterior shares them), so that only ``z1`` has a KL term;
* a convolutional encoder of the frames (what the posterior and the actor read), a Gaussian decoder
  ``p(x_t | z_t)`` of fixed standard deviation, and a Gaussian reward model ``p(r_t | z_t, a_t, z_{t+1})``.

Every conditional is a diagonal Gaussian whose mean and standard deviation an MLP computes
(:class:`GaussianMLP`). Sizes follow the paper's appendix B: encoder of five convolutions (32, 64, 128, 256 channels
at stride 2, then one whose kernel covers the remaining 4 x 4 map, into 256 features), its transpose as the
decoder, MLPs of two hidden layers of 256 units, leaky ReLUs.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_gaara.common.distributions import gaussian_kl, gaussian_log_prob

#: slope of the leaky ReLUs of the model: the original code's (TensorFlow's ``leaky_relu`` default, 0.2) and the PyTorch
#: port's (``nn.LeakyReLU(0.2)`` written out; torch's own default would be 0.01)
LEAKY_SLOPE = 0.2
#: added to every softplus standard deviation, so that no Gaussian collapses to a point (the SLAC code's 1e-5)
MIN_STD = 1e-5
#: standard deviation of the decoder's Gaussian over pixels in [0, 1] (the SLAC code's sqrt(0.1))
DECODER_STD = math.sqrt(0.1)
#: stride-2 convolutions of the encoder: each halves the side, so frames must be a multiple of 2**4 = 16 px
DOWNSAMPLINGS = 4


# ---------------------------------------------------------------------------------------------- pure functions


class ElboTerms(NamedTuple):
    """The pieces of SLAC's model objective for a batch of sequences, each ``(B,)`` (summed over time and dimensions).

    ``elbo = image_log_likelihood - kl``; the model is trained on ``-(elbo + reward_log_likelihood)``, averaged over
    the batch (:meth:`LatentModel.loss`), the reward model's likelihood added as in the paper's code.
    """

    #: ``sum_t log p(x_t | z_t)`` over the ``S`` observations, ``z`` drawn from the posterior
    image_log_likelihood: th.Tensor
    #: ``KL(q(z1_1 | x_1) || p(z1_1)) + sum_t KL(q(z1_{t+1} | x_{t+1}, z2_t, a_t) || p(z1_{t+1} | z2_t, a_t))``
    kl: th.Tensor
    #: ``sum_t log p(r_t | z_t, a_t, z_{t+1})`` over the ``S - 1`` rewards
    reward_log_likelihood: th.Tensor
    #: mean squared error of the decoder's mean image, per pixel in ``[0, 1]`` (a readable progress figure)
    reconstruction_mse: th.Tensor


def elbo_terms(
    images: th.Tensor,
    image_means: th.Tensor,
    posterior: LatentSample,
    rewards: th.Tensor,
    reward_mean: th.Tensor,
    reward_std: th.Tensor,
    decoder_std: float,
    observed: th.Tensor | None = None,
) -> ElboTerms:
    """The ELBO's pieces from the model's outputs on one batch of sequences; steps not ``observed`` (the padding before
    an episode's first observation) are left out of every sum.

    :param images: ``(B, S, C, H, W)`` the observed frames, floats in ``[0, 1]``
    :param image_means: ``(B, S, C, H, W)`` the decoder's means ``E[x_t | z_t]`` at the posterior samples
    :param posterior: the posterior's samples and, for the KL, its and the prior's parameters of ``z1``
    :param rewards: ``(B, S - 1, 1)``
    :param reward_mean: ``(B, S - 1, 1)`` mean of ``p(r_t | z_t, a_t, z_{t+1})``
    :param reward_std: ``(B, S - 1, 1)`` its standard deviation
    :param decoder_std: the decoder's fixed standard deviation
    :param observed: ``(B, S)`` 1 for observed steps, 0 for padding (``None``: every step observed); a reward counts
        when the step it follows is observed
    """
    batch, steps = images.shape[:2]
    mask = images.new_ones(batch, steps) if observed is None else observed.to(images.dtype)
    image_log_prob = gaussian_log_prob(images, image_means, decoder_std).reshape(batch, steps, -1).sum(dim=2)
    kl = gaussian_kl(posterior.z1_mean, posterior.z1_std, posterior.z1_prior_mean, posterior.z1_prior_std).sum(dim=2)
    reward_log_prob = gaussian_log_prob(rewards, reward_mean, reward_std).reshape(batch, steps - 1, -1).sum(dim=2)
    squared_error = (image_means.detach() - images).pow(2).reshape(batch, steps, -1).mean(dim=2)
    return ElboTerms(
        image_log_likelihood=(image_log_prob * mask).sum(dim=1),
        kl=(kl * mask).sum(dim=1),
        reward_log_likelihood=(reward_log_prob * mask[:, :-1]).sum(dim=1),
        reconstruction_mse=(squared_error * mask).sum() / mask.sum(),
    )


# ---------------------------------------------------------------------------------------------- modules


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for linear and (transposed) convolution layers, as the public SLAC code
    initialises every network of the model, the actor and the critic."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight, gain=1.0)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class GaussianMLP(nn.Module):
    """A conditional diagonal Gaussian: an MLP of the concatenated inputs gives the mean and, through a softplus plus
    :data:`MIN_STD`, the standard deviation.

    :param input_dim: size of the concatenated inputs
    :param output_dim: size of the Gaussian variable
    :param hidden_sizes: hidden layers (the paper: two of 256), leaky ReLUs between them
    """

    def __init__(self, input_dim: int, output_dim: int, hidden_sizes: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        last = input_dim
        for size in hidden_sizes:
            layers += [nn.Linear(last, size), nn.LeakyReLU(LEAKY_SLOPE)]
            last = size
        layers.append(nn.Linear(last, 2 * output_dim))
        self.net = nn.Sequential(*layers)
        self.output_dim = output_dim

    def forward(self, *inputs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``(mean, std)`` of the variable given ``inputs`` (concatenated along the last axis)."""
        mean, pre_std = self.net(th.cat(inputs, dim=-1) if len(inputs) > 1 else inputs[0]).chunk(2, dim=-1)
        return mean, F.softplus(pre_std) + MIN_STD


class SequenceEncoder(nn.Module):
    """SLAC's frame encoder: 5x5 then three 3x3 convolutions at stride 2 (``c, 2c, 4c, 8c`` channels), then one whose
    kernel covers the remaining ``size / 16`` map, into ``features_dim`` features (the paper: 64 px frames, c = 32,
    a 4 x 4 last kernel, 256 features). Leaky ReLUs after every layer.

    :param in_channels: channels of a frame (3: RGB)
    :param image_size: side of the square frames, a multiple of 16
    :param features_dim: output size
    :param base_channels: ``c``
    """

    def __init__(self, in_channels: int, image_size: int, features_dim: int = 256, base_channels: int = 32) -> None:
        super().__init__()
        check_image_size(image_size)
        channels = [in_channels, base_channels, 2 * base_channels, 4 * base_channels, 8 * base_channels]
        layers: list[nn.Module] = []
        for index, (inputs, outputs) in enumerate(itertools.pairwise(channels)):
            kernel = 5 if index == 0 else 3
            layers += [nn.Conv2d(inputs, outputs, kernel, stride=2, padding=kernel // 2), nn.LeakyReLU(LEAKY_SLOPE)]
        layers += [nn.Conv2d(channels[-1], features_dim, image_size >> DOWNSAMPLINGS), nn.LeakyReLU(LEAKY_SLOPE)]
        self.net = nn.Sequential(*layers)
        self.features_dim = features_dim

    def forward(self, images: th.Tensor) -> th.Tensor:
        """``(..., C, H, W)`` floats in ``[0, 1]`` -> ``(..., features_dim)``."""
        leading = images.shape[:-3]
        features = self.net(images.reshape(-1, *images.shape[-3:]))
        return features.reshape(*leading, self.features_dim)


class SequenceDecoder(nn.Module):
    """The encoder's transpose: ``z`` -> a ``size / 16`` map -> four stride-2 transposed convolutions -> the mean image.
    Leaky ReLUs after every layer, the last included (the original code's and the PyTorch port's decoders alike).

    :param latent_dim: size of ``z = [z1, z2]``
    :param out_channels: channels of a frame
    :param image_size: side of the frames
    :param base_channels: ``c`` of the encoder
    """

    def __init__(self, latent_dim: int, out_channels: int, image_size: int, base_channels: int = 32) -> None:
        super().__init__()
        check_image_size(image_size)
        channels = [8 * base_channels, 4 * base_channels, 2 * base_channels, base_channels, out_channels]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_dim, channels[0], image_size >> DOWNSAMPLINGS),
            nn.LeakyReLU(LEAKY_SLOPE),
        ]
        for index, (inputs, outputs) in enumerate(itertools.pairwise(channels)):
            kernel = 5 if index == len(channels) - 2 else 3
            layers.append(nn.ConvTranspose2d(inputs, outputs, kernel, stride=2, padding=kernel // 2, output_padding=1))
            # The mean image too ends with a leaky ReLU, as in the original code and the port: only negative means
            # are shrunk, and the pixels' targets lie in [0, 1].
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
        self.net = nn.Sequential(*layers)
        self.latent_dim = latent_dim

    def forward(self, latents: th.Tensor) -> th.Tensor:
        """``(..., latent_dim)`` -> ``(..., C, H, W)`` mean of ``p(x | z)``."""
        leading = latents.shape[:-1]
        images = self.net(latents.reshape(-1, self.latent_dim, 1, 1))
        return images.reshape(*leading, *images.shape[1:])


def check_image_size(image_size: int) -> None:
    """Refuse frame sizes the encoder cannot reduce to one feature vector."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 16 or image_size % 16 != 0:
        raise ValueError(
            f"SLAC's encoder halves the frame {DOWNSAMPLINGS} times: the frames must be square with a side that is a "
            f"positive multiple of 16 (the paper: 64 px), got {image_size!r}. Render the env at that size (dmc-*: "
            "env_kwargs=dict(height=64, width=64); PixelReach-v0: size=32 or 64)."
        )


class LatentSample(NamedTuple):
    """Posterior samples of a batch of sequences and the Gaussians of ``z1`` that the KL compares."""

    #: ``(B, S, z1_dim)``
    z1: th.Tensor
    #: ``(B, S, z2_dim)``
    z2: th.Tensor
    #: ``(B, S, z1_dim)`` parameters of ``q(z1_t | ...)``
    z1_mean: th.Tensor
    z1_std: th.Tensor
    #: ``(B, S, z1_dim)`` parameters of ``p(z1_t | ...)`` at the posterior's ``z2_{t-1}`` (``N(0, I)`` for ``t = 1``)
    z1_prior_mean: th.Tensor
    z1_prior_std: th.Tensor

    @property
    def latents(self) -> th.Tensor:
        """``(B, S, z1_dim + z2_dim)``: ``z = [z1, z2]``, what the critic, the decoder and the reward model read."""
        return th.cat([self.z1, self.z2], dim=-1)


class LatentModel(nn.Module):
    """SLAC's model (module docstring): encoder, the prior's and the posterior's conditionals, decoder and reward model.

    :param observation_shape: ``(C, H, W)`` of a frame, square with a side that is a multiple of 16
    :param action_dim: size of the actions
    :param features_dim: encoder features per frame (256)
    :param z1_dim: size of ``z1`` (32)
    :param z2_dim: size of ``z2`` (256)
    :param hidden_sizes: hidden layers of every conditional's MLP (256, 256)
    :param base_channels: channels of the first convolution (32)
    :param decoder_std: fixed standard deviation of ``p(x | z)`` over pixels in ``[0, 1]`` (``sqrt(0.1)``)
    """

    #: the model's Adam, set by :class:`~sb3_gaara.slac.policies.SLACPolicy`
    optimizer: th.optim.Optimizer

    def __init__(
        self,
        observation_shape: tuple[int, int, int],
        action_dim: int,
        features_dim: int = 256,
        z1_dim: int = 32,
        z2_dim: int = 256,
        hidden_sizes: tuple[int, ...] | list[int] = (256, 256),
        base_channels: int = 32,
        decoder_std: float = DECODER_STD,
    ) -> None:
        super().__init__()
        channels, height, width = observation_shape
        if height != width:
            raise ValueError(f"SLAC's encoder needs square frames, got {height}x{width}: render them square (64 x 64).")
        self.z1_dim, self.z2_dim, self.action_dim = z1_dim, z2_dim, action_dim
        self.decoder_std = decoder_std
        latent_dim = z1_dim + z2_dim
        self.encoder = SequenceEncoder(channels, height, features_dim, base_channels)
        self.decoder = SequenceDecoder(latent_dim, channels, height, base_channels)
        # p(z2_1 | z1_1), p(z1_{t+1} | z2_t, a_t), p(z2_{t+1} | z1_{t+1}, z2_t, a_t): the prior; z2's are shared.
        self.z2_init = GaussianMLP(z1_dim, z2_dim, hidden_sizes)
        self.z1_prior = GaussianMLP(z2_dim + action_dim, z1_dim, hidden_sizes)
        self.z2_transition = GaussianMLP(z1_dim + z2_dim + action_dim, z2_dim, hidden_sizes)
        # q(z1_1 | x_1), q(z1_{t+1} | x_{t+1}, z2_t, a_t): the posterior's own conditionals.
        self.z1_posterior_init = GaussianMLP(features_dim, z1_dim, hidden_sizes)
        self.z1_posterior = GaussianMLP(features_dim + z2_dim + action_dim, z1_dim, hidden_sizes)
        # p(r_t | z_t, a_t, z_{t+1})
        self.reward = GaussianMLP(2 * latent_dim + action_dim, 1, hidden_sizes)
        self.apply(xavier_init)

    @property
    def latent_dim(self) -> int:
        """Size of ``z = [z1, z2]``."""
        return self.z1_dim + self.z2_dim

    @property
    def features_dim(self) -> int:
        """Encoder features per frame."""
        return self.encoder.features_dim

    def encode(self, images: th.Tensor) -> th.Tensor:
        """``(..., C, H, W)`` uint8 frames -> ``(..., features_dim)`` (pixels scaled to ``[0, 1]``)."""
        return self.encoder(scale_images(images))

    def posterior(self, features: th.Tensor, actions: th.Tensor, observed: th.Tensor | None = None) -> LatentSample:
        """Filter a batch of sequences: draw ``z_{1:S}`` from the posterior (reparameterised) and return, for the KL,
        the parameters of ``q(z1_t | .)`` and of ``p(z1_t | .)`` at the drawn ``z2_{t-1}``.

        The filter (re)starts at each sequence's first observed step with the initial distributions ``q(z1_1 | x_1)``,
        ``p(z1_1) = N(0, I)`` and ``p(z2_1 | z1_1)``; the values computed on the padding before it are never read by
        the losses (:func:`elbo_terms` masks them).

        :param features: ``(B, S, features_dim)`` encoded frames
        :param actions: ``(B, S - 1, action_dim)`` the actions between them
        :param observed: ``(B, S)`` 1 for observed steps, 0 for the padding before them (``None``: all observed)
        """
        steps = features.shape[1]
        # q(z1_1 | x) of every step at once: the first step's posterior, and a restart's (one batched call).
        init_means, init_stds = self.z1_posterior_init(features)
        z1_mean, z1_std = init_means[:, 0], init_stds[:, 0]
        z1 = z1_mean + z1_std * th.randn_like(z1_std)
        z2_mean, z2_std = self.z2_init(z1)
        z2 = z2_mean + z2_std * th.randn_like(z2_std)
        samples: dict[str, list[th.Tensor]] = {"z1": [z1], "z2": [z2], "z1_mean": [z1_mean], "z1_std": [z1_std]}
        for t in range(1, steps):
            action = actions[:, t - 1]
            z1_mean, z1_std = self.z1_posterior(features[:, t], z2, action)
            first = None if observed is None else ((observed[:, t] > 0) & (observed[:, t - 1] == 0))[:, None]
            if first is not None:
                z1_mean = th.where(first, init_means[:, t], z1_mean)
                z1_std = th.where(first, init_stds[:, t], z1_std)
            z1 = z1_mean + z1_std * th.randn_like(z1_std)
            z2_mean, z2_std = self.z2_transition(z1, z2, action)
            if first is not None:
                init_mean, init_std = self.z2_init(z1)
                z2_mean, z2_std = th.where(first, init_mean, z2_mean), th.where(first, init_std, z2_std)
            z2 = z2_mean + z2_std * th.randn_like(z2_std)
            for name, value in zip(samples, (z1, z2, z1_mean, z1_std), strict=True):
                samples[name].append(value)
        stacked = {name: th.stack(values, dim=1) for name, values in samples.items()}
        # The prior p(z1_{t+1} | z2_t, a_t) at the drawn z2: no sample depends on it, so all steps in one call after the
        # loop; p(z1_1) = N(0, I) at the first step and at restarts.
        z2_all = stacked["z2"]
        prior_mean, prior_std = self.z1_prior(z2_all[:, :-1], actions)
        restart = th.ones_like(z2_all[:, :, :1], dtype=th.bool)
        if observed is not None:
            restart[:, 1:, 0] = (observed[:, 1:] > 0) & (observed[:, :-1] == 0)
        else:
            restart[:, 1:] = False
        zeros = th.zeros_like(stacked["z1_mean"][:, :1])
        prior_mean = th.where(restart, 0.0, th.cat([zeros, prior_mean], dim=1))
        prior_std = th.where(restart, 1.0, th.cat([zeros + 1.0, prior_std], dim=1))
        return LatentSample(z1_prior_mean=prior_mean, z1_prior_std=prior_std, **stacked)

    def elbo(
        self, images: th.Tensor, actions: th.Tensor, rewards: th.Tensor, observed: th.Tensor | None = None
    ) -> tuple[ElboTerms, LatentSample, th.Tensor]:
        """The ELBO's pieces on a batch of sequences, with the posterior samples and the decoder's mean images.

        :param images: ``(B, S, C, H, W)`` uint8 frames
        :param actions: ``(B, S - 1, action_dim)``
        :param rewards: ``(B, S - 1, 1)``
        :param observed: ``(B, S)`` 1 for observed steps, 0 for the padding before an episode's first observation
        """
        posterior = self.posterior(self.encode(images), actions, observed)
        latents = posterior.latents
        image_means = self.decoder(latents)
        reward_mean, reward_std = self.reward(latents[:, :-1], actions, latents[:, 1:])
        terms = elbo_terms(
            scale_images(images), image_means, posterior, rewards, reward_mean, reward_std, self.decoder_std, observed
        )
        return terms, posterior, image_means

    def loss(
        self, images: th.Tensor, actions: th.Tensor, rewards: th.Tensor, observed: th.Tensor | None = None
    ) -> tuple[th.Tensor, ElboTerms]:
        """``-(log p(x | z) - KL + log p(r | z, a, z'))`` summed over the observed steps, averaged over the batch: the
        model's loss (§5, appendix B)."""
        terms, _, _ = self.elbo(images, actions, rewards, observed)
        loss = (terms.kl - terms.image_log_likelihood - terms.reward_log_likelihood).mean()
        return loss, terms


def scale_images(images: th.Tensor) -> th.Tensor:
    """uint8 frames -> floats in ``[0, 1]``: what the encoder reads and the decoder's Gaussian models."""
    return images.float().div_(255.0) if images.dtype == th.uint8 else images.float() / 255.0

"""Dreamer's world model: PlaNet's recurrent state-space model (RSSM) with Dreamer's encoder, decoder and reward model
(Hafner et al., "Learning Latent Dynamics for Planning from Pixels", ICML 2019, §3; "Dream to Control", ICLR 2020,
§3 and appendix A).

The latent state of step ``t`` has a deterministic part ``h_t`` (the GRU's 200 units) and a stochastic part ``s_t``
(a 30-dimensional diagonal Gaussian):

* deterministic transition ``h_t = GRU(h_{t-1}, [s_{t-1}, a_{t-1}])``;
* prior ``p(s_t | h_t)`` (what the model imagines with) and posterior ``q(s_t | h_t, e_t)`` of the frame's embedding
  ``e_t`` (what it filters real frames with);
* decoder ``p(o_t | h_t, s_t)``: a unit-variance Gaussian over pixels scaled to ``[-0.5, 0.5]``, its mean from
  transposed convolutions;
* reward model ``p(r_t | h_t, s_t)``: a unit-variance Gaussian; ``r_t`` is the reward of the action that *led to*
  step ``t``'s state (PlaNet's convention), so imagined rollouts score the states they reach.

The model trains on the ELBO (:func:`model_loss`): ``sum_t [log p(o_t) + log p(r_t) - max(KL(q_t || p_t), free
nats)]``, the KL clamped below ``free_nats`` (3) on its batch mean as in Dreamer's code. Sizes are Dreamer's appendix
A: the convolutional encoder and decoder of Ha & Schmidhuber's world models on 64 x 64 frames (depth 32; 32 x 32
frames, for CPU-scale runs, drop the outermost layer of each), the RSSM's
200-unit GRU and hidden layers, 30 stochastic units of minimum standard deviation 0.1, ELU activations. The reward
model follows Dreamer's code (github:danijar/dreamer, which produced the published scores) rather than the paper's
text: two dense layers of 400 (the text says three of 300).

:func:`keras_initialization_` gives the networks the initialization Dreamer's code has (its Keras layers' defaults).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch as th
from torch import nn
from torch.nn import functional as F

from sb3_gaara.common.distributions import gaussian_kl, gaussian_log_prob

#: the frame sides the encoder and decoder are built for: Dreamer's 64 x 64, and 32 x 32 with the outermost layer of
#: each dropped (the package's CPU-scale runs: a quarter of the pixels, for checks that must run in minutes on a CPU)
IMAGE_SIZES = (64, 32)
#: the decoder's transposed-convolution kernels per frame side: 1 -> 5 -> 13 -> 30 -> 64, and 1 -> 5 -> 14 -> 32
DECODER_KERNELS = {64: (5, 5, 6, 6), 32: (5, 6, 6)}
#: the stochastic state's smallest standard deviation (Dreamer's 0.1: keeps the KL finite)
MIN_STD = 0.1


def check_image_size(height: int, width: int) -> None:
    """Refuse frames the encoder and decoder are not built for, naming the fix."""
    if height != width or height not in IMAGE_SIZES:
        raise ValueError(
            f"Dreamer's encoder and decoder are built for 64 x 64 frames (the paper's; 32 x 32 for CPU-scale runs), got "
            f"{height} x {width}. Render the env at 64 px: dmc-*: env_kwargs=dict(height=64, width=64); PixelReach-v0: "
            "size=64."
        )


class RSSMState(NamedTuple):
    """A batch of latent states (any leading shape): the GRU's ``deter`` (``h``) and the stochastic ``stoch`` (``s``)
    with the Gaussian it was drawn from (``mean``, ``std``; for a state that was not drawn, zeros and ones)."""

    deter: th.Tensor
    stoch: th.Tensor
    mean: th.Tensor
    std: th.Tensor

    @property
    def features(self) -> th.Tensor:
        """``[s, h]``: what the decoder, the reward model, the actor and the value read."""
        return th.cat([self.stoch, self.deter], dim=-1)

    def detach(self) -> RSSMState:
        return RSSMState(*(tensor.detach() for tensor in self))

    def flatten(self) -> RSSMState:
        """Leading dimensions merged into one (``(B, T, d)`` -> ``(B * T, d)``)."""
        return RSSMState(*(tensor.reshape(-1, tensor.shape[-1]) for tensor in self))

    def masked(self, keep: th.Tensor) -> RSSMState:
        """Each state multiplied by ``keep`` (``(B, 1)``): zeros where an episode restarts."""
        return RSSMState(self.deter * keep, self.stoch * keep, self.mean * keep, self.std * keep + (1 - keep))


def _gaussian_head(hidden: th.Tensor, layer: nn.Linear) -> tuple[th.Tensor, th.Tensor]:
    mean, raw_std = layer(hidden).chunk(2, dim=-1)
    return mean, F.softplus(raw_std) + MIN_STD


class RSSM(nn.Module):
    """PlaNet's recurrent state-space model (module docstring), one step at a time.

    :param action_dim: action dimensions
    :param embed_dim: size of the encoder's embedding of a frame
    :param deter_size: GRU units (200)
    :param stoch_size: stochastic units (30)
    :param hidden_size: units of the hidden layer before the GRU and before each Gaussian (200)
    """

    def __init__(self, action_dim: int, embed_dim: int, deter_size: int = 200, stoch_size: int = 30, hidden_size: int = 200):
        super().__init__()
        self.action_dim = action_dim
        self.deter_size = deter_size
        self.stoch_size = stoch_size
        self.input_layer = nn.Linear(stoch_size + action_dim, hidden_size)
        self.gru = nn.GRUCell(hidden_size, deter_size)
        self.prior_hidden = nn.Linear(deter_size, hidden_size)
        self.prior_out = nn.Linear(hidden_size, 2 * stoch_size)
        self.posterior_hidden = nn.Linear(deter_size + embed_dim, hidden_size)
        self.posterior_out = nn.Linear(hidden_size, 2 * stoch_size)

    @property
    def features_dim(self) -> int:
        return self.stoch_size + self.deter_size

    def initial_state(self, batch_size: int, device: th.device | str) -> RSSMState:
        """The state before an episode's first step: zeros (Dreamer's), unit std."""
        zeros = th.zeros(batch_size, self.stoch_size, device=device)
        return RSSMState(th.zeros(batch_size, self.deter_size, device=device), zeros, zeros, th.ones_like(zeros))

    def imagine_step(self, state: RSSMState, action: th.Tensor, sample: bool = True) -> RSSMState:
        """The prior's next state: ``h' = GRU(h, [s, a])``, ``s' ~ p(s' | h')`` (reparametrized; its mean when
        ``sample`` is False)."""
        hidden = F.elu(self.input_layer(th.cat([state.stoch, action], dim=-1)))
        deter = self.gru(hidden, state.deter)
        mean, std = _gaussian_head(F.elu(self.prior_hidden(deter)), self.prior_out)
        stoch = mean + std * th.randn_like(mean) if sample else mean
        return RSSMState(deter, stoch, mean, std)

    def observe_step(
        self, state: RSSMState, action: th.Tensor, embed: th.Tensor, sample: bool = True
    ) -> tuple[RSSMState, RSSMState]:
        """``(posterior, prior)`` of the next step given its frame's embedding: the prior's transition, then
        ``s' ~ q(s' | h', e')``."""
        prior = self.imagine_step(state, action, sample=sample)
        hidden = F.elu(self.posterior_hidden(th.cat([prior.deter, embed], dim=-1)))
        mean, std = _gaussian_head(hidden, self.posterior_out)
        stoch = mean + std * th.randn_like(mean) if sample else mean
        return RSSMState(prior.deter, stoch, mean, std), prior

    def observe(self, embeds: th.Tensor, actions: th.Tensor, observed: th.Tensor | None = None) -> tuple[RSSMState, RSSMState]:
        """Filter sequences: posteriors and priors ``(B, T, ...)`` of the frames' embeddings ``(B, T, embed_dim)``
        given the actions between them ``(B, T - 1, action_dim)``.

        The first step starts from :meth:`initial_state` and a zero action, as an episode does; so does every step
        whose predecessor is padding (``observed`` ``(B, T)`` 0 before an episode's first frame,
        :class:`~sb3_gaara.common.sequence_buffer.SequenceReplayBuffer`), so a replayed sequence is filtered exactly as
        the episode was while acting."""
        batch, steps = embeds.shape[:2]
        state = self.initial_state(batch, embeds.device)
        action = th.zeros(batch, self.action_dim, device=embeds.device)
        posteriors, priors = [], []
        for t in range(steps):
            if t > 0:
                action = actions[:, t - 1]
                if observed is not None:
                    keep = observed[:, t - 1 : t]
                    state, action = state.masked(keep), action * keep
            posterior, prior = self.observe_step(state, action, embeds[:, t])
            posteriors.append(posterior)
            priors.append(prior)
            state = posterior
        return _stack(posteriors), _stack(priors)


def _stack(states: list[RSSMState]) -> RSSMState:
    return RSSMState(*(th.stack(tensors, dim=1) for tensors in zip(*states, strict=True)))


class ConvEncoder(nn.Module):
    """Convolutions of kernel 4 and stride 2 (``depth`` x 1, 2, 4, 8 channels, ReLU) from a 64 px frame to a 2 x 2 map
    of ``8 * depth`` channels: a ``32 * depth`` embedding (1024 at Dreamer's depth 32). A 32 px frame takes the first
    three (a ``16 * depth`` embedding). Frames are uint8; they are scaled to ``[-0.5, 0.5]``."""

    def __init__(self, channels: int, depth: int = 32, image_size: int = 64) -> None:
        super().__init__()
        check_image_size(image_size, image_size)
        widths = [depth * 2**index for index in range(len(DECODER_KERNELS[image_size]))]
        layers: list[nn.Module] = []
        for in_channels, out_channels in zip([channels, *widths[:-1]], widths, strict=True):
            layers += [nn.Conv2d(in_channels, out_channels, 4, stride=2), nn.ReLU()]
        self.convs = nn.Sequential(*layers)
        self.embed_dim = 4 * widths[-1]  # a 2 x 2 map

    def forward(self, frames: th.Tensor) -> th.Tensor:
        """``(..., C, S, S)`` uint8 -> ``(..., embed_dim)``."""
        leading = frames.shape[:-3]
        x = preprocess(frames).reshape(-1, *frames.shape[-3:])
        return self.convs(x).reshape(*leading, self.embed_dim)


class ConvDecoder(nn.Module):
    """The encoder's mirror: a linear layer to ``32 * depth`` units as a 1 x 1 map, then transposed convolutions of
    kernels 5, 5, 6, 6 at stride 2 (``depth`` x 4, 2, 1 channels, ReLU, then ``channels``) to a 64 px mean frame
    in ``[-0.5, 0.5]`` units. For 32 px frames: ``16 * depth`` units, kernels 5, 6, 6, ``depth`` x 2, 1 channels."""

    def __init__(self, features_dim: int, channels: int, depth: int = 32, image_size: int = 64) -> None:
        super().__init__()
        check_image_size(image_size, image_size)
        kernels = DECODER_KERNELS[image_size]
        widths = [depth * 2**index for index in reversed(range(len(kernels) - 1))]
        self.linear = nn.Linear(features_dim, 4 * depth * 2 ** (len(kernels) - 1))
        layers: list[nn.Module] = []
        for in_channels, out_channels, kernel in zip(
            [self.linear.out_features, *widths], [*widths, channels], kernels, strict=True
        ):
            layers += [nn.ConvTranspose2d(in_channels, out_channels, kernel, stride=2), nn.ReLU()]
        self.deconvs = nn.Sequential(*layers[:-1])  # no activation on the mean

    def forward(self, features: th.Tensor) -> th.Tensor:
        """``(..., features_dim)`` -> ``(..., C, S, S)``."""
        leading = features.shape[:-1]
        x = self.linear(features).reshape(-1, self.linear.out_features, 1, 1)
        images = self.deconvs(x)
        return images.reshape(*leading, *images.shape[1:])


def preprocess(frames: th.Tensor) -> th.Tensor:
    """uint8 frames to floats in ``[-0.5, 0.5]`` (Dreamer's scaling; the decoder's target)."""
    return frames.float() / 255.0 - 0.5


def keras_initialization_(module: nn.Module) -> None:
    """Re-initialize ``module``'s layers in place as Keras initializes them by default, which is what Dreamer's code
    (TensorFlow 2, Keras layers with no initializer given) trains from; PyTorch's defaults differ (uniform in
    ``1/sqrt(fan_in)`` for weights *and* biases, Kaiming's ``a = sqrt(5)``).

    * dense, convolution and transposed-convolution weights: Glorot uniform, ``U(-b, b)`` with
      ``b = sqrt(6 / (fan_in + fan_out))`` (the fans count the kernel's receptive field, as Keras does);
    * the GRU's input weights ``weight_ih``: Glorot uniform over the whole ``(3 * hidden, input)`` matrix (Keras's
      ``kernel`` of shape ``(input, 3 * hidden)``, one draw for the three gates);
    * the GRU's recurrent weights ``weight_hh``: orthogonal over the whole ``(3 * hidden, hidden)`` matrix. Keras draws
      its ``recurrent_kernel`` of shape ``(hidden, 3 * hidden)`` as one orthogonal matrix with orthonormal rows;
      PyTorch's ``weight_hh`` is its transpose (gates reordered), so its columns are orthonormal:
      ``weight_hh^T weight_hh = I``. The gates' blocks are not each orthogonal; their Gram matrices sum to ``I``;
    * every bias zero (Keras's ``GRUCell`` with ``reset_after=True``, TensorFlow 2's default, has an input and a
      recurrent bias, like PyTorch's ``bias_ih`` and ``bias_hh``).
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.GRUCell):
            nn.init.xavier_uniform_(layer.weight_ih)
            nn.init.orthogonal_(layer.weight_hh)
            for bias in (layer.bias_ih, layer.bias_hh):
                if bias is not None:
                    nn.init.zeros_(bias)


class DenseHead(nn.Module):
    """``layers`` dense layers of ``units`` ELUs and a linear output: the reward model, the value and the actor.
    Dreamer's code gives them 400 units and 2, 3 and 4 layers; the paper's appendix A says three layers of 300."""

    def __init__(self, input_dim: int, output_dim: int, units: int = 400, layers: int = 3) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for index in range(layers):
            modules += [nn.Linear(input_dim if index == 0 else units, units), nn.ELU()]
        modules.append(nn.Linear(units if layers else input_dim, output_dim))
        self.net = nn.Sequential(*modules)

    def forward(self, features: th.Tensor) -> th.Tensor:
        return self.net(features)


class ModelTerms(NamedTuple):
    """The world model's objective on a batch of sequences: each term a mean over the observed steps."""

    #: the loss minimized: ``kl_scale * max(kl, free_nats) - image_log_likelihood - reward_log_likelihood``
    loss: th.Tensor
    #: ``log p(o_t | h_t, s_t)`` per frame (summed over pixels)
    image_log_likelihood: th.Tensor
    #: ``log p(r_t | h_t, s_t)`` per reward
    reward_log_likelihood: th.Tensor
    #: ``KL(q(s_t | h_t, e_t) || p(s_t | h_t))`` per step (summed over the stochastic units), before the clamp
    kl: th.Tensor
    #: mean squared error of the decoded frames per pixel, in ``[0, 1]`` pixel units (a readable progress figure)
    reconstruction_mse: th.Tensor
    #: mean squared error of the predicted rewards
    reward_mse: th.Tensor


def model_loss(
    images: th.Tensor,
    image_means: th.Tensor,
    rewards: th.Tensor,
    reward_means: th.Tensor,
    posterior: RSSMState,
    prior: RSSMState,
    observed: th.Tensor,
    free_nats: float = 3.0,
    kl_scale: float = 1.0,
    kl_balance: float | None = None,
) -> ModelTerms:
    """Dreamer's world-model loss on ``(B, T)`` sequences (module docstring).

    :param images: ``(B, T, C, H, W)`` the frames in ``[-0.5, 0.5]``
    :param image_means: ``(B, T, C, H, W)`` the decoder's means
    :param rewards: ``(B, T - 1)`` the reward of the action between steps ``t`` and ``t + 1``
    :param reward_means: ``(B, T - 1)`` the reward model's means at steps ``1 .. T - 1`` (the states the actions led to)
    :param posterior: ``(B, T, ...)`` the filtered states
    :param prior: ``(B, T, ...)`` the prior's predictions of them
    :param observed: ``(B, T)`` 1 for the steps of the episode, 0 for padding: padded frames, and rewards of actions
        taken from padding, count in no term
    :param free_nats: the KL's floor (3): below it the KL has no gradient, so the model keeps information in ``s``
    :param kl_scale: the KL's weight (1)
    :param kl_balance: ``None`` (Dreamer): one KL trains the prior and the posterior alike. A number ``alpha`` in
        ``[0, 1]`` is DreamerV2's KL balancing (Hafner et al. 2021, §2): ``alpha * KL(sg(q) || p) + (1 - alpha) *
        KL(q || sg(p))``, each clamped at ``free_nats``, so the prior moves towards the posterior faster than the
        posterior gives up information (``kl`` is reported as before)
    """
    steps = observed.sum().clamp(min=1.0)
    image_log_prob = gaussian_log_prob(images, image_means, 1.0).flatten(2).sum(-1)
    image_log_likelihood = (image_log_prob * observed).sum() / steps
    transitions = observed[:, :-1]
    n_rewards = transitions.sum().clamp(min=1.0)
    reward_log_likelihood = (gaussian_log_prob(rewards, reward_means, 1.0) * transitions).sum() / n_rewards

    def mean_kl(q_mean: th.Tensor, q_std: th.Tensor, p_mean: th.Tensor, p_std: th.Tensor) -> th.Tensor:
        return (gaussian_kl(q_mean, q_std, p_mean, p_std).sum(-1) * observed).sum() / steps

    kl = mean_kl(posterior.mean, posterior.std, prior.mean, prior.std)
    if kl_balance is None:
        kl_loss = th.clamp(kl, min=free_nats)
    else:
        to_prior = mean_kl(posterior.mean.detach(), posterior.std.detach(), prior.mean, prior.std)
        to_posterior = mean_kl(posterior.mean, posterior.std, prior.mean.detach(), prior.std.detach())
        kl_loss = kl_balance * th.clamp(to_prior, min=free_nats) + (1 - kl_balance) * th.clamp(to_posterior, min=free_nats)
    loss = kl_scale * kl_loss - image_log_likelihood - reward_log_likelihood
    with th.no_grad():
        pixels = math.prod(images.shape[2:])
        reconstruction_mse = (((images - image_means) ** 2).flatten(2).sum(-1) * observed).sum() / (steps * pixels)
        reward_mse = (((rewards - reward_means) ** 2) * transitions).sum() / n_rewards
    return ModelTerms(loss, image_log_likelihood, reward_log_likelihood, kl, reconstruction_mse, reward_mse)


class WorldModel(nn.Module):
    """The encoder, the RSSM, the decoder and the reward model, trained together by :func:`model_loss` with one
    optimizer (``optimizer``, set by the policy).

    :param channels: channels of a frame (3 for RGB)
    :param action_dim: action dimensions
    :param image_size: side of the square frames (64; 32 for CPU-scale runs)
    :param depth: the convolutions' base channels (32)
    :param deter_size: GRU units (200)
    :param stoch_size: stochastic units (30)
    :param hidden_size: the RSSM's hidden units (200)
    :param units: units of the reward model's dense layers (Dreamer's code: 400; the paper's text: 300)
    :param reward_layers: the reward model's dense layers (Dreamer's code: 2; the paper's text: 3)
    """

    optimizer: th.optim.Optimizer

    def __init__(
        self,
        channels: int,
        action_dim: int,
        image_size: int = 64,
        depth: int = 32,
        deter_size: int = 200,
        stoch_size: int = 30,
        hidden_size: int = 200,
        units: int = 400,
        reward_layers: int = 2,
    ) -> None:
        super().__init__()
        self.encoder = ConvEncoder(channels, depth, image_size)
        self.rssm = RSSM(action_dim, self.encoder.embed_dim, deter_size, stoch_size, hidden_size)
        self.decoder = ConvDecoder(self.rssm.features_dim, channels, depth, image_size)
        self.reward_model = DenseHead(self.rssm.features_dim, 1, units, reward_layers)

    @property
    def features_dim(self) -> int:
        return self.rssm.features_dim

    def reward(self, features: th.Tensor) -> th.Tensor:
        """The reward model's mean, ``(...,)``."""
        return self.reward_model(features).squeeze(-1)

    def loss(
        self,
        observations: th.Tensor,
        actions: th.Tensor,
        rewards: th.Tensor,
        observed: th.Tensor,
        free_nats: float = 3.0,
        kl_scale: float = 1.0,
        kl_balance: float | None = None,
    ) -> tuple[ModelTerms, RSSMState]:
        """The model's terms on replayed sequences and their posterior states (which behaviour learning starts from).

        :param observations: ``(B, T, C, 64, 64)`` uint8
        :param actions: ``(B, T - 1, action_dim)``
        :param rewards: ``(B, T - 1)`` or ``(B, T - 1, 1)``
        :param observed: ``(B, T)``
        """
        embeds = self.encoder(observations)
        posterior, prior = self.rssm.observe(embeds, actions, observed)
        features = posterior.features
        image_means = self.decoder(features)
        reward_means = self.reward(features[:, 1:])
        terms = model_loss(
            preprocess(observations),
            image_means,
            rewards.reshape(reward_means.shape),
            reward_means,
            posterior,
            prior,
            observed,
            free_nats=free_nats,
            kl_scale=kl_scale,
            kl_balance=kl_balance,
        )
        return terms, posterior

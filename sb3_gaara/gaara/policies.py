"""Policy of SAC+GAARA: SB3's SAC policy with tied pixel encoders, a decoder and a comparison module."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.distributions import (
    DiagGaussianDistribution,
    SquashedDiagGaussianDistribution,
    TanhBijector,
    sum_independent_dims,
)
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.preprocessing import get_action_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn

from sb3_gaara.common.torch_layers import (
    PixelDecoder,
    PixelEncoder,
    orthogonal_weight_init,
    tied_encoder_kwargs,
    weight_init,
)
from sb3_gaara.gaara.comparison import ComparisonModule

#: ``conv_dtype`` names of :class:`GAARAPolicy` and the autocast dtype of each (``None``: no autocast)
CONV_DTYPES: dict[str, th.dtype | None] = {"float32": None, "bfloat16": th.bfloat16}


def tanh_log_abs_det_jacobian(gaussian_actions: th.Tensor) -> th.Tensor:
    """``log |d tanh(u) / du| = log(1 - tanh(u)^2)``, elementwise, written ``2 (log 2 - u - softplus(-2 u))``.

    The two forms are equal; this one stays exact where ``tanh(u)^2`` rounds to 1 (``|u|`` beyond about 9 in
    float32), and it has no ``epsilon``. The identity: ``1 - tanh(u)^2 = 4 / (e^u + e^-u)^2``, and
    ``log(e^u + e^-u) = u + softplus(-2 u)``.
    """
    return 2.0 * (math.log(2.0) - gaussian_actions - F.softplus(-2.0 * gaussian_actions))


class ExactSquashedDiagGaussianDistribution(SquashedDiagGaussianDistribution):
    """SB3's tanh-squashed diagonal Gaussian with the exact change of variables (:func:`tanh_log_abs_det_jacobian`).

    SB3 subtracts ``log(1 - tanh(u)^2 + 1e-6)``, which agrees with the exact term for ordinary actions but floors it
    at ``log(1e-6)`` per dimension as the action saturates, so its log-probability comes out lower than the
    density's: per dimension by 1e-4 nats at ``|u| = 3``, 0.04 at 6, 0.27 at 7, 2.9 at 9 and 8.8 at 12.
    Sampling, the mode and the actions are SB3's.
    """

    def log_prob(self, actions: th.Tensor, gaussian_actions: th.Tensor | None = None) -> th.Tensor:
        if gaussian_actions is None:
            # Only for actions given from outside; sampled ones come with their pre-tanh value.
            gaussian_actions = TanhBijector.inverse(actions)
        log_prob = DiagGaussianDistribution.log_prob(self, gaussian_actions)
        return log_prob - sum_independent_dims(tanh_log_abs_det_jacobian(gaussian_actions))


#: ``squash_correction`` names of :class:`GAARAPolicy` and the action distribution of each
SQUASH_CORRECTIONS: dict[str, type[SquashedDiagGaussianDistribution]] = {
    "clamped": SquashedDiagGaussianDistribution,
    "exact": ExactSquashedDiagGaussianDistribution,
}

#: ``conv_init`` names of :class:`GAARAPolicy` and the initialisation each applies to every actor, critic and decoder
#: layer (the Linear layers are orthogonal in both)
CONV_INITS: dict[str, Callable[[nn.Module], None]] = {"delta_orthogonal": weight_init, "orthogonal": orthogonal_weight_init}


class GAARAActor(Actor):
    """SB3's SAC actor with the SAC+AE log-std parameterisation.

    SB3 clamps ``log_std`` into ``[-20, 2]``; SAC+AE squashes it with ``tanh`` into
    ``[log_std_min, log_std_max] = [-10, 2]``, which keeps a gradient at the bounds.
    Its encoder is a :class:`PixelEncoder` whose convolutions are the critic's, run detached.

    :param squash_correction: the log-determinant of the tanh squashing in the log-probability, a name of
        :data:`SQUASH_CORRECTIONS` (see :class:`GAARAPolicy`)
    """

    def __init__(
        self,
        *args: Any,
        log_std_min: float = -10.0,
        log_std_max: float = 2.0,
        squash_correction: str = "clamped",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.squash_correction = squash_correction
        if not self.use_sde:
            # SB3 annotates the attribute with its gSDE branch's type; without gSDE it is a squashed Gaussian.
            self.action_dist = SQUASH_CORRECTIONS[squash_correction](get_action_dim(self.action_space))  # type: ignore[assignment]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(log_std_min=self.log_std_min, log_std_max=self.log_std_max, squash_correction=self.squash_correction)
        return data

    def dist_params_from_features(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:
        """Mean and log-std of the Gaussian before the tanh squashing, from encoder features."""
        latent_pi = self.latent_pi(features)
        mean_actions = self.mu(latent_pi)
        log_std = th.tanh(self.log_std(latent_pi))  # type: ignore[operator]
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (log_std + 1)
        return mean_actions, log_std, {}

    def get_action_dist_params(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor, dict[str, th.Tensor]]:  # type: ignore[override]
        return self.dist_params_from_features(self.extract_features(obs, self.features_extractor))

    def action_log_prob_from_features(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """Sampled (squashed) action and its log-probability, from encoder features."""
        mean_actions, log_std, kwargs = self.dist_params_from_features(features)
        return self.action_dist.log_prob_from_params(mean_actions, log_std, **kwargs)


class GAARACritic(ContinuousCritic):
    """SB3's twin-Q critic, with a way to evaluate the Q heads on features computed elsewhere."""

    def q_from_features(self, features: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        qvalue_input = th.cat([features, actions], dim=1)
        return tuple(q_net(qvalue_input) for q_net in self.q_networks)


class GAARAPolicy(SACPolicy):
    """Actor, twin critic, target critic, pixel decoder and comparison module of SAC+GAARA.

    Gradient routing (the opposite of SB3's ``share_features_extractor``, where only the actor
    trains a shared extractor):

    * the critic owns a :class:`PixelEncoder`, trained by the critic loss and the auxiliary losses;
    * the actor owns a second encoder whose *convolutions are the critic's* (one set of weights) and
      whose Linear + LayerNorm are its own; it runs the convolutions detached, so the actor loss never
      moves them (SAC+AE §6);
    * the target critic is an EMA copy of the critic, encoder included.

    Observations may be full renders (``9 x 100 x 100``): the encoders center-crop to ``image_size``,
    so ``predict`` needs no special path.

    :param image_size: side of the crops the convolutions see (84)
    :param log_std_min: lower bound of the actor's log-std (-10)
    :param log_std_max: upper bound of the actor's log-std (2)
    :param use_decoder: build the pixel decoder (reconstruction variants)
    :param use_comparison: build the bilinear comparison module ``W`` (contrastive variants)
    :param channels_last: run convolutions on NHWC tensors (same results, faster oneDNN / cuDNN kernels)
    :param fused_optimizers: use PyTorch's fused Adam, one kernel per step instead of one per parameter
        and operation (same update rule; about 4x faster optimizer steps on the CPU)
    :param conv_dtype: ``"float32"`` (default), or ``"bfloat16"`` to run the encoder's and the decoder's
        convolutions under autocast in bfloat16: mixed precision, opt-in. Weights, optimizer states, the
        Linear layers, the Q and policy heads and every loss stay float32; bfloat16 keeps float32's range,
        so no loss scaling is needed. It pays where the hardware computes in bfloat16 (recent GPUs; CPUs
        with AVX512-BF16 or AMX); elsewhere it can be slower. Results are not bit-identical to float32.
    :param conv_init: how the convolutions start (the Linear layers are orthogonal, biases zero, either way).
        ``"delta_orthogonal"`` (default; SAC+AE's and CURL's code): an orthogonal matrix at each kernel's centre tap
        and zeros elsewhere, so that every convolution starts as an orthogonal map of the centre pixel.
        ``"orthogonal"`` (DrQ's and DrQ-v2's code): the whole kernel, flattened to ``(out, in * k * k)``, orthogonal,
        so every tap starts non-zero. Both use the ReLU gain.
    :param squash_correction: the log-determinant of the tanh squashing subtracted in ``log pi(a|s)``.
        ``"clamped"`` (default; SB3's ``log(1 - tanh(u)^2 + 1e-6)``, equal to SAC+AE's and CURL's
        ``log(relu(1 - tanh(u)^2) + 1e-6)``, since ``tanh(u)^2 <= 1``): the Jacobian is floored at 1e-6.
        ``"exact"`` (DrQ's code): ``2 (log 2 - u - softplus(-2 u))``, with no floor. The two agree for ordinary
        actions; as an action saturates the clamped log-probability falls below the density, which overstates the
        entropy the temperature and the target see (per dimension by 1e-4 nats at ``|u| = 3``, 0.04 at 6, 2.9 at 9,
        8.8 at 12).

    Other parameters are SB3's ``SACPolicy``'s; ``net_arch`` defaults to ``[1024, 1024]`` and the features
    extractor to :class:`PixelEncoder` with ``features_dim=50``.
    """

    actor: GAARAActor
    critic: GAARACritic
    critic_target: GAARACritic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        use_sde: bool = False,
        log_std_init: float = -3,
        use_expln: bool = False,
        clip_mean: float = 2.0,
        features_extractor_class: type[BaseFeaturesExtractor] = PixelEncoder,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        share_features_extractor: bool = False,
        image_size: int = 84,
        log_std_min: float = -10.0,
        log_std_max: float = 2.0,
        use_decoder: bool = True,
        use_comparison: bool = True,
        channels_last: bool = True,
        fused_optimizers: bool = True,
        conv_dtype: str = "float32",
        conv_init: str = "delta_orthogonal",
        squash_correction: str = "clamped",
    ) -> None:
        for name, value, choices in (
            ("conv_init", conv_init, CONV_INITS),
            ("squash_correction", squash_correction, SQUASH_CORRECTIONS),
        ):
            if value not in choices:
                raise ValueError(
                    f"{name}={value!r} is not supported: use one of {sorted(choices)} (GAARAPolicy's docstring says why)."
                )
        if conv_dtype not in CONV_DTYPES:
            hint = " float16 would need loss scaling, which GAARAPolicy does not do;" if conv_dtype == "float16" else ""
            raise ValueError(
                f"conv_dtype={conv_dtype!r} is not supported:{hint} use one of {sorted(CONV_DTYPES)} "
                "(bfloat16 runs the convolutions in mixed precision)."
            )
        gsde_only = {"log_std_init": (log_std_init, -3), "use_expln": (use_expln, False), "clip_mean": (clip_mean, 2.0)}
        ignored = [f"{name}={value!r}" for name, (value, default) in gsde_only.items() if value != default]
        if ignored:
            raise ValueError(
                f"{', '.join(ignored)}: SB3 uses these only with gSDE (use_sde=True), which GAARAPolicy does not support, "
                "so they would be ignored. Remove them from policy_kwargs."
            )
        if use_sde:
            raise ValueError("GAARAPolicy does not support gSDE (use_sde=True): SAC+GAARA explores with its Gaussian policy.")
        features_extractor_kwargs = tied_encoder_kwargs(
            "GAARAPolicy",
            share_features_extractor,
            features_extractor_class,
            features_extractor_kwargs,
            image_size,
            why_pixel_encoder="its convolutions are tied and decoded",
        )
        self.image_size = image_size
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max
        self.use_decoder = use_decoder
        self.use_comparison = use_comparison
        self.channels_last = channels_last
        self.fused_optimizers = fused_optimizers
        self.conv_dtype = conv_dtype
        self.conv_init = conv_init
        self.squash_correction = squash_correction
        if optimizer_kwargs is None and optimizer_class is th.optim.Adam:
            optimizer_kwargs = self.adam_kwargs()
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[1024, 1024] if net_arch is None else net_arch,
            activation_fn=activation_fn,
            use_sde=use_sde,
            log_std_init=log_std_init,
            use_expln=use_expln,
            clip_mean=clip_mean,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            n_critics=n_critics,
            share_features_extractor=False,
        )

    def _build(self, lr_schedule: Schedule) -> None:
        # Critic first: the actor's encoder borrows its convolutions.
        self.critic = self.make_critic(features_extractor=None)
        actor_encoder = self.make_features_extractor()
        assert isinstance(actor_encoder, PixelEncoder)
        self.actor = self.make_actor(features_extractor=actor_encoder.tied(self.critic_encoder, detach_convs=True))

        encoder = self.critic_encoder
        self.decoder: PixelDecoder | None = PixelDecoder.mirroring(encoder).to(self.device) if self.use_decoder else None
        self.comparison: ComparisonModule | None = None
        if self.use_comparison:
            self.comparison = ComparisonModule(encoder.features_dim).to(self.device)

        # SAC+AE (and DrQ) initialise every actor, critic and decoder layer (W keeps CURL's uniform init).
        for module in (self.actor, self.critic, self.decoder):
            if module is not None:
                module.apply(CONV_INITS[self.conv_init])

        self.critic_target = self.make_critic(features_extractor=None)
        if self.channels_last:
            for module in (self.critic, self.critic_target, self.actor, self.decoder):
                if module is not None:
                    module.to(memory_format=th.channels_last)  # type: ignore[call-overload]
        conv_stacks: list[Any] = [self.critic_encoder, self.target_encoder, self.actor.features_extractor, self.decoder]
        for layer in conv_stacks:
            if layer is not None:
                layer.memory_format = th.channels_last if self.channels_last else th.contiguous_format
                layer.conv_dtype = CONV_DTYPES[self.conv_dtype]
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.set_training_mode(False)

        # The tied convolutions belong to the critic: the actor's optimizer must not hold them.
        actor_parameters = [
            param for name, param in self.actor.named_parameters() if not name.startswith("features_extractor.convs.")
        ]
        self.actor.optimizer = self.optimizer_class(actor_parameters, lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def adam_kwargs(self) -> dict[str, Any]:
        """Extra Adam arguments of every optimizer of the model (PyTorch's fused Adam runs on CPU and CUDA)."""
        return {"fused": True} if self.fused_optimizers else {}

    @property
    def critic_encoder(self) -> PixelEncoder:
        """The encoder the critic and the auxiliary losses train."""
        encoder = self.critic.features_extractor
        assert isinstance(encoder, PixelEncoder)
        return encoder

    @property
    def target_encoder(self) -> PixelEncoder:
        """EMA copy of :attr:`critic_encoder` that encodes the positives of the comparison loss."""
        encoder = self.critic_target.features_extractor
        assert isinstance(encoder, PixelEncoder)
        return encoder

    def scale_images(self, obs: th.Tensor) -> th.Tensor:
        """uint8 images to floats in ``[0, 1]``, as SB3's ``preprocess_obs`` does for image spaces.

        The float copy is made directly in the encoders' memory format, so that the encoders need no second copy.
        """
        scaled = obs.to(dtype=th.float32, memory_format=self.critic_encoder.memory_format)
        if not self.normalize_images:
            return scaled
        # In place on the copy; a float tensor already in the target layout is the caller's own: leave it alone.
        return scaled.div(255.0) if scaled is obs else scaled.div_(255.0)

    def encode(self, obs: th.Tensor, target: bool = False) -> th.Tensor:
        """Latent code of uint8 images by the critic's (or with ``target``, the EMA target critic's) encoder."""
        encoder = self.target_encoder if target else self.critic_encoder
        return encoder(self.scale_images(obs))

    def make_actor(self, features_extractor: BaseFeaturesExtractor | None = None) -> GAARAActor:
        actor_kwargs = self._update_features_extractor(self.actor_kwargs, features_extractor)
        return GAARAActor(
            **actor_kwargs,
            log_std_min=self.log_std_min,
            log_std_max=self.log_std_max,
            squash_correction=self.squash_correction,
        ).to(self.device)

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> GAARACritic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return GAARACritic(**critic_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            image_size=self.image_size,
            log_std_min=self.log_std_min,
            log_std_max=self.log_std_max,
            use_decoder=self.use_decoder,
            use_comparison=self.use_comparison,
            channels_last=self.channels_last,
            fused_optimizers=self.fused_optimizers,
            conv_dtype=self.conv_dtype,
            conv_init=self.conv_init,
            squash_correction=self.squash_correction,
        )
        return data

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        for module in (self.decoder, self.comparison):
            if module is not None:
                module.train(mode)


CnnPolicy = GAARAPolicy

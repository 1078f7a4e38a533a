"""Policy of SAC+GAARA: SB3's SAC policy with tied pixel encoders, a decoder and a comparison module."""

from __future__ import annotations

from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.sac.policies import Actor, SACPolicy
from torch import nn

from sb3_gaara.common.torch_layers import ComparisonModule, PixelDecoder, PixelEncoder, tied_encoder_kwargs, weight_init

#: ``conv_dtype`` names of :class:`GAARAPolicy` and the autocast dtype of each (``None``: no autocast)
CONV_DTYPES: dict[str, th.dtype | None] = {"float32": None, "bfloat16": th.bfloat16}


class GAARAActor(Actor):
    """SB3's SAC actor with the SAC+AE log-std parameterisation.

    SB3 clamps ``log_std`` into ``[-20, 2]``; SAC+AE squashes it with ``tanh`` into
    ``[log_std_min, log_std_max] = [-10, 2]``, which keeps a gradient at the bounds.
    Its encoder is a :class:`PixelEncoder` whose convolutions are the critic's, run detached.
    """

    def __init__(self, *args: Any, log_std_min: float = -10.0, log_std_max: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.log_std_min = log_std_min
        self.log_std_max = log_std_max

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(log_std_min=self.log_std_min, log_std_max=self.log_std_max)
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
    ) -> None:
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
        actor_encoder.tie_convs_to(self.critic_encoder)
        actor_encoder.detach_convs = True
        self.actor = self.make_actor(features_extractor=actor_encoder)

        encoder = self.critic_encoder
        self.decoder: PixelDecoder | None = None
        if self.use_decoder:
            self.decoder = PixelDecoder(
                out_channels=encoder.in_channels,
                features_dim=encoder.features_dim,
                image_size=encoder.image_size,
                num_layers=encoder.num_layers,
                num_filters=encoder.num_filters,
            ).to(self.device)
        self.comparison: ComparisonModule | None = None
        if self.use_comparison:
            self.comparison = ComparisonModule(encoder.features_dim).to(self.device)

        # SAC+AE initialises every actor, critic and decoder layer (W keeps CURL's uniform init).
        for module in (self.actor, self.critic, self.decoder):
            if module is not None:
                module.apply(weight_init)

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
        return GAARAActor(**actor_kwargs, log_std_min=self.log_std_min, log_std_max=self.log_std_max).to(self.device)

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
        )
        return data

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        for module in (self.decoder, self.comparison):
            if module is not None:
                module.train(mode)


CnnPolicy = GAARAPolicy

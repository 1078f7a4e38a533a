"""DrQ-v2 (Yarats, Fergus, Lazaric & Pinto, "Mastering Visual Continuous Control: Improved Data-Augmented
Reinforcement Learning", 2021) on Stable-Baselines3's TD3, and the AD(a, d) family built on it.

DrQ-v2 is DDPG from pixels: a deterministic actor explores with Gaussian noise whose standard deviation follows a
schedule, a twin critic learns from n-step returns with clipped double Q, and the only representation learning is
the critic's loss on randomly shifted images. The AD(a, d) study (Mallick, Modi & Sharma, "Image augmentation
and auxiliary loss duo") switches the augmentation (``a``) and a SAC+AE reconstruction decoder (``d``) on and
off: ``DrQv2(augmentation=None)`` is AD(0, 0), ``DrQv2(augmentation=None, reconstruction=True)`` AD(0, 1),
``DrQv2()`` AD(1, 0) and ``DrQv2(reconstruction=True)`` AD(1, 1); :data:`AD_VARIANTS` names them.

The pieces follow SB3's split: :class:`DrQv2Policy` (networks), :class:`DrQv2` (the update), the n-step replay of
:mod:`sb3_gaara.drq.nstep_buffer` (frames stored once), the encoder and decoder of
:mod:`sb3_gaara.common.torch_layers` and the losses of :mod:`sb3_gaara.common.losses`.
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.td3.policies import Actor, TD3Policy
from torch import nn

from sb3_gaara.common.buffers import AugmentedReplayBufferSamples
from sb3_gaara.common.crops import random_shift
from sb3_gaara.common.env_steps import env_steps, get_action_repeat, get_frame_stack
from sb3_gaara.common.losses import preprocess_reconstruction_target, reconstruction_loss
from sb3_gaara.common.preprocessing import (
    check_continuous_action_space,
    check_pixel_observation_space,
    warn_if_single_frame,
)
from sb3_gaara.common.saving import DurableSaves
from sb3_gaara.common.torch_layers import PixelDecoder, PixelEncoder, tied_encoder_kwargs
from sb3_gaara.common.training import CheckedTraining, Recorder
from sb3_gaara.drq.nstep_buffer import NStepPixelReplayBuffer

#: values of ``DrQv2(augmentation=...)``: DrQ's random shift, or none (the AD(0, d) variants)
AUGMENTATIONS: tuple[str | None, ...] = ("shift", None)


class ADVariant(NamedTuple):
    """One variant of the AD(a, d) study: the :class:`DrQv2` arguments that make it, its label and its source."""

    #: ``DrQv2(augmentation=...)``: ``"shift"`` for a = 1, ``None`` for a = 0
    augmentation: str | None
    #: ``DrQv2(reconstruction=...)``: d = 1 adds SAC+AE's decoder
    reconstruction: bool
    #: name in plots and tables
    label: str
    #: where it comes from
    source: str

    @property
    def kwargs(self) -> dict[str, Any]:
        """The :class:`DrQv2` keyword arguments of the variant."""
        return {"augmentation": self.augmentation, "reconstruction": self.reconstruction}


#: The AD(a, d) variants by key (the one table the study's agents, zoo names or Optuna spaces can be derived from).
AD_VARIANTS: dict[str, ADVariant] = {
    "ad00": ADVariant(None, False, "AD(0,0)", "DrQ-v2 without augmentation, no decoder (AD study)"),
    "ad01": ADVariant(None, True, "AD(0,1)", "DrQ-v2 without augmentation, with SAC+AE's decoder (AD study)"),
    "ad10": ADVariant("shift", False, "AD(1,0)", "DrQ-v2 (Yarats et al. 2021): random shifts, no decoder"),
    "ad11": ADVariant("shift", True, "AD(1,1)", "DrQ-v2 with random shifts and SAC+AE's decoder (AD study)"),
}


# ---------------------------------------------------------------------------------------------- pure functions


def linear_stddev(env_step: int | float, start: float, end: float, duration: int | float) -> float:
    """DrQ-v2's exploration schedule: ``start`` at step 0, linearly to ``end`` at ``duration``, constant after.

    Written as the mixture ``(1 - m) start + m end``, ``m = min(step / duration, 1)``, so that ``end`` is reached
    exactly at ``duration``.

    :param env_step: environment steps so far (after action repeat, the papers' x-axis)
    :param duration: environment steps over which the standard deviation decays (positive)
    """
    mix = min(max(float(env_step) / float(duration), 0.0), 1.0)
    return (1.0 - mix) * start + mix * end


def noisy_action(mu: th.Tensor, stddev: float, clip: float | None) -> th.Tensor:
    """``clamp(mu + eps, -1, 1)`` with ``eps ~ N(0, stddev^2)``, clipped to ``[-clip, clip]`` unless ``clip`` is None.

    DrQ-v2's clipped Gaussian around the deterministic action, for the target action and the actor's loss. The
    clamp to the action bounds passes the gradient straight through (its value is the clamped action, its
    gradient that of ``mu + eps``): an action pushed past a bound by the noise still tells the actor which way
    ``Q`` rises, where a plain clamp would give it a zero gradient.
    """
    noise = th.randn_like(mu) * stddev
    if clip is not None:
        noise = noise.clamp(-clip, clip)
    action = mu + noise
    clamped = action.clamp(-1.0, 1.0)
    if not action.requires_grad:
        return clamped
    return action - action.detach() + clamped.detach()


def drqv2_weight_init(module: nn.Module) -> None:
    """DrQ-v2's initialisation: orthogonal Linear weights (gain 1), orthogonal convolution kernels (ReLU gain), zero
    biases. Unlike SAC+AE's delta-orthogonal convolutions, every tap of the kernel is drawn."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight.data)
        if module.bias is not None:
            module.bias.data.fill_(0.0)
    elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.orthogonal_(module.weight.data, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            module.bias.data.fill_(0.0)


# ---------------------------------------------------------------------------------------------- networks


class DrQv2Encoder(PixelEncoder):
    """:class:`~sb3_gaara.common.torch_layers.PixelEncoder` that centers the pixels, ``x / 255 - 0.5``, as DrQ-v2 does.

    Its convolutions are DrQ-v2's encoder (four 32-channel 3x3 convolutions, stride 2 then 1, ReLU); its
    Linear -> LayerNorm -> tanh head is DrQ-v2's *trunk*. Each of the actor, the critic and the target critic
    owns one, all on the same convolutions (:class:`DrQv2Policy`). Centered inputs match the 5-bit
    reconstruction target, which lies in ``[-0.5, 0.5)``. SB3's ``preprocess_obs`` has divided by 255 already.
    """

    def forward_conv(self, obs: th.Tensor) -> th.Tensor:
        return super().forward_conv(obs - 0.5)


class DrQv2Critic(ContinuousCritic):
    """SB3's twin-Q critic, with its Q heads evaluated on features computed elsewhere (the shared conv pass)."""

    def q_from_features(self, features: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, ...]:
        qvalue_input = th.cat([features, actions], dim=1)
        return tuple(q_net(qvalue_input) for q_net in self.q_networks)


class DrQv2Policy(TD3Policy):
    """Actor, twin critic, target critic and (for AD(a, 1)) pixel decoder of DrQ-v2.

    * one set of **convolutions** (DrQ-v2's encoder), owned by the critic and trained by the critic loss (and the
      reconstruction loss); ``critic.optimizer`` holds it (DrQ-v2 steps a separate Adam of the same learning rate
      over the same loss, which is the same update);
    * the **critic** reads them through its own trunk (Linear -> LayerNorm -> tanh, 50 features) into two Q
      heads, MLPs of ``net_arch`` (1024, 1024);
    * the **actor** reads them *detached* through its own trunk into ``mu = tanh(MLP)`` (SB3's TD3 ``Actor``);
      its optimizer does not hold the convolutions;
    * the **target critic** is an EMA copy of the critic's trunk and Q heads on the *online* convolutions
      (tied, not averaged): DrQ-v2 encodes the next observation with the online encoder, without gradient.

    There is no target actor (DrQ-v2 has none), unlike SB3's TD3.

    :param image_size: side of the images the convolutions see (84: DrQ-v2 renders 84 px and does not crop)
    :param use_decoder: build SAC+AE's pixel decoder on the critic's latent (``DrQv2(reconstruction=True)``)

    Other parameters are SB3's ``TD3Policy``'s; the optimizers are Adam, fused (``optimizer_kwargs={"fused": True}``)
    unless ``optimizer_kwargs`` is given; ``net_arch`` defaults to ``[1024, 1024]`` and the features extractor
    to :class:`DrQv2Encoder` with ``features_dim=50``.
    """

    actor: Actor
    critic: DrQv2Critic
    critic_target: DrQv2Critic

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | dict[str, list[int]] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = DrQv2Encoder,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
        share_features_extractor: bool = False,
        image_size: int = 84,
        use_decoder: bool = False,
    ) -> None:
        features_extractor_kwargs = tied_encoder_kwargs(
            "DrQv2Policy",
            share_features_extractor,
            features_extractor_class,
            features_extractor_kwargs,
            image_size,
            why_pixel_encoder="its convolutions are tied between the actor, the critic and the target",
        )
        self.image_size = image_size
        self.use_decoder = use_decoder
        if optimizer_kwargs is None and optimizer_class is th.optim.Adam:
            # PyTorch's fused Adam: the same update rule in one kernel per step instead of one per parameter and
            # operation (several times faster on the CPU, as GAARAPolicy measured).
            optimizer_kwargs = {"fused": True}
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[1024, 1024] if net_arch is None else net_arch,
            activation_fn=activation_fn,
            features_extractor_class=features_extractor_class,
            features_extractor_kwargs=features_extractor_kwargs,
            normalize_images=normalize_images,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            n_critics=n_critics,
            share_features_extractor=False,
        )

    def _tied_encoder(self, detach_convs: bool = False) -> PixelEncoder:
        """A new encoder (own trunk) on the critic's convolutions."""
        encoder = self.make_features_extractor()
        assert isinstance(encoder, PixelEncoder)
        return encoder.tied(self.critic_encoder, detach_convs)

    def _build(self, lr_schedule: Schedule) -> None:
        # Critic first: the actor and the target borrow its convolutions.
        self.critic = self.make_critic(features_extractor=None)
        # The actor's convolutions detached: predict() must not build a graph into the critic's convolutions either.
        self.actor = self.make_actor(features_extractor=self._tied_encoder(detach_convs=True))
        encoder = self.critic_encoder
        self.decoder: PixelDecoder | None = PixelDecoder.mirroring(encoder).to(self.device) if self.use_decoder else None
        for module in (self.critic, self.actor, self.decoder):
            if module is not None:
                module.apply(drqv2_weight_init)

        self.critic_target = self.make_critic(features_extractor=self._tied_encoder())
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.set_training_mode(False)

        # The convolutions belong to the critic: the actor's optimizer must not hold them.
        actor_parameters = [
            param for name, param in self.actor.named_parameters() if not name.startswith("features_extractor.convs.")
        ]
        self.actor.optimizer = self.optimizer_class(actor_parameters, lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    @property
    def critic_encoder(self) -> PixelEncoder:
        """The critic's encoder: the convolutions every network reads, and the critic's trunk."""
        encoder = self.critic.features_extractor
        assert isinstance(encoder, PixelEncoder)
        return encoder

    @property
    def actor_encoder(self) -> PixelEncoder:
        """The actor's encoder: the critic's convolutions, detached, and the actor's trunk."""
        encoder = self.actor.features_extractor
        assert isinstance(encoder, PixelEncoder)
        return encoder

    @property
    def target_encoder(self) -> PixelEncoder:
        """The target critic's encoder: the online convolutions and the EMA trunk."""
        encoder = self.critic_target.features_extractor
        assert isinstance(encoder, PixelEncoder)
        return encoder

    def trunk_and_q_parameters(self, target: bool = False) -> list[nn.Parameter]:
        """Parameters of the (target) critic's trunk and Q heads, in the same order: what the EMA averages."""
        critic = self.critic_target if target else self.critic
        return [param for name, param in critic.named_parameters() if not name.startswith("features_extractor.convs.")]

    def make_critic(self, features_extractor: BaseFeaturesExtractor | None = None) -> DrQv2Critic:
        critic_kwargs = self._update_features_extractor(self.critic_kwargs, features_extractor)
        return DrQv2Critic(**critic_kwargs).to(self.device)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(image_size=self.image_size, use_decoder=self.use_decoder)
        return data

    def set_training_mode(self, mode: bool) -> None:
        super().set_training_mode(mode)
        if self.decoder is not None:
            self.decoder.train(mode)


CnnPolicy = DrQv2Policy


# ---------------------------------------------------------------------------------------------- the algorithm


class DrQv2(CheckedTraining, DurableSaves):
    """DrQ-v2: DDPG from pixels with random shifts, n-step returns and a scheduled exploration noise; with
    ``augmentation`` and ``reconstruction`` it is any of the AD(a, d) variants (module docstring).

    ``DrQv2("CnnPolicy", env)`` trains with DrQ-v2's published settings: Adam with learning rate 1e-4 for
    everything, batch 256, ``tau=0.01``, ``gamma=0.99``, 3-step returns, 50 features, hidden layers of 1024, an
    exploration standard deviation from 1.0 down to 0.1, target and actor noise clipped at 0.3, one update every 2
    agent steps. DrQ-v2's task files change some of them per task (the noise schedule, and on the walker and
    humanoid tasks more): ``DrQv2("CnnPolicy", env, **drqv2_task_settings("walker_stand"))`` runs a task as they do
    (:mod:`sb3_gaara.drq.tasks`). Observations are channel-first uint8 stacks of 3 frames rendered at 84 px (give a
    ``dmc-*`` env ``height=84, width=84, frame_stack=3, action_repeat=2``); ``image_size`` is the render size, so
    the buffer's "crop" is the whole frame. Pixels are fed as ``x / 255 - 0.5``, as DrQ-v2 does.

    One update (:meth:`_gradient_step`): shift the observations and the next observations (independently); the
    critic on the n-step target ``R + gamma^k min Q_target(s_{t+k}, clip(mu(s_{t+k}) + eps))``, its loss moving
    the convolutions and the critic; the actor on ``-min Q(s, clip(mu(s) + eps))`` from the convolutions' output
    of *before* the critic's step, detached (as DrQ-v2 reuses it); the EMA of the critic's trunk and Q heads
    (``tau``); with ``reconstruction``, SAC+AE's decoder step on the encoder and the decoder.

    Where it departs from the reference code, and why:

    * n-step returns follow SB3 2.9's ``NStepReplayBuffer``: sums are cut at the end of an episode (termination or
      truncation) and bootstrap with ``gamma^k``; DrQ-v2 never samples a transition with fewer than ``n`` steps
      left in its episode. With DeepMind Control's truncated 1000-step episodes this only adds the last few
      transitions of each episode.
    * ``stddev_schedule_steps`` counts environment steps (after action repeat). The reference code evaluates its
      ``linear(1.0, 0.1, N)`` schedules at the *agent* step, so its N = 500000 ("medium" tasks) is 1M environment
      steps at action repeat 2, and the default, 1M, is that: DrQ-v2's generic configuration in environment steps. Per
      task, the reference code's duration in environment steps (and its task files' other settings) is
      :func:`~sb3_gaara.drq.tasks.drqv2_task_settings`, which ``drqv2.yml`` and the study use.
    * actions are clamped to ``[-1, 1]``; DrQ-v2's truncated normal clamps to ``[-1 + 1e-6, 1 - 1e-6]``.
    * ``learning_starts`` counts agent steps of uniform random actions: 2000 = DrQ-v2's 4000 seed frames at action
      repeat 2 (it also explores uniformly for ``num_expl_steps = 2000`` agent steps, the same steps).
    * ``buffer_size`` defaults to 100k transitions (DrQ-v2: 1M); at 3 x 84 x 84 bytes per stored frame, 100k
      transitions take 2.1 GB of frames.

    :param image_size: side of the images the networks see, the render size for DrQ-v2 (84)
    :param augmentation: ``"shift"`` (DrQ's random shift by up to ``augmentation_pad`` pixels, borders replicated) or
        ``None``
    :param augmentation_pad: the largest shift in pixels (4; the name of ``GAARASAC``'s and ``DrQ``'s argument)
    :param stddev_start: exploration standard deviation at environment step 0 (1.0)
    :param stddev_end: the standard deviation after ``stddev_schedule_steps`` environment steps (0.1)
    :param stddev_schedule_steps: environment steps of the linear decay (1M: DrQ-v2's generic and "medium" 500k agent
        steps at action repeat 2;
        the task's value: :func:`~sb3_gaara.drq.tasks.drqv2_task_settings`)
    :param stddev_clip: bound of the noise of the target action and of the actor loss's action (0.3); the
        exploration noise is not clipped, as in DrQ-v2
    :param action_repeat: simulator steps per agent step, which converts ``num_timesteps`` to environment steps;
        ``None`` (default) reads it from the env (:func:`~sb3_gaara.common.env_steps.get_action_repeat`, 1 when the
        env has none)
    :param reconstruction: add SAC+AE's decoder and its reconstruction loss (the ``d`` of AD(a, d)); its target is
        the unshifted observation, its input the shifted one the critic trained on
    :param encoder_lr: learning rate of the convolutions and the critic's trunk in the reconstruction step (1e-3,
        SAC+AE's)
    :param decoder_lr: learning rate of the decoder (1e-3, SAC+AE's)
    :param decoder_latent_lambda: weight of the L2 penalty on the latent code (1e-6, SAC+AE's)
    :param decoder_weight_lambda: weight decay of the decoder (1e-7, SAC+AE's)

    The other parameters are SB3's ``OffPolicyAlgorithm``'s (``n_steps`` included), with DrQ-v2's defaults.

    DrQv2 stands on SB3's ``OffPolicyAlgorithm``, as TD3 does, rather than on TD3 itself: DrQ-v2 has no target actor,
    no policy delay and a scheduled rather than a constant target noise, so TD3's set-up, update and settings would
    all be overridden or unused. Its policy is a real ``TD3Policy`` (:class:`DrQv2Policy`), whose actor it keeps.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"CnnPolicy": CnnPolicy, "DrQv2Policy": DrQv2Policy}
    #: ``--algo`` name in the RL Zoo
    zoo_name: ClassVar[str] = "drqv2"
    #: arguments that decide the saved networks: ``load`` refuses to override them
    architecture_keys: ClassVar[tuple[str, ...]] = ("image_size", "reconstruction")
    #: why the update is not written for the speed options (``cuda_graphs``, ``overlap_env_step``): the refusal says it
    speed_options_reason: ClassVar[str] = (
        "DrQv2's update is not written for it: it reads the exploration schedule's standard deviation, a host number "
        "that changes with every environment step, and its n-step returns read the transitions after each drawn one, "
        "which the coming environment step may write"
    )
    policy: DrQv2Policy
    actor: Actor
    critic: DrQv2Critic
    critic_target: DrQv2Critic
    replay_buffer: NStepPixelReplayBuffer

    def __init__(
        self,
        policy: str | type[DrQv2Policy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 1e-4,
        buffer_size: int = 100_000,
        learning_starts: int = 2000,
        batch_size: int = 256,
        tau: float = 0.01,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 2,
        gradient_steps: int = 1,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 3,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        image_size: int = 84,
        augmentation: str | None = "shift",
        augmentation_pad: int = 4,
        stddev_start: float = 1.0,
        stddev_end: float = 0.1,
        stddev_schedule_steps: int = 1_000_000,
        stddev_clip: float = 0.3,
        action_repeat: int | None = None,
        reconstruction: bool = False,
        encoder_lr: float = 1e-3,
        decoder_lr: float = 1e-3,
        decoder_latent_lambda: float = 1e-6,
        decoder_weight_lambda: float = 1e-7,
        _init_setup_model: bool = True,
    ) -> None:
        self.image_size = image_size
        self.augmentation = augmentation
        self.augmentation_pad = augmentation_pad
        self.stddev_start = stddev_start
        self.stddev_end = stddev_end
        self.stddev_schedule_steps = stddev_schedule_steps
        self.stddev_clip = stddev_clip
        self.action_repeat = action_repeat
        self.reconstruction = reconstruction
        self.encoder_lr = encoder_lr
        self.decoder_lr = decoder_lr
        self.decoder_latent_lambda = decoder_latent_lambda
        self.decoder_weight_lambda = decoder_weight_lambda
        self._check_hyperparameters(n_steps)
        if _init_setup_model and env is not None and not isinstance(env, str):
            # Fail here, before SB3 wraps the env, with a message that says what to change (not when load() builds
            # the bare model: the saved image_size is restored only afterwards).
            check_pixel_observation_space(env.observation_space, image_size, "DrQv2", "TD3")
            check_continuous_action_space(env.action_space, "DrQv2", "is DDPG")
        super().__init__(
            policy,
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=None,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=n_steps,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            sde_support=False,
            supported_action_spaces=(spaces.Box,),
            support_multi_env=True,
        )
        if _init_setup_model:
            warn_if_single_frame(self.observation_space, type(self).__name__)
            self._setup_model()

    def _check_hyperparameters(self, n_steps: int) -> None:
        """Reject settings that cannot mean what the user wants, naming the fix."""
        if self.augmentation not in AUGMENTATIONS:
            raise ValueError(
                f"Unknown augmentation {self.augmentation!r}: use 'shift' (DrQ's random shift, DrQ-v2 and AD(1, d)) or "
                "None (no augmentation, AD(0, d))."
            )
        pad = self.augmentation_pad
        if isinstance(pad, bool) or not isinstance(pad, (int, np.integer)) or pad < 0:
            raise ValueError(
                f"augmentation_pad must be a non-negative integer number of pixels (DrQ-v2 shifts by up to 4), got {pad!r}."
            )
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise ValueError(
                f"n_steps must be a positive integer number of rewards per return (1: one-step returns; DrQ-v2 uses 3), "
                f"got {n_steps!r}."
            )
        start, end, duration = self.stddev_start, self.stddev_end, self.stddev_schedule_steps
        if start < 0 or end < 0:
            raise ValueError(
                f"The exploration standard deviations must be non-negative, got stddev_start={start}, stddev_end={end} "
                "(DrQ-v2: 1.0 down to 0.1)."
            )
        if end > start:
            raise ValueError(
                f"stddev_end={end} exceeds stddev_start={start}: DrQ-v2's schedule lowers the exploration noise as "
                "training goes on. Swap them, or set both equal for a constant noise."
            )
        if not duration > 0:
            raise ValueError(
                f"stddev_schedule_steps must be a positive number of environment steps (after action repeat) over which "
                f"the noise decays, got {duration!r}; for a constant noise set stddev_end = stddev_start."
            )
        if self.stddev_clip is not None and self.stddev_clip < 0:
            raise ValueError(f"stddev_clip must be non-negative (DrQ-v2: 0.3), got {self.stddev_clip}.")
        repeat = self.action_repeat
        if repeat is not None and (isinstance(repeat, bool) or not isinstance(repeat, (int, np.integer)) or repeat < 1):
            raise ValueError(f"action_repeat must be a positive integer or None (read from the env), got {repeat!r}.")
        for name in ("encoder_lr", "decoder_lr", "decoder_latent_lambda", "decoder_weight_lambda"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)}.")

    def _setup_model(self) -> None:
        """OffPolicyAlgorithm's set-up with the n-step frame-once buffer and :class:`DrQv2Policy`, then the
        reconstruction optimizer."""
        check_pixel_observation_space(self.observation_space, self.image_size, "DrQv2", "TD3")
        check_continuous_action_space(self.action_space, "DrQv2", "is DDPG")
        if self.action_repeat is None:
            self.action_repeat = get_action_repeat(self.env) if self.env is not None else 1
        if self.replay_buffer_class is None:
            self.replay_buffer_class = NStepPixelReplayBuffer
        if not issubclass(self.replay_buffer_class, NStepPixelReplayBuffer):
            raise ValueError(
                f"DrQv2 samples n-step returns from NStepPixelReplayBuffer, got replay_buffer_class="
                f"{self.replay_buffer_class.__name__}: leave replay_buffer_class unset (or subclass NStepPixelReplayBuffer)."
            )
        decided = {"n_steps": self.n_steps, "gamma": self.gamma, "image_size": self.image_size}
        for key, expected in decided.items():
            if key in self.replay_buffer_kwargs and self.replay_buffer_kwargs[key] != expected:
                raise ValueError(
                    f"replay_buffer_kwargs[{key!r}]={self.replay_buffer_kwargs[key]!r} contradicts the model's {key}="
                    f"{expected!r}; set {key} on DrQv2, not in replay_buffer_kwargs."
                )
        frame_stack = get_frame_stack(self.env)
        self.replay_buffer_kwargs = {
            **({} if frame_stack is None else {"frame_stack": frame_stack}),
            **self.replay_buffer_kwargs,
            **decided,
        }
        policy_decided = {"image_size": self.image_size, "use_decoder": bool(self.reconstruction)}
        self.policy_kwargs = {**policy_decided, **self.policy_kwargs}  # a copy: the caller's dict stays as it was
        for key, expected in policy_decided.items():
            if self.policy_kwargs[key] != expected:
                raise ValueError(
                    f"policy_kwargs[{key!r}]={self.policy_kwargs[key]!r} contradicts the model's {expected!r} "
                    f"(image_size={self.image_size}, reconstruction={self.reconstruction}); set it on DrQv2, not in "
                    "policy_kwargs."
                )
        with warnings.catch_warnings():
            # SB3 warns that n_steps is ignored with a custom buffer class: it is not, the buffer gets it above.
            warnings.filterwarnings("ignore", message=r"`n_steps=\d+` is ignored because a custom")
            super()._setup_model()
        self._create_aliases()
        self._trunk_and_q_parameters = self.policy.trunk_and_q_parameters()
        self._target_trunk_and_q_parameters = self.policy.trunk_and_q_parameters(target=True)
        self.reconstruction_optimizer: th.optim.Optimizer | None = None
        if self.reconstruction:
            decoder = self.policy.decoder
            assert decoder is not None
            # SAC+AE's step: one Adam over the encoder (convolutions and the critic's trunk, which together are
            # SAC+AE's encoder) and the decoder, whose group alone carries the weight decay.
            self.reconstruction_optimizer = self.policy.optimizer_class(
                [
                    {"params": list(self.policy.critic_encoder.parameters()), "lr": self.encoder_lr},
                    {"params": list(decoder.parameters()), "lr": self.decoder_lr, "weight_decay": self.decoder_weight_lambda},
                ],
                **self.policy.optimizer_kwargs,
            )

    def _create_aliases(self) -> None:
        self.actor = self.policy.actor
        self.critic = self.policy.critic
        self.critic_target = self.policy.critic_target

    # ------------------------------------------------------------------------------------------ exploration

    def exploration_stddev(self, num_timesteps: int | None = None) -> float:
        """Standard deviation of the exploration and target noise after ``num_timesteps`` agent steps (default: the
        model's), from the schedule over environment steps (agent steps x action repeat)."""
        steps = self.num_timesteps if num_timesteps is None else num_timesteps
        assert self.action_repeat is not None
        return linear_stddev(
            env_steps(steps, self.action_repeat), self.stddev_start, self.stddev_end, self.stddev_schedule_steps
        )

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uniform random actions for ``learning_starts`` agent steps (SB3's), then DrQ-v2's exploration:
        ``clip(mu(s) + N(0, stddev^2), -1, 1)`` in the scaled action space, the noise drawn with ``np.random`` like
        SB3's action noises and not clipped (DrQ-v2 clips only the target's and the actor loss's noise)."""
        if self.num_timesteps < learning_starts:
            return super()._sample_action(learning_starts, action_noise, n_envs)
        assert self._last_obs is not None, "self._last_obs was not set"
        unscaled_action, _ = self.predict(self._last_obs, deterministic=True)
        scaled_action = self.policy.scale_action(unscaled_action)
        noise = np.random.normal(0.0, self.exploration_stddev(), size=scaled_action.shape)
        buffer_action = np.clip(scaled_action + noise, -1.0, 1.0)
        if action_noise is not None:
            buffer_action = np.clip(buffer_action + action_noise(), -1.0, 1.0)
        return self.policy.unscale_action(buffer_action), buffer_action

    # ------------------------------------------------------------------------------------------ the update

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        """``gradient_steps`` DrQ-v2 updates on batches of ``batch_size``: SB3's ``TD3.train`` loop, DrQ-v2's update.

        The loop is TD3's, written once for every family (:meth:`CheckedTraining.train`: training mode, learning
        rates of the actor's and the critic's optimizers from the schedule, one sample and one update per gradient
        step, ``train/`` logs), and the exploration noise's standard deviation is logged after it. The update
        (:meth:`_gradient_step`) departs from TD3's on purpose:

        * images are shifted (``augmentation``) and encoded once per step; the critic's loss trains the
          convolutions, the actor reads them detached, the target critic reads them without gradient;
        * target and actor actions are ``clip(mu + clip(eps, +-stddev_clip), -1, 1)`` with ``eps`` from the
          exploration schedule (TD3: a constant ``target_policy_noise``; the actor loss uses ``mu``), the actor's
          with a straight-through clamp;
        * the actor's loss uses ``min(Q1, Q2)`` (TD3: ``Q1``), every update (``policy_delay=1``), and there is no
          target actor;
        * the target is ``R + (1 - done) gamma^k min Q_target`` with n-step ``R`` and ``k`` (SB3's ``discounts``);
        * the EMA covers the critic's trunk and Q heads, every update; the convolutions have no EMA copy;
        * the losses are logged as means over the call, read once (one device synchronisation per call), and
          training stops at the first non-finite loss or parameter (:class:`~sb3_gaara.common.training.CheckedTraining`).
        """
        super().train(gradient_steps, batch_size)
        self.logger.record("train/stddev", self.exploration_stddev())

    def augment(self, images: th.Tensor) -> th.Tensor:
        """uint8 images as the networks train on them: shifted (``augmentation="shift"``), then floats in ``[0, 1]``
        like SB3's ``preprocess_obs`` (the encoder centers them). Shifting the uint8 images moves 4x fewer bytes."""
        if self.augmentation == "shift":
            images = random_shift(images, self.augmentation_pad)
        scaled = images.float()
        return scaled.div_(255.0) if self.policy.normalize_images else scaled

    def _gradient_step(self, replay_data: AugmentedReplayBufferSamples, record: Recorder) -> None:
        """One DrQ-v2 update on one batch (see :meth:`train`): critic, actor, EMA, then the reconstruction, with the
        exploration schedule's standard deviation at the model's environment steps."""
        stddev = self.exploration_stddev()
        policy = self.policy
        obs = self.augment(replay_data.observations)
        with th.no_grad():
            next_obs = self.augment(replay_data.next_observations)
        conv_features = policy.critic_encoder.forward_conv(obs)

        critic_loss = self.critic_loss(conv_features, next_obs, replay_data, stddev)
        record("critic_loss", critic_loss)
        _optimize(critic_loss, self.critic.optimizer)

        # The actor reads the conv features computed before the critic's step, detached (DrQ-v2 reuses them).
        actor_loss = self.actor_loss(conv_features.detach(), stddev)
        record("actor_loss", actor_loss)
        _optimize(actor_loss, self.actor.optimizer)

        polyak_update(self._trunk_and_q_parameters, self._target_trunk_and_q_parameters, self.tau)

        if self.reconstruction_optimizer is not None:
            loss = self.reconstruction_loss(obs, replay_data.observations)
            record("reconstruction_loss", loss)
            _optimize(loss, self.reconstruction_optimizer)

    def critic_loss(
        self, conv_features: th.Tensor, next_obs: th.Tensor, replay_data: AugmentedReplayBufferSamples, stddev: float
    ) -> th.Tensor:
        """Sum of both Q heads' MSE to the n-step clipped double-Q target.

        :param conv_features: conv maps of the (shifted) observations, with their graph
        :param next_obs: the (shifted) next observations ``s_{t+k}``, scaled
        """
        policy = self.policy
        discounts = replay_data.discounts if replay_data.discounts is not None else self.gamma
        with th.no_grad():
            next_conv = policy.critic_encoder.forward_conv(next_obs)
            next_mu = self.actor.mu(policy.actor_encoder.forward_head(next_conv))
            next_actions = noisy_action(next_mu, stddev, self.stddev_clip)
            next_q = th.cat(self.critic_target.q_from_features(policy.target_encoder.forward_head(next_conv), next_actions), 1)
            next_q, _ = th.min(next_q, dim=1, keepdim=True)
            target_q = replay_data.rewards + (1 - replay_data.dones) * discounts * next_q
        current_q = self.critic.q_from_features(policy.critic_encoder.forward_head(conv_features), replay_data.actions)
        loss = sum(F.mse_loss(q, target_q) for q in current_q)
        assert isinstance(loss, th.Tensor)
        return loss

    def actor_loss(self, conv_features: th.Tensor, stddev: float) -> th.Tensor:
        """``-min(Q1, Q2)(s, a)`` with ``a`` the noisy actor action (straight-through clamp).

        :param conv_features: detached conv maps of the observations: only the actor's trunk and MLP get a gradient
            (the critic's trunk is evaluated without one; its Q heads get one that no optimizer step reads)
        """
        policy = self.policy
        mu = self.actor.mu(policy.actor_encoder.forward_head(conv_features))
        actions = noisy_action(mu, stddev, self.stddev_clip)
        with th.no_grad():
            critic_features = policy.critic_encoder.forward_head(conv_features)
        q_values = th.cat(self.critic.q_from_features(critic_features, actions), dim=1)
        return -th.min(q_values, dim=1).values.mean()

    def reconstruction_loss(self, obs: th.Tensor, target_images: th.Tensor) -> th.Tensor:
        """SAC+AE's loss: the decoder's image of the critic's latent of ``obs`` against the 5-bit ``target_images``.

        The encoder is run again: the critic's step has just moved it (SAC+AE also reconstructs after it).

        :param obs: the scaled observations the critic trained on (shifted when ``augmentation="shift"``)
        :param target_images: the uint8 observations, unshifted
        """
        decoder = self.policy.decoder
        assert decoder is not None
        latent = self.policy.critic_encoder(obs)
        target = preprocess_reconstruction_target(target_images)
        return reconstruction_loss(decoder(latent), target, latent, self.decoder_latent_lambda)

    # ------------------------------------------------------------------------------------------ learn, save, load

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "actor",  # the policy's, saved with it
            "critic",
            "critic_target",
            "reconstruction_optimizer",
            "_trunk_and_q_parameters",
            "_target_trunk_and_q_parameters",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "actor.optimizer", "critic.optimizer"]
        if self.reconstruction_optimizer is not None:
            state_dicts.append("reconstruction_optimizer")
        return state_dicts, []


def _optimize(loss: th.Tensor, optimizer: th.optim.Optimizer) -> None:
    """Apply ``loss`` with ``optimizer``: zero its gradients, backward, step."""
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

"""SAC+GAARA: SAC whose pixel encoder learns from the critic, a reconstruction decoder and an annealed
contrastive comparison loss (Chen & Gong, "SAC+GAARA"), on Stable-Baselines3's SAC.
"""

from __future__ import annotations

import io
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac import SAC
from torch import nn

from sb3_gaara.common.buffers import (
    AugmentedPixelReplayBuffer,
    AugmentedReplayBufferSamples,
    SampledTransitions,
    check_contrastive_views,
)
from sb3_gaara.common.crops import random_shift
from sb3_gaara.common.env_steps import get_frame_stack
from sb3_gaara.common.preprocessing import (
    check_continuous_action_space,
    check_pixel_observation_space,
    warn_if_single_frame,
)
from sb3_gaara.common.saving import DurableSaves
from sb3_gaara.common.training import Metrics, Recorder
from sb3_gaara.gaara.auxiliary_losses import AuxiliaryBatch, AuxiliaryLoss, AuxiliarySettings, auxiliary_batch
from sb3_gaara.gaara.comparison import anneal_comparison_lambda
from sb3_gaara.gaara.cuda_graphs import GraphedGradientStep, check_cuda_graph_settings
from sb3_gaara.gaara.optimizer_steps import apply_loss
from sb3_gaara.gaara.overlap import EarlyUpdate, EnvStepOverlap
from sb3_gaara.gaara.policies import CnnPolicy, GAARAActor, GAARACritic, GAARAPolicy
from sb3_gaara.gaara.settings import AUGMENTATIONS as AUGMENTATIONS
from sb3_gaara.gaara.settings import COMPARISON_ANNEALS as COMPARISON_ANNEALS
from sb3_gaara.gaara.settings import check_settings, policy_kwargs_for, replay_buffer_kwargs_for
from sb3_gaara.gaara.variants import VARIANTS
from sb3_gaara.plotting import reconstruction_grid

#: observations shown by :meth:`GAARASAC.log_reconstructions`
RECONSTRUCTION_LOG_ROWS = 4


class UpdatePhase(NamedTuple):
    """Which parts of the update one gradient step runs, besides the critic (see ``GAARASAC.update_phase``)."""

    #: the actor and the temperature (every ``actor_update_freq`` steps)
    actor: bool
    #: the EMA targets (every ``target_update_interval`` steps)
    targets: bool
    #: the auxiliary losses (every ``decoder_update_freq`` steps, when the variant has any)
    auxiliary: bool


class GAARASAC(EnvStepOverlap, DurableSaves, SAC):
    """SAC+GAARA (Chen & Gong): SAC from pixels with a reconstruction decoder and an annealed comparison loss.

    ``GAARASAC("CnnPolicy", env)`` trains with the paper's hyper-parameters (appendix A.1). Observations
    are channel-first uint8 stacks at render size (e.g. ``9 x 100 x 100``); the critic trains on 84 px
    center crops and the comparison loss contrasts a center-cropped anchor with a random-cropped positive.

    One gradient step (SAC+GAARA Algorithm 1, with SAC+AE's cadence): critic; every ``actor_update_freq`` the actor and the
    temperature; every ``target_update_interval`` the EMA targets (Q heads with ``tau``, encoder with
    ``encoder_tau``); every ``decoder_update_freq`` the auxiliary losses of :attr:`variant` in order,
    the comparison step annealing ``comparison_lambda``.

    SAC's parameters keep SB3's names and meaning, with the paper's defaults (``learning_rate=1e-3``,
    ``batch_size=128``, ``tau=0.01``, ``learning_starts=1000``, ``target_update_interval=2``,
    ``ent_coef="auto_0.1"``). ``gradient_steps=-1`` and ``train_freq`` work as in SB3.

    :param image_size: side of the crops (84)
    :param encoder_tau: EMA rate of the target encoder (0.05)
    :param actor_update_freq: update the actor and the temperature every this many gradient steps (2)
    :param decoder_update_freq: run the auxiliary losses every this many gradient steps (1)
    :param decoder_latent_lambda: weight ``lambda_z`` of the L2 penalty on the latent code (1e-6)
    :param decoder_weight_lambda: weight decay ``lambda_theta`` of the decoder (1e-7)
    :param comparison_lambda: initial weight ``c`` of the comparison loss (1.0); afterwards
        ``model.comparison_lambda`` is the current, annealed weight (saved with the model)
    :param comparison_lambda_min: floor of the annealed weight (0.5)
    :param comparison_lambda_decay: decrement of the weight after each comparison step (1e-6); 0 keeps
        the weight fixed ("GAARA with a fixed weight", the paper's Fig. 3)
    :param comparison_anneal: how ``c`` acts. ``"loss"`` (default, the paper's form): the comparison loss is
        ``c * InfoNCE``. Its optimizer is an Adam of its own, whose step hardly depends on a constant factor
        of its loss, so ``c`` then changes the update very little (docs/annealing.md measures it).
        ``"lr"``: the loss is ``InfoNCE`` and ``c`` scales the step of the comparison optimizer, i.e. its
        learning rates, so that annealing ``c`` from 1 to 0.5 halves the comparison's updates as the paper
        intends. Not for ``variant="joint"``, whose one step also applies the reconstruction.
    :param variant: which auxiliary losses train the encoder, one of :data:`VARIANTS`:
        ``"gaara"`` (default), ``"sac_ae"``, ``"contrastive"``, ``"joint"`` (§5.1),
        ``"random_anchor"`` (§5.2), ``"decoder_discriminator"`` (§5.3)
    :param encoder_lr: learning rate of the encoder in the auxiliary steps (1e-3)
    :param decoder_lr: learning rate of the decoder (1e-3)
    :param comparison_lr: learning rate of ``W`` (1e-3)
    :param ent_coef_lr: learning rate of the temperature (1e-4; its Adam uses ``beta1=0.5``)
    :param skip_nonfinite_updates: by default a non-finite loss or parameter stops training with an error
        naming the loss and the update; with ``True`` an update whose loss or gradient is not finite is
        skipped instead, counted in ``model.skipped_updates`` and logged as ``train/skipped_updates``
        (this costs one device synchronisation per loss)
    :param cuda_graphs: on a CUDA device, keep the replay frames on the GPU (``storage_device`` defaults to the
        model's device) and replay each gradient step as a CUDA graph (:mod:`sb3_gaara.gaara.cuda_graphs`): the same
        update, one launch instead of about a thousand kernels. Needs the fused optimizers (the default) and
        ``skip_nonfinite_updates=False``; learning-rate schedules work but recapture at each change. On other
        devices it changes nothing: the eager update runs.
    :param overlap_env_step: begin each gradient step right after the action is chosen, before the environment step
        whose transition it comes after, so that on a GPU the update runs while the host steps the simulator
        (:mod:`sb3_gaara.gaara.overlap`: where it applies, and why the updates, random numbers, logs and evaluations
        are those without the option, bit for bit on a CPU). ``model.overlapped_updates`` counts the steps begun early.
    :param reconstruction_log_interval: every this many gradient steps, write the decoder's reconstructions of
        a few observations of the batch, next to them, to TensorBoard (:meth:`log_reconstructions`; needs
        ``tensorboard_log``). 0 (default): never, at the cost of one integer test per gradient step. Only for
        variants with a decoder.
    :param init_gradient_steps: gradient steps taken at once when ``learn()`` first trains, as the reference
        code does at ``init_steps`` (SAC+AE, CURL, SAC+GAARA); one per agent step afterwards. ``None`` (default):
        as many as ``learning_starts``; 0: none. The burst belongs to a model's first training, so a loaded model
        that has trained (``_n_updates > 0``) never repeats it; ``train()`` called directly never bursts.
    :param augmentation: ``None`` (default): the critic and the actor train on the sampled center crops.
        ``"shift"``: DrQ's augmentation (:func:`~sb3_gaara.common.crops.random_shift`) of the critic's and the
        actor's batches: every view of an observation or next observation is the center crop shifted by up to
        ``augmentation_pad`` pixels, drawn per sample. The auxiliary losses (the anchor / positive pair, the
        reconstruction target) and acting keep the unshifted center crop.
    :param augmentation_pad: the largest shift in pixels (4: DrQ's at 84 px)
    :param target_augmentations: DrQ's ``K``: the critic's target is the mean of the targets of this many
        shifted views of the next observation, each with its own sampled next action (1; needs ``augmentation``
        when larger)
    :param q_augmentations: DrQ's ``M``: the critic's loss is the mean of its losses on this many shifted
        views of the observation (1; needs ``augmentation`` when larger); the actor reads the first view

    The remaining parameters are SB3's ``SAC``'s.
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"CnnPolicy": CnnPolicy, "GAARAPolicy": GAARAPolicy}
    #: variant a bare constructor trains; subclasses (``SACAE``, ``CURLSAC``) change it
    default_variant: ClassVar[str] = "gaara"
    #: ``--algo`` name in the RL Zoo
    zoo_name: ClassVar[str] = "gaara_sac"
    #: arguments that decide the saved networks: ``load`` refuses to override them
    architecture_keys: ClassVar[tuple[str, ...]] = ("image_size", "variant")
    #: Adam betas of the temperature's optimizer: SAC+AE's ``beta1 = 0.5`` (DrQ keeps Adam's defaults)
    ent_coef_betas: ClassVar[tuple[float, float]] = (0.5, 0.999)
    #: the update can be captured as CUDA graphs and begun before the environment step: same results, faster
    speed_options: ClassVar[frozenset[str]] = frozenset({"cuda_graphs", "overlap_env_step"})
    policy: GAARAPolicy
    actor: GAARAActor
    critic: GAARACritic
    critic_target: GAARACritic
    replay_buffer: AugmentedPixelReplayBuffer
    auxiliary_losses: nn.ModuleDict

    def __init__(
        self,
        policy: str | type[GAARAPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 100_000,
        learning_starts: int = 1000,
        batch_size: int = 128,
        tau: float = 0.01,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        ent_coef: str | float = "auto_0.1",
        target_update_interval: int = 2,
        target_entropy: str | float = "auto",
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        use_sde_at_warmup: bool = False,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        image_size: int = 84,
        encoder_tau: float = 0.05,
        actor_update_freq: int = 2,
        decoder_update_freq: int = 1,
        decoder_latent_lambda: float = 1e-6,
        decoder_weight_lambda: float = 1e-7,
        comparison_lambda: float = 1.0,
        comparison_lambda_min: float = 0.5,
        comparison_lambda_decay: float = 1e-6,
        variant: str | None = None,
        encoder_lr: float = 1e-3,
        decoder_lr: float = 1e-3,
        comparison_lr: float = 1e-3,
        ent_coef_lr: float = 1e-4,
        skip_nonfinite_updates: bool = False,
        cuda_graphs: bool = False,
        overlap_env_step: bool = False,
        init_gradient_steps: int | None = None,
        comparison_anneal: str = "loss",
        reconstruction_log_interval: int = 0,
        augmentation: str | None = None,
        augmentation_pad: int = 4,
        target_augmentations: int = 1,
        q_augmentations: int = 1,
        _init_setup_model: bool = True,
    ) -> None:
        variant = self.default_variant if variant is None else variant
        if variant not in VARIANTS:
            raise ValueError(f"Unknown variant {variant!r}; choose one of {sorted(VARIANTS)}.")
        if use_sde:
            raise ValueError("GAARASAC does not support gSDE (use_sde=True): SAC+GAARA explores with its Gaussian policy.")
        if _init_setup_model and env is not None and not isinstance(env, str):
            # Fail here, before SB3 wraps the env, with a message that says what to change. Not when SB3's load()
            # builds the bare model (_init_setup_model=False): image_size is still the default until the saved
            # value is restored, and _setup_model checks the env's space against the saved one.
            check_pixel_observation_space(env.observation_space, image_size, type(self).__name__)
            check_continuous_action_space(env.action_space, type(self).__name__, "is SAC")
        self.variant = variant
        self.image_size = image_size
        self.encoder_tau = encoder_tau
        self.actor_update_freq = actor_update_freq
        self.decoder_update_freq = decoder_update_freq
        self.decoder_latent_lambda = decoder_latent_lambda
        self.decoder_weight_lambda = decoder_weight_lambda
        # A variant without an annealed comparison weight keeps c = 0 (it has no comparison loss to weight).
        self.comparison_lambda = comparison_lambda if VARIANTS[variant].anneals else 0.0
        self.comparison_lambda_min = comparison_lambda_min
        self.comparison_lambda_decay = comparison_lambda_decay
        self.encoder_lr = encoder_lr
        self.decoder_lr = decoder_lr
        self.comparison_lr = comparison_lr
        self.ent_coef_lr = ent_coef_lr
        self.skip_nonfinite_updates = skip_nonfinite_updates
        self.skipped_updates = 0
        self.cuda_graphs = cuda_graphs
        self.overlap_env_step = overlap_env_step
        self.overlapped_updates = 0
        self._early_update: EarlyUpdate | None = None
        self._early_draw: tuple[np.ndarray, np.ndarray] | None = None
        #: while a rollout runs with overlap_env_step: whether its agent step may begin the update (asked once)
        self._early_update_check: Callable[[], bool] | None = None
        self.init_gradient_steps = init_gradient_steps
        self.comparison_anneal = comparison_anneal
        self.reconstruction_log_interval = reconstruction_log_interval
        self.augmentation = augmentation
        self.augmentation_pad = augmentation_pad
        self.target_augmentations = target_augmentations
        self.q_augmentations = q_augmentations
        self._in_learn = False
        check_settings(
            variant=variant,
            actor_update_freq=actor_update_freq,
            decoder_update_freq=decoder_update_freq,
            encoder_tau=encoder_tau,
            decoder_latent_lambda=decoder_latent_lambda,
            decoder_weight_lambda=decoder_weight_lambda,
            encoder_lr=encoder_lr,
            decoder_lr=decoder_lr,
            comparison_lr=comparison_lr,
            ent_coef_lr=ent_coef_lr,
            comparison_lambda=comparison_lambda,
            comparison_lambda_min=comparison_lambda_min,
            comparison_lambda_decay=comparison_lambda_decay,
            comparison_anneal=comparison_anneal,
            init_gradient_steps=init_gradient_steps,
            reconstruction_log_interval=reconstruction_log_interval,
            augmentation=augmentation,
            augmentation_pad=augmentation_pad,
            target_augmentations=target_augmentations,
            q_augmentations=q_augmentations,
        )
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
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            use_sde_at_warmup=use_sde_at_warmup,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        if _init_setup_model:
            warn_if_single_frame(self.observation_space, type(self).__name__)
            self._setup_model()

    def _setup_model(self) -> None:
        variant = VARIANTS[self.variant]
        check_pixel_observation_space(self.observation_space, self.image_size, type(self).__name__)
        check_continuous_action_space(self.action_space, type(self).__name__, "is SAC")
        if self.target_update_interval < 1:
            raise ValueError(f"target_update_interval must be a positive integer, got {self.target_update_interval}.")
        if self.replay_buffer_class is None:
            self.replay_buffer_class = AugmentedPixelReplayBuffer
        graphs = self._uses_cuda_graphs()
        if graphs:
            check_cuda_graph_settings(self)
        if issubclass(self.replay_buffer_class, AugmentedPixelReplayBuffer):
            self.replay_buffer_kwargs = replay_buffer_kwargs_for(
                self.variant, self.image_size, graphs, get_frame_stack(self.env), self.replay_buffer_kwargs
            )
        self.policy_kwargs = policy_kwargs_for(self.variant, self.image_size, self.policy_kwargs)
        super()._setup_model()
        self._check_overlap_settings()
        if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
            # SAC+AE's temperature optimizer: lr 1e-4, beta1 0.5 (SB3 would reuse the actor's lr and betas).
            self.ent_coef_optimizer = th.optim.Adam(
                [self.log_ent_coef],
                lr=self.ent_coef_lr,
                betas=self.ent_coef_betas,
                **self.policy.adam_kwargs(),
            )
        settings = AuxiliarySettings(
            encoder_lr=self.encoder_lr,
            decoder_lr=self.decoder_lr,
            comparison_lr=self.comparison_lr,
            decoder_latent_lambda=self.decoder_latent_lambda,
            decoder_weight_lambda=self.decoder_weight_lambda,
        )
        self.auxiliary_losses = nn.ModuleDict(
            {loss_class.name: loss_class(self.policy, settings) for loss_class in variant.auxiliary_losses}
        )
        # ContinuousCritic keeps its Q heads in a plain list (each also registered as a submodule).
        self._q_parameters = [p for q_net in self.critic.q_networks for p in q_net.parameters()]
        self._q_target_parameters = [p for q_net in self.critic_target.q_networks for p in q_net.parameters()]
        self._encoder_parameters = list(self.policy.critic_encoder.parameters())
        self._encoder_target_parameters = list(self.policy.target_encoder.parameters())
        self._graphed_step: GraphedGradientStep | None = None
        if graphs:
            self._graphed_step = GraphedGradientStep(self)

    def _uses_cuda_graphs(self) -> bool:
        """Whether the update runs as CUDA graphs: ``cuda_graphs`` on a CUDA device."""
        return bool(self.cuda_graphs) and self.device.type == "cuda"

    def optimizers(self) -> list[th.optim.Optimizer]:
        """Every optimizer of the model: actor, critic, temperature (if learned) and the auxiliary losses'."""
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        if self.ent_coef_optimizer is not None:
            optimizers.append(self.ent_coef_optimizer)
        return optimizers + [auxiliary.optimizer for auxiliary in self._auxiliary_losses()]

    def _auxiliary_losses(self) -> list[AuxiliaryLoss]:
        """The variant's auxiliary losses, in the order they are applied."""
        losses = list(self.auxiliary_losses.values())
        assert all(isinstance(loss, AuxiliaryLoss) for loss in losses)
        return losses  # type: ignore[return-value]

    def update_phase(self, step: int) -> UpdatePhase:
        """The parts of the update that gradient step number ``step`` (``model._n_updates``, counted from 0) runs.

        The counter is global, so the cadence stays in phase across ``learn()`` calls and loads.
        """
        return UpdatePhase(
            actor=step % self.actor_update_freq == 0,
            targets=step % self.target_update_interval == 0,
            auxiliary=step % self.decoder_update_freq == 0 and len(self.auxiliary_losses) > 0,
        )

    def set_parameters(self, *args: Any, **kwargs: Any) -> None:
        """SB3's ``set_parameters``; captured graphs are dropped: they hold the optimizer states it replaces."""
        super().set_parameters(*args, **kwargs)
        if getattr(self, "_graphed_step", None) is not None:
            assert self._graphed_step is not None
            self._graphed_step.reset()

    def _sample_batch(self, batch_size: int) -> AugmentedReplayBufferSamples | SampledTransitions:
        """The batch of one gradient step: the transitions drawn before the environment step, if a step begun early
        left them (``overlap_env_step``); else SB3's draw, cropped (eager) or as drawn (CUDA graphs crop inside the
        graph)."""
        transitions = self._take_early_draw()
        if transitions is None:
            transitions = self.replay_buffer.sample_transitions(batch_size, env=self._vec_normalize_env)
        return self._batch_from_transitions(transitions)

    def _batch_from_transitions(self, transitions: SampledTransitions) -> AugmentedReplayBufferSamples | SampledTransitions:
        """What :meth:`_gradient_step` takes from drawn ``transitions``: their crops, or themselves under CUDA graphs."""
        return transitions if self._graphed_step is not None else self.replay_buffer.crop(transitions)

    def _gradient_step(self, batch: AugmentedReplayBufferSamples | SampledTransitions, record: Recorder) -> None:
        """One gradient step (:meth:`_update`), eagerly or replayed as a CUDA graph on ``batch``'s transitions; then
        the comparison weight anneals if a comparison step was applied (SAC+GAARA §4.4)."""
        if self._graphed_step is None:
            assert isinstance(batch, AugmentedReplayBufferSamples)
            anneal = self._update(batch, record, self.comparison_lambda)
        else:
            assert isinstance(batch, SampledTransitions)
            anneal = self._graphed_step.step(batch, self.comparison_lambda, record)
        if anneal:
            self.comparison_lambda = anneal_comparison_lambda(
                self.comparison_lambda, self.comparison_lambda_decay, self.comparison_lambda_min
            )

    def _after_gradient_step(self, batch: AugmentedReplayBufferSamples | SampledTransitions) -> None:
        """Every ``reconstruction_log_interval`` updates, the decoder's reconstructions of the batch just trained on."""
        interval = self.reconstruction_log_interval
        if interval and self._n_updates % interval == 0:
            if isinstance(batch, SampledTransitions):
                batch = self.replay_buffer.crop(batch)
            self.log_reconstructions(batch.observations)

    def _gradient_steps_of_call(self, gradient_steps: int) -> int:
        """Gradient steps of this ``train()`` call: the initial burst on the first training inside ``learn()``
        (``init_gradient_steps``; SAC+AE trains ``learning_starts`` times on its seed data)."""
        if not self._in_learn or self._n_updates > 0:
            return gradient_steps
        burst = self.learning_starts if self.init_gradient_steps is None else self.init_gradient_steps
        return max(gradient_steps, burst)

    def log_reconstructions(self, observations: th.Tensor) -> None:
        """Write the decoder's reconstructions of the first few ``observations`` (uint8 crops), next to them, as the
        TensorBoard image ``train/reconstructions`` at the current ``num_timesteps``.

        What users of SAC+AE-style agents watch while training: blurred or identical reconstructions show an
        encoder that has stopped reading the image. ``train()`` calls it every ``reconstruction_log_interval``
        gradient steps with the batch just trained on (:meth:`_after_gradient_step`; under CUDA graphs, the batch's
        transitions cropped again, which draws the random crops of the variant's contrastive views once more). The
        image goes straight to the TensorBoard writer, so each call appears at its own step instead of only the last
        one before the logger's next dump.
        """
        decoder = self.policy.decoder
        if decoder is None:
            raise ValueError(f"variant={self.variant!r} has no decoder: there are no reconstructions to log.")

        def grid() -> np.ndarray:
            shown = observations[:RECONSTRUCTION_LOG_ROWS]
            with th.no_grad():
                reconstructions = decoder(self.policy.encode(shown)).float()
            return reconstruction_grid(shown.cpu().numpy(), reconstructions.cpu().numpy())

        self._write_image("train/reconstructions", grid, warn_without_writer="reconstruction_log_interval")

    def _update(
        self,
        replay_data: AugmentedReplayBufferSamples,
        record: Recorder,
        comparison_lambda: float | th.Tensor,
    ) -> bool:
        """One update on one batch of crops: critic, actor and temperature, EMA targets, auxiliary losses; the code
        that a CUDA graph captures (:class:`~sb3_gaara.gaara.cuda_graphs.GraphedGradientStep`).

        :param comparison_lambda: the comparison weight ``c`` of this step (a device tensor inside a CUDA graph)
        :return: whether ``c`` anneals after this step (a comparison step was applied)

        The loop around it is SB3 2.9's ``SAC.train`` (:meth:`CheckedTraining.train`: training mode, the learning
        rates of the actor's and the critic's optimizers from the schedule, one sample and one update per gradient
        step, ``_n_updates`` counted, the losses logged under ``train/``). The update is SAC+AE's, which SAC+GAARA's
        Algorithm 1 builds on, and differs from SB3's on purpose:

        * order: critic; then, every ``actor_update_freq`` steps, actor and temperature; then the EMA targets;
          then the auxiliary losses. SB3 steps the temperature first, then the critic, then the actor.
        * cadence: counted on the global ``_n_updates``, so that it stays in phase across ``train()`` calls and
          loads; SB3 counts the EMA's interval within one call.
        * critic loss: the sum of the two MSEs, without SB3's factor 0.5 (SAC+AE's).
        * temperature: ``alpha * (-log pi - target_entropy)`` with ``alpha = exp(log_alpha)`` (SAC+AE's; SB3
          differentiates ``log_alpha``), with its own Adam (``ent_coef_lr``, ``beta1 = 0.5``), not scheduled.
        * the actor sees the critic's convolutions detached (SAC+AE §6), and ``Q(s, pi(s))`` reads the critic's
          head on the same conv features without a gradient to the encoder.
        * the actor's log-std is squashed by ``tanh`` into ``[-10, 2]`` (:class:`GAARAActor`) instead of clamped.
        * the target uses ``gamma``: the frame-once buffer has no n-step returns (SB3 2.9's ``discounts``).
        * the logged values are the means over the call; they and the parameters are checked for NaN/inf once
          per call (:meth:`_log_and_check`), not read one by one with ``.item()``.

        ``tests/test_sb3_guard.py`` fingerprints the SB3 functions this relies on: when an SB3 release changes one
        of them, the test fails and this note must be checked against the new code.
        """
        phase = self.update_phase(self._n_updates)
        policy = self.policy
        encoder = policy.critic_encoder
        ent_coef = th.exp(self.log_ent_coef.detach()) if self.log_ent_coef is not None else self.ent_coef_tensor
        record("ent_coef", ent_coef)

        # The images as floats in [0, 1], each converted once: the observations serve the critic, the actor and the
        # auxiliary losses. With augmentation, the critic and the actor read shifted views instead (DrQ's M views of
        # the observation, K of the next one); the auxiliary losses keep the center crop.
        augmented = self.augmentation is not None
        obs = None if augmented else policy.scale_images(replay_data.observations)
        with th.no_grad():
            if augmented:
                obs_views = [self._augmented(replay_data.observations) for _ in range(self.q_augmentations)]
                next_views = [self._augmented(replay_data.next_observations) for _ in range(self.target_augmentations)]
            else:
                assert obs is not None
                obs_views = [obs]
                next_views = [policy.scale_images(replay_data.next_observations)]

        # 1. Critic: y = r + gamma (1 - d) (min Q_target(s', a') - alpha log pi(a'|s')), a' ~ pi(s'); with DrQ's K
        # views of s', the mean of their targets, each with its own a'.
        with th.no_grad():
            targets = []
            for next_obs in next_views:
                next_actions, next_log_prob = self.actor.action_log_prob_from_features(self.actor.features_extractor(next_obs))
                next_q_values = th.cat(
                    self.critic_target.q_from_features(policy.target_encoder(next_obs), next_actions), dim=1
                )
                next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
                next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
                targets.append(replay_data.rewards + (1 - replay_data.dones) * self.gamma * next_q_values)
            target_q_values = targets[0] if len(targets) == 1 else th.stack(targets).mean(dim=0)
        # DrQ's M views of s: the mean of their losses (DrQ §3.3, Eq. 4; the reference code sums them, which Adam's
        # step hardly tells apart).
        critic_losses = []
        for view in obs_views:
            current_q_values = self.critic.q_from_features(encoder(view), replay_data.actions)
            view_loss = sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
            assert isinstance(view_loss, th.Tensor)
            critic_losses.append(view_loss)
        critic_loss = critic_losses[0] if len(critic_losses) == 1 else th.stack(critic_losses).mean()
        record("critic_loss", critic_loss)
        self.optimize(critic_loss, self.critic.optimizer)

        # 2. The conv features of the observations after the critic's step, computed once. The actor step reads them
        # detached; neither it nor the EMA moves the convolutions, so the first auxiliary loss reuses them, with the
        # graph its backward needs. With augmentation the actor reads the first shifted view, and the auxiliary losses
        # compute their own features of the center crop.
        conv_features = None
        if phase.actor or (phase.auxiliary and not augmented):
            with th.set_grad_enabled(phase.auxiliary and not augmented):
                conv_features = encoder.forward_conv(obs_views[0])

        # 3. Actor and temperature. The actor sees its tied convolutions detached, and Q(s, pi(s)) must not move the
        # critic's encoder either.
        if phase.actor:
            assert conv_features is not None
            features = conv_features.detach()
            with th.no_grad():
                critic_features = encoder.forward_head(features)
            actor_encoder = self.actor.features_extractor
            assert isinstance(actor_encoder, type(encoder))
            actions_pi, log_prob = self.actor.action_log_prob_from_features(actor_encoder.forward_head(features))
            log_prob = log_prob.reshape(-1, 1)
            q_values_pi = th.cat(self.critic.q_from_features(critic_features, actions_pi), dim=1)
            min_qf_pi, _ = th.min(q_values_pi, dim=1, keepdim=True)
            actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
            record("actor_loss", actor_loss)
            self.optimize(actor_loss, self.actor.optimizer)

            if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
                # SAC+AE's temperature loss, -alpha (log pi + target_entropy), with alpha = exp(log_alpha).
                assert isinstance(self.target_entropy, float)
                ent_coef_loss = (self.log_ent_coef.exp() * (-log_prob - self.target_entropy).detach()).mean()
                record("ent_coef_loss", ent_coef_loss)
                self.optimize(ent_coef_loss, self.ent_coef_optimizer)

        # 4. EMA targets: Q heads with tau, encoder with encoder_tau.
        if phase.targets:
            polyak_update(self._q_parameters, self._q_target_parameters, self.tau)
            polyak_update(self._encoder_parameters, self._encoder_target_parameters, self.encoder_tau)

        # 5. Auxiliary losses, in order (reconstruction, then comparison). Each step moves the encoder, so only the
        # first loss gets the conv features of step 2. The caller anneals c.
        anneal = False
        if phase.auxiliary:
            if obs is None:
                obs = policy.scale_images(replay_data.observations)
            batch = self._auxiliary_batch(replay_data, obs, None if augmented else conv_features)
            for auxiliary in self._auxiliary_losses():
                # "loss": c weights the loss (the paper's form); "lr": c scales the optimizer's step.
                scale_step = auxiliary.anneals and self.comparison_anneal == "lr"
                loss, values = auxiliary(policy, batch, 1.0 if scale_step else comparison_lambda)
                applied = self.optimize(loss, auxiliary.optimizer, step_scale=comparison_lambda if scale_step else None)
                for name, value in values.items():
                    record(name, value)
                anneal = anneal or (applied and auxiliary.anneals)
                batch = batch._replace(conv_features=None)
        return anneal

    def _augmented(self, images: th.Tensor) -> th.Tensor:
        """One randomly shifted view of a batch of uint8 crops, scaled like the policy's inputs."""
        return self.policy.scale_images(random_shift(images, self.augmentation_pad))

    def _auxiliary_batch(
        self, replay_data: AugmentedReplayBufferSamples, obs: th.Tensor, conv_features: th.Tensor | None
    ) -> AuxiliaryBatch:
        """The images the variant's auxiliary losses read (:func:`~sb3_gaara.gaara.auxiliary_losses.auxiliary_batch`)."""
        return auxiliary_batch(self.policy, self._auxiliary_losses(), replay_data, obs, conv_features)

    def optimize(self, loss: th.Tensor, optimizer: th.optim.Optimizer, step_scale: float | th.Tensor | None = None) -> bool:
        """Apply ``loss`` with ``optimizer`` (zero_grad, backward, step): the one place every loss of the model,
        the auxiliary ones included, is applied (:func:`~sb3_gaara.gaara.optimizer_steps.apply_loss`).

        :param step_scale: multiply the optimizer's step by this factor (``comparison_anneal="lr"``)
        :return: whether the step was applied. With ``skip_nonfinite_updates`` a non-finite loss or gradient is
            not: its gradients are dropped, the skip is counted, and dependent steps (annealing) skip too.
        """
        applied = apply_loss(loss, optimizer, skip_nonfinite=self.skip_nonfinite_updates, step_scale=step_scale)
        if not applied:
            self.skipped_updates += 1
        return applied

    def _checked_modules(self) -> Mapping[str, th.nn.Module]:
        return {"policy": self.policy, "auxiliary_losses": self.auxiliary_losses}

    def _log_and_check(self, metrics: Metrics, error: Exception | None = None, skip_nonfinite: bool = False) -> None:
        """:meth:`CheckedTraining._log_and_check` (skipping non-finite updates where ``skip_nonfinite_updates`` did),
        then the counts of skipped and early updates and the comparison weight."""
        super()._log_and_check(metrics, error, skip_nonfinite=skip_nonfinite or self.skip_nonfinite_updates)
        if error is not None:
            return
        if self.skip_nonfinite_updates:
            self.logger.record("train/skipped_updates", self.skipped_updates)
        if self.overlap_env_step:
            self.logger.record("train/overlapped_updates", self.overlapped_updates)
        if VARIANTS[self.variant].anneals:
            self.logger.record("train/comparison_lambda", self.comparison_lambda)

    def _excluded_save_params(self) -> list[str]:
        return [
            *super()._excluded_save_params(),
            "auxiliary_losses",
            "_q_parameters",
            "_q_target_parameters",
            "_encoder_parameters",
            "_encoder_target_parameters",
            "_graphed_step",
        ]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, saved_variables = super()._get_torch_save_params()
        state_dicts = [*state_dicts, "auxiliary_losses"]
        state_dicts += [f"auxiliary_losses.{name}.optimizer" for name in self.auxiliary_losses]
        return state_dicts, saved_variables

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """SB3's ``load_replay_buffer``; the buffer draws the contrastive views this model's losses read (whichever
        model saved it, or a version that drew both for every algorithm); with CUDA graphs the frames move to the
        model's device if saved elsewhere."""
        super().load_replay_buffer(path, truncate_last_traj)
        buffer = self.replay_buffer
        if isinstance(buffer, AugmentedPixelReplayBuffer) and "contrastive_views" in self.replay_buffer_kwargs:
            buffer.contrastive_views = check_contrastive_views(self.replay_buffer_kwargs["contrastive_views"])
        if self._graphed_step is not None and isinstance(buffer, AugmentedPixelReplayBuffer):
            if buffer.storage_device is None or buffer.storage_device.type != self.device.type:
                buffer.move_frames(self.device)


class SACAE(GAARASAC):
    """SAC+AE (Yarats et al. 2019): SAC from pixels with a regularized autoencoder, no comparison loss.

    ``GAARASAC`` with ``variant="sac_ae"`` by default; registered in the RL Zoo as ``sac_ae``.
    """

    default_variant: ClassVar[str] = "sac_ae"
    zoo_name: ClassVar[str] = "sac_ae"


class CURLSAC(GAARASAC):
    """Contrastive-only pixel SAC: the comparison loss of SAC+GAARA without the decoder (CURL-like).

    ``GAARASAC`` with ``variant="contrastive"`` by default; registered in the RL Zoo as ``curl_sac``.
    Unlike CURL, the critic trains on center crops and the anchor is the center crop.
    """

    default_variant: ClassVar[str] = "contrastive"
    zoo_name: ClassVar[str] = "curl_sac"


#: The algorithms of the family, each registered in the RL Zoo under its ``zoo_name``.
ALGORITHMS: tuple[type[GAARASAC], ...] = (GAARASAC, SACAE, CURLSAC)

"""DrQ (Kostrikov, Yarats & Fergus, "Image Augmentation Is All You Need", 2020): SAC from pixels whose critic
trains on randomly shifted images, with its targets and losses averaged over several shifts.

DrQ is the package's pixel SAC with the encoder trained by the critic alone (the ``pixel_sac`` variant, SAC+AE's
architecture: four 32-channel convolutions, a Linear + LayerNorm + tanh head, the actor on the critic's
convolutions detached) and GAARASAC's ``augmentation="shift"``. So :class:`DrQ` is :class:`GAARASAC` with DrQ's
published settings as defaults; the update is GAARASAC's, which already does what DrQ's differs in.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import GymEnv, Schedule

from sb3_gaara.gaara.gaara_sac import GAARASAC
from sb3_gaara.gaara.policies import GAARAPolicy


class DrQ(GAARASAC):
    """DrQ: SAC from pixels with random shifts, ``K`` shifted views of the next observation averaged in the
    critic's target and ``M`` of the observation in its loss (DrQ §3, Algorithm 1).

    ``DrQ("CnnPolicy", env)`` trains with the paper's settings (DrQ appendix, PlaNet benchmark; the
    reference configuration): 84 px observations, which DrQ renders at that size and does not crop (give the env
    ``height=84, width=84``: the crop of ``image_size=84`` is then the whole frame), 3 stacked frames, shifts of
    up to 4 pixels, ``K = M = 2``, batch 512, Adam with learning rate 1e-3 for the actor, the critic and the
    temperature (Adam's default betas), initial temperature 0.1, ``tau = 0.01`` for the Q heads *and* the
    encoder (DrQ soft-updates the whole critic), actor and targets every 2 updates, 1000 random steps and then
    one update per agent step (no initial burst of updates), replay of 100k transitions.

    Two choices of DrQ's code that SAC+AE's code (GAARASAC's defaults) makes otherwise are DrQ's defaults here, set
    through :attr:`default_policy_kwargs` (see :class:`~sb3_gaara.GAARAPolicy`): the convolutions start with their
    whole kernel orthogonal (``conv_init="orthogonal"``; SAC+AE: delta-orthogonal, the centre tap only), and the
    log-probability subtracts the exact log-determinant of the tanh squashing (``squash_correction="exact"``;
    SAC+AE and SB3 floor the Jacobian at 1e-6, which lowers the log-probability of saturated actions).
    ``policy_kwargs`` given by the user are merged over them, so ``policy_kwargs=dict(conv_init="delta_orthogonal",
    squash_correction="clamped")`` gives SAC+AE's.

    Where it differs from the reference code:

    * the critic's loss is the *mean* of its ``M`` views' losses, as the paper's Eq. 4 writes it; the code sums
      them, a constant factor that Adam's step hardly tells apart;
    * the actor's mean and log-std are two Linear layers, each initialised orthogonally on its own (SB3's actor);
      the code's last layer is one Linear with both outputs, whose rows all start mutually orthogonal;
    * the critic's loss on one view is SAC+AE's sum of the two heads' MSEs, as in the code;
    * the actor and the temperature read the first shifted view, as in the code.

    Every parameter is :class:`~sb3_gaara.GAARASAC`'s; only the defaults differ. ``variant`` may name another
    encoder-training variant of :data:`~sb3_gaara.VARIANTS` (e.g. ``"sac_ae"`` for DrQ with SAC+AE's decoder).
    """

    default_variant: ClassVar[str] = "pixel_sac"
    zoo_name: ClassVar[str] = "drq"
    #: DrQ's temperature optimizer is a plain Adam (SAC+AE's uses beta1 0.5)
    ent_coef_betas: ClassVar[tuple[float, float]] = (0.9, 0.999)
    #: DrQ's code's whole-kernel orthogonal convolutions and exact tanh log-determinant; ``policy_kwargs`` override them
    default_policy_kwargs: ClassVar[Mapping[str, Any]] = MappingProxyType(
        {"conv_init": "orthogonal", "squash_correction": "exact"}
    )

    def __init__(
        self,
        policy: str | type[GAARAPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 1e-3,
        buffer_size: int = 100_000,
        learning_starts: int = 1000,
        batch_size: int = 512,
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
        encoder_tau: float = 0.01,
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
        ent_coef_lr: float = 1e-3,
        skip_nonfinite_updates: bool = False,
        cuda_graphs: bool = False,
        overlap_env_step: bool = False,
        init_gradient_steps: int | None = 0,
        comparison_anneal: str = "loss",
        reconstruction_log_interval: int = 0,
        augmentation: str | None = "shift",
        augmentation_pad: int = 4,
        target_augmentations: int = 2,
        q_augmentations: int = 2,
        _init_setup_model: bool = True,
    ) -> None:
        super().__init__(
            policy,
            env,
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
            policy_kwargs={**self.default_policy_kwargs, **(policy_kwargs or {})},
            verbose=verbose,
            seed=seed,
            device=device,
            image_size=image_size,
            encoder_tau=encoder_tau,
            actor_update_freq=actor_update_freq,
            decoder_update_freq=decoder_update_freq,
            decoder_latent_lambda=decoder_latent_lambda,
            decoder_weight_lambda=decoder_weight_lambda,
            comparison_lambda=comparison_lambda,
            comparison_lambda_min=comparison_lambda_min,
            comparison_lambda_decay=comparison_lambda_decay,
            variant=variant,
            encoder_lr=encoder_lr,
            decoder_lr=decoder_lr,
            comparison_lr=comparison_lr,
            ent_coef_lr=ent_coef_lr,
            skip_nonfinite_updates=skip_nonfinite_updates,
            cuda_graphs=cuda_graphs,
            overlap_env_step=overlap_env_step,
            init_gradient_steps=init_gradient_steps,
            comparison_anneal=comparison_anneal,
            reconstruction_log_interval=reconstruction_log_interval,
            augmentation=augmentation,
            augmentation_pad=augmentation_pad,
            target_augmentations=target_augmentations,
            q_augmentations=q_augmentations,
            _init_setup_model=_init_setup_model,
        )

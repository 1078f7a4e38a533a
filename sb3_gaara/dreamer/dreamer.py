"""Dreamer (Hafner, Lillicrap, Ba & Norouzi, "Dream to Control: Learning Behaviors by Latent Imagination", ICLR 2020)
on Stable-Baselines3's off-policy machinery, with PlaNet's CEM planner and Dreamer's model-predictive control.

Dreamer learns PlaNet's recurrent state-space model of the frames (:mod:`sb3_gaara.dreamer.world_model`) on sequences
replayed from the frame-once store (:class:`~sb3_gaara.common.sequence_buffer.SequenceReplayBuffer`), and an actor and
a value on trajectories imagined by the model from every filtered state (:mod:`sb3_gaara.dreamer.policies`).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.noise import ActionNoise, NormalActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, RolloutReturn, Schedule, TrainFreq
from stable_baselines3.common.vec_env import VecEnv

from sb3_gaara.common.preprocessing import (
    channel_first_shape,
    check_continuous_action_space,
    check_pixel_observation_space,
)
from sb3_gaara.common.recurrent import TracksEpisodeStarts
from sb3_gaara.common.saving import DurableSaves
from sb3_gaara.common.sequence_buffer import SequenceReplayBuffer, SequenceSamples
from sb3_gaara.common.training import CheckedTraining, Recorder
from sb3_gaara.dreamer.policies import PLANNERS, ActionModel, CnnPolicy, DreamerPolicy, DreamerState, ValueModel, frozen
from sb3_gaara.dreamer.world_model import RSSMState, WorldModel, check_image_size
from sb3_gaara.plotting import reconstruction_grid

SelfDreamer = TypeVar("SelfDreamer", bound="Dreamer")
#: why Dreamer refuses discrete actions, for :func:`~sb3_gaara.common.preprocessing.check_continuous_action_space`
_ACTION_REASON = "learns a tanh-Gaussian actor and plans over continuous actions"


class Dreamer(CheckedTraining, DurableSaves, TracksEpisodeStarts):
    """Dreamer: behaviour learned by latent imagination, acting by its actor or by planning over its model.

    ``Dreamer("CnnPolicy", env)`` trains with the paper's settings (appendix A): 64 x 64 frames, one per observation
    (``dmc-*``: ``env_kwargs=dict(height=64, width=64, frame_stack=1, action_repeat=2)``); batches of 50 sequences of
    50 steps; the world model's Adam at 6e-4, the value's and the actor's at 8e-5, gradient norms clipped at 100; the
    KL unscaled and clamped below 3 free nats; imagination horizon 15, ``gamma=0.99``, ``lambda=0.95``; 5 seed
    episodes of random actions (``learning_starts=2500`` agent steps: 5 episodes of 1000 environment steps at action
    repeat 2), then 100 updates (``gradient_steps``) before the actor's first action and 100 more per 500 agent steps
    collected (``train_freq``: one episode, 1000 environment steps), as Dreamer's code schedules them
    (:meth:`collect_rollouts`), with the actor's sample plus Gaussian exploration noise of standard deviation 0.3
    (``exploration_noise``, whatever form ``env`` takes). The networks are sized and initialized as in Dreamer's code,
    which produced the paper's scores, rather than as its text says (:class:`~sb3_gaara.dreamer.policies.DreamerPolicy`:
    ``policy_kwargs=dict(units=300, layers=3)`` builds the text's).

    One update (:meth:`train`):

    1. **world model** (:meth:`model_step`): filter ``batch_size`` replayed sequences, minimize
       ``max(KL(q || p), free_nats) - log p(o) - log p(r)`` (:func:`~sb3_gaara.dreamer.world_model.model_loss`);
    2. **behaviour** (:meth:`behaviour_step`): from every filtered state, imagine ``imagination_horizon`` steps with the
       actor's reparametrized samples and the prior; lambda-returns (:func:`~sb3_gaara.dreamer.planning.lambda_returns`)
       of the predicted rewards with the value as bootstrap; the actor maximizes them by backpropagating through the
       model's dynamics (its loss ``-mean(gamma^t R_t)``), the value regresses them (``mean(gamma^t (v - R_t)^2) / 2``).

    **Acting** filters each frame into the RSSM's posterior state and chooses by ``planner``:

    * ``"actor"`` (default, Dreamer): the actor, ``tanh(mean)`` when deterministic, a sample otherwise;
    * ``"cem"`` (PlaNet §3): the cross-entropy method over ``horizon`` 12 action sequences, 10 iterations of 1000
      candidates refitted to the best 100, scored by the sum of the model's predicted rewards;
    * ``"dreamer_mpc"`` (the source's Algorithm 2): the same search started from the actor's imagined plan with a unit
      standard deviation, over the imagination horizon of 15, scored by the lambda-return with the value as bootstrap.

    The planner acts wherever the agent acts: in training (PlaNet collects with its planner; the exploration noise
    is added to the plan's action) and in ``predict``. :meth:`set_planner` switches it on a trained model, so one
    model's planners can be compared (:func:`~sb3_gaara.dreamer.evaluate_planners`).

    Where it departs from Dreamer's code, and why:

    * sequences are drawn by their last step uniformly over the stored steps (SB3's draw) and padded before their
      episode's first frame; the RSSM restarts from its initial state at the first frame and the losses skip the
      padding (:meth:`~sb3_gaara.dreamer.world_model.RSSM.observe`), so every step trains equally often. Dreamer draws
      chunks wholly inside an episode;
    * the reward model reads the state an action *leads to* (PlaNet's convention and Dreamer's data layout), and the
      value estimates the rewards *after* a state: ``lambda_returns`` gets ``H`` rewards of the states reached and
      ``H + 1`` values, so the first imagined action's reward counts in the first return;
    * the deterministic action is ``tanh(mean)``, not the mode Dreamer estimates from 100 samples, and deterministic
      acting filters with the posterior's mean rather than a sample, so that the actor's evaluation episodes are
      repeatable (the planners' candidates are still drawn from torch's generator).

    :param sequence_length: steps per replayed sequence (50)
    :param imagination_horizon: imagined steps from each filtered state (15)
    :param lambda_: the lambda of the returns (0.95)
    :param free_nats: the KL's floor (3)
    :param kl_scale: the KL's weight (1)
    :param kl_balance: ``None`` (Dreamer's plain KL), or DreamerV2's KL balancing weight ``alpha`` (0.8 there): the
        prior is trained by ``alpha`` of the KL, the posterior by ``1 - alpha``
        (:func:`~sb3_gaara.dreamer.world_model.model_loss`)
    :param model_learning_rate: the world model's Adam (6e-4)
    :param value_learning_rate: the value's Adam (8e-5); ``learning_rate`` is the actor's (8e-5)
    :param grad_clip: gradient norms of each of the three parts are scaled down to at most this (100)
    :param exploration_noise: standard deviation of the Gaussian noise added to the actions while training (0.3); used
        when ``action_noise`` is None (SB3's ``NormalActionNoise``, made when the model is set up, so also for an env
        given by its id and after ``load``); 0 turns it off
    :param planner: how the agent acts: ``"actor"``, ``"cem"`` or ``"dreamer_mpc"`` (above)
    :param planner_kwargs: overrides of the planner's settings (:data:`~sb3_gaara.dreamer.policies.PLANNER_DEFAULTS`):
        ``horizon``, ``iterations``, ``candidates``, ``top_k`` and, for ``"dreamer_mpc"``, ``init_std``
    :param imagination_log_interval: every this many updates, write replayed frames next to the model's open-loop
        prediction of them for the same actions (5 frames of context) as the TensorBoard image ``train/imagination``
        (only when the logger writes TensorBoard); 0 turns it off

    The other parameters are SB3's off-policy ones; ``batch_size`` counts sequences. ``buffer_size`` defaults to 100k
    transitions (1.2 GB of 64 px frames; Dreamer keeps every episode: raise it to the run's length).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"CnnPolicy": CnnPolicy, "DreamerPolicy": DreamerPolicy}
    #: ``--algo`` name in the RL Zoo
    zoo_name: ClassVar[str] = "dreamer"
    #: why the update is not written for the speed options (``cuda_graphs``, ``overlap_env_step``): the refusal says it
    speed_options_reason: ClassVar[str] = (
        "Dreamer's update is not written for it: a world-model step on sequences, then imagination through the "
        "recurrent model, in bursts of updates per episode collected rather than one per environment step"
    )
    policy: DreamerPolicy  # type: ignore[assignment]
    world_model: WorldModel
    actor: ActionModel
    value: ValueModel
    replay_buffer: SequenceReplayBuffer

    def __init__(
        self,
        policy: str | type[DreamerPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 8e-5,
        buffer_size: int = 100_000,
        learning_starts: int = 2500,
        batch_size: int = 50,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 500,
        gradient_steps: int = 100,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        sequence_length: int = 50,
        imagination_horizon: int = 15,
        lambda_: float = 0.95,
        free_nats: float = 3.0,
        kl_scale: float = 1.0,
        kl_balance: float | None = None,
        model_learning_rate: float = 6e-4,
        value_learning_rate: float = 8e-5,
        grad_clip: float = 100.0,
        exploration_noise: float = 0.3,
        planner: str = "actor",
        planner_kwargs: dict[str, Any] | None = None,
        imagination_log_interval: int = 10_000,
        _init_setup_model: bool = True,
    ) -> None:
        self.sequence_length = sequence_length
        self.imagination_horizon = imagination_horizon
        self.lambda_ = lambda_
        self.free_nats = free_nats
        self.kl_scale = kl_scale
        self.kl_balance = kl_balance
        self.model_learning_rate = model_learning_rate
        self.value_learning_rate = value_learning_rate
        self.grad_clip = grad_clip
        self.exploration_noise = exploration_noise
        self.planner = planner
        self.planner_kwargs = dict(planner_kwargs or {})
        self.imagination_log_interval = imagination_log_interval
        self._check_hyperparameters(gamma)
        if _init_setup_model and env is not None and not isinstance(env, str):
            # Fail here, before SB3 wraps the env, with a message that says what to change.
            _check_observation_space(env.observation_space)
            check_continuous_action_space(
                env.action_space, "Dreamer", "learns a tanh-Gaussian actor and plans over continuous actions"
            )
        # The values Dreamer decides for its buffer and policy (gamma is set on the model only by SB3's __init__).
        decided = {key: getattr(self, key) for key in ("sequence_length", *_POLICY_DECIDED) if key != "gamma"}
        decided["gamma"] = gamma
        for where, kwargs, keys in (
            ("replay_buffer_kwargs", replay_buffer_kwargs, ("sequence_length",)),
            ("policy_kwargs", policy_kwargs, _POLICY_DECIDED),
        ):
            for key in keys:
                if kwargs and key in kwargs and kwargs[key] != decided[key]:
                    raise ValueError(
                        f"{where}[{key!r}]={kwargs[key]!r} contradicts Dreamer's {key}; set {key} on Dreamer, not in {where}."
                    )
        super().__init__(
            policy,  # type: ignore[arg-type]
            env,  # type: ignore[arg-type]
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=1.0,  # Dreamer has no target networks (appendix A)
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            action_noise=action_noise,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            supported_action_spaces=(spaces.Box,),
            support_multi_env=True,
        )
        #: the latent state and last action of each training env, carried across rollouts (saved with the model)
        self._rollout_state: DreamerState | None = None
        if _init_setup_model:
            self._setup_model()

    def _check_hyperparameters(self, gamma: float) -> None:
        """Reject settings that cannot mean what the user wants, naming the fix."""
        integers = {
            "sequence_length": (self.sequence_length, 2, "steps per replayed sequence (Dreamer: 50)"),
            "imagination_horizon": (self.imagination_horizon, 1, "imagined steps (Dreamer: 15)"),
            "imagination_log_interval": (self.imagination_log_interval, 0, "updates between images (0: off)"),
        }
        for name, (value, minimum, meaning) in integers.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, the {meaning}; got {value!r}.")
        numbers: dict[str, tuple[object, str]] = {
            "model_learning_rate": (self.model_learning_rate, "Dreamer: 6e-4"),
            "value_learning_rate": (self.value_learning_rate, "Dreamer: 8e-5"),
            "grad_clip": (self.grad_clip, "Dreamer: 100"),
        }
        for key, (number, default) in numbers.items():
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not number > 0:
                raise ValueError(f"{key} must be a positive number ({default}), got {number!r}.")
        non_negative: tuple[tuple[str, object, float], ...] = (
            ("free_nats", self.free_nats, 3.0),
            ("kl_scale", self.kl_scale, 1.0),
            ("exploration_noise", self.exploration_noise, 0.3),
        )
        for key, number, floor_default in non_negative:
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
                raise ValueError(f"{key} must be a number >= 0 (Dreamer: {floor_default}), got {number!r}.")
        balance = self.kl_balance
        if balance is not None and (
            isinstance(balance, bool) or not isinstance(balance, (int, float)) or not 0 <= balance <= 1
        ):
            raise ValueError(f"kl_balance must be None (Dreamer) or lie in [0, 1] (DreamerV2: 0.8), got {self.kl_balance!r}.")
        for key, number, paper in (("lambda_", self.lambda_, 0.95), ("gamma", gamma, 0.99)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not 0.0 <= number <= 1.0:
                raise ValueError(f"{key} must lie in [0, 1] (Dreamer: {paper}), got {number!r}.")
        if self.planner not in PLANNERS:
            raise ValueError(f"planner must be one of {PLANNERS} (Dreamer: 'actor'), got {self.planner!r}.")

    def _setup_model(self) -> None:
        """SB3's ``OffPolicyAlgorithm._setup_model`` with the sequence buffer and the policy's Dreamer settings, then
        the aliases of the three parts."""
        _check_observation_space(self.observation_space)
        check_continuous_action_space(
            self.action_space, "Dreamer", "learns a tanh-Gaussian actor and plans over continuous actions"
        )
        if self.replay_buffer_class is None:
            self.replay_buffer_class = SequenceReplayBuffer
        if not issubclass(self.replay_buffer_class, SequenceReplayBuffer):
            raise ValueError(
                f"Dreamer trains on sequences from SequenceReplayBuffer, got replay_buffer_class="
                f"{self.replay_buffer_class.__name__}: leave replay_buffer_class unset (or subclass SequenceReplayBuffer)."
            )
        self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, "sequence_length": self.sequence_length}
        # The algorithm's attributes decide; a model loaded with other values (load(..., planner="cem")) rebuilds
        # its policy with them.
        self.policy_kwargs = {**self.policy_kwargs, **{key: getattr(self, key) for key in _POLICY_DECIDED}}
        super()._setup_model()
        self.world_model = self.policy.world_model
        self.actor = self.policy.actor
        self.value = self.policy.value
        # Here rather than in __init__: the action space is known now whatever form the env took (an id, an instance,
        # a VecEnv, or none before load / set_env), so every Dreamer explores as the paper's does.
        if self.action_noise is None and self.exploration_noise > 0:
            action_dim = int(np.prod(self.action_space.shape or (1,)))
            self.action_noise = NormalActionNoise(np.zeros(action_dim), np.full(action_dim, float(self.exploration_noise)))

    def set_planner(self, planner: str, planner_kwargs: dict[str, Any] | None = None) -> None:
        """Act with ``planner`` from now on, in training and in ``predict``; the networks are unchanged. Saved with the
        model."""
        self.policy.set_planner(planner, planner_kwargs)
        self.planner, self.planner_kwargs = planner, dict(planner_kwargs or {})
        self.policy_kwargs = {**self.policy_kwargs, "planner": planner, "planner_kwargs": self.planner_kwargs}

    # ------------------------------------------------------------------------------------------ acting

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        train_freq: TrainFreq,
        replay_buffer: ReplayBuffer,
        action_noise: ActionNoise | None = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        """SB3's ``collect_rollouts``, first training once when the seed steps have just ended: Dreamer's schedule.

        Dreamer's code trains ``pretrain`` (100) times at the first step after its 5 seed episodes (5000 environment
        steps, 2500 agent steps), before its actor's first action, then ``train_steps`` (100) times every
        ``train_every`` (1000) environment steps. SB3's ``learn`` trains after a rollout only once ``num_timesteps >
        learning_starts``: with rollouts of ``train_freq`` steps that end exactly at ``learning_starts`` (Dreamer's
        2500 = 5 x 500) it would train first one rollout (an episode) later. So the rollout that begins at
        ``learning_starts``, with nothing trained yet, is preceded by ``gradient_steps`` updates, in the place where
        ``learn`` trains; ``learn(learning_starts)`` still collects the seed steps alone. Not with
        ``gradient_steps=-1`` (as many as the rollout collects: there is no rollout yet)."""
        if (
            0 < self.num_timesteps == learning_starts
            and self._n_updates == 0
            and self.gradient_steps > 0
            and replay_buffer.size() > 0
        ):
            self.train(gradient_steps=self.gradient_steps, batch_size=self.batch_size)
        return super().collect_rollouts(env, callback, train_freq, replay_buffer, action_noise, learning_starts, log_interval)

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """SB3's ``_sample_action`` with the latent state: every frame is filtered (the random seed steps included,
        so that the first planned action has the episode's state), then uniform random actions for
        ``learning_starts`` steps, the planner's afterwards; SB3 adds ``action_noise`` (Dreamer's exploration)."""
        assert self._last_obs is not None, "self._last_obs was not set"
        frames, _ = self.policy.frames(self._last_obs)  # type: ignore[arg-type]
        with th.no_grad():
            posterior = self.policy.filter(self._rollout_state, frames, self._last_episode_starts, deterministic=False)
            if self.num_timesteps < learning_starts:
                scaled_action = self.policy.scale_action(np.array([self.action_space.sample() for _ in range(n_envs)]))
            else:
                scaled_action = self.policy.act(posterior, deterministic=False).cpu().numpy()
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        self._rollout_state = DreamerState(
            posterior.deter.cpu().numpy(), posterior.stoch.cpu().numpy(), scaled_action.astype(np.float32)
        )
        return self.policy.unscale_action(scaled_action), scaled_action

    # ------------------------------------------------------------------------------------------ the update

    def _scheduled_optimizers(self) -> list[th.optim.Optimizer]:
        """The actor's learning rate follows SB3's schedule; the model's and the value's are constant."""
        return [self.actor.optimizer]

    def _gradient_step(self, sequences: SequenceSamples, record: Recorder) -> None:
        """One Dreamer update (Algorithm 1): a world-model step, then a behaviour step from the same sequences'
        posterior states. The loop around it is SB3's (:meth:`CheckedTraining.train`): losses logged under
        ``train/`` as means over the call, training stopped at the first non-finite loss or parameter."""
        posterior = self.model_step(sequences, record)
        self.behaviour_step(posterior, sequences.observed, record)

    def _after_gradient_step(self, sequences: SequenceSamples) -> None:
        """Every ``imagination_log_interval`` updates, the model's open-loop prediction of the batch just trained on."""
        interval = self.imagination_log_interval
        if interval and self._n_updates % interval == 0:
            self.log_imagination(sequences)

    def _clipped_step(self, module: th.nn.Module, loss: th.Tensor) -> th.Tensor:
        """Backward ``loss``, clip the module's gradient norm at ``grad_clip``, step its optimizer; the norm before."""
        optimizer: th.optim.Optimizer = module.optimizer  # type: ignore[assignment]
        optimizer.zero_grad()
        loss.backward()
        norm = th.nn.utils.clip_grad_norm_(module.parameters(), self.grad_clip)
        optimizer.step()
        return norm

    def model_step(self, sequences: SequenceSamples, record: Recorder) -> RSSMState:
        """One update of the world model; returns the sequences' posterior states ``(B, T, ...)``, detached."""
        terms, posterior = self.world_model.loss(
            sequences.observations,
            sequences.actions,
            sequences.rewards,
            sequences.observed,
            free_nats=self.free_nats,
            kl_scale=self.kl_scale,
            kl_balance=self.kl_balance,
        )
        norm = self._clipped_step(self.world_model, terms.loss)
        record("model_loss", terms.loss)
        record("image_log_likelihood", terms.image_log_likelihood)
        record("reward_log_likelihood", terms.reward_log_likelihood)
        record("kl", terms.kl)
        record("reconstruction_mse", terms.reconstruction_mse)
        record("reward_mse", terms.reward_mse)
        record("model_grad_norm", norm)
        return posterior.detach()

    def behaviour_step(self, posterior: RSSMState, observed: th.Tensor, record: Recorder) -> None:
        """One update of the actor, then of the value, on trajectories imagined from the observed posterior states.

        :param posterior: ``(B, T, ...)`` filtered states (detached)
        :param observed: ``(B, T)``: the padding's states start no trajectory
        """
        starts = posterior.flatten()
        keep = observed.reshape(-1) > 0
        starts = RSSMState(*(tensor[keep] for tensor in starts))
        with frozen(self.world_model, self.value):
            states, _ = self.policy.imagine(starts, self.imagination_horizon)
            returns = self.policy.imagined_returns(states)
        # gamma^t: a return t steps into the imagined future counts as much as reaching it does.
        weights = th.cumprod(th.cat([th.ones_like(returns[:1]), th.full_like(returns[:-1], self.gamma)]), dim=0).detach()
        actor_loss = -(weights * returns).mean()
        actor_norm = self._clipped_step(self.actor, actor_loss)
        values = self.policy.state_value(states.features[:-1].detach())
        value_loss = 0.5 * (weights * (values - returns.detach()) ** 2).mean()
        value_norm = self._clipped_step(self.value, value_loss)
        record("actor_loss", actor_loss)
        record("value_loss", value_loss)
        record("imagined_return", returns[0].mean().detach())
        record("actor_grad_norm", actor_norm)
        record("value_grad_norm", value_norm)

    # ------------------------------------------------------------------------------------------ pictures

    def log_imagination(self, sequences: SequenceSamples, context: int = 5) -> None:
        """Write the first replayed sequence (top row) and the model's open-loop prediction of it (bottom row: the
        posterior's reconstruction for ``context`` frames, then frames imagined by the prior for the replayed actions)
        as the TensorBoard image ``train/imagination``; nothing without a TensorBoard writer."""

        def grid() -> np.ndarray:
            observations = sequences.observations[:1]
            predicted = self.open_loop(observations, sequences.actions[:1], context)
            steps, channels, height, width = observations.shape[1:]
            return reconstruction_grid(
                observations.reshape(1, steps * channels, height, width).cpu().numpy(),
                predicted.reshape(1, steps * channels, height, width).cpu().numpy(),
            )

        self._write_image("train/imagination", grid)

    def open_loop(self, observations: th.Tensor, actions: th.Tensor, context: int = 5) -> th.Tensor:
        """The model's prediction of frames ``(B, T, C, H, W)`` (uint8) from their first ``context`` frames and the
        ``T - 1`` actions ``(B, T - 1, action_dim)``: reconstructions of the context, then frames decoded from the
        prior's means (the paper's open-loop video prediction). Returns decoder means in ``[-0.5, 0.5]`` units."""
        with th.no_grad():
            context = max(1, min(context, observations.shape[1]))
            embeds = self.world_model.encoder(observations[:, :context])
            posterior, _ = self.world_model.rssm.observe(embeds, actions[:, : context - 1])
            state = RSSMState(*(tensor[:, -1] for tensor in posterior))
            features = [posterior.features[:, t] for t in range(context)]
            for t in range(context - 1, observations.shape[1] - 1):
                state = self.world_model.rssm.imagine_step(state, actions[:, t], sample=False)
                features.append(state.features)
            return self.world_model.decoder(th.stack(features, dim=1))

    # ------------------------------------------------------------------------------------------ learn, save, load

    @classmethod
    def load(cls, path: Any, env: GymEnv | None = None, device: th.device | str = "auto", **kwargs: Any) -> Dreamer:  # type: ignore[override]
        """SB3's ``load`` (:class:`~sb3_gaara.common.saving.DurableSaves`'s); ``planner=`` switches the planner of the
        loaded model, with the new planner's default settings unless ``planner_kwargs=`` is given too."""
        if "planner" in kwargs and "planner_kwargs" not in kwargs:
            kwargs["planner_kwargs"] = {}
        return super().load(path, env=env, device=device, **kwargs)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "world_model", "actor", "value"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "world_model.optimizer", "actor.optimizer", "value.optimizer"], []


#: Dreamer's arguments that its policy takes too; the algorithm's values are the ones used
_POLICY_DECIDED = ("model_learning_rate", "value_learning_rate", "planner", "planner_kwargs", "gamma", "lambda_")


def evaluate_planners(
    model: Dreamer,
    env: GymEnv | VecEnv,
    planners: tuple[str, ...] = PLANNERS,
    n_eval_episodes: int = 10,
    deterministic: bool = True,
    planner_kwargs: dict[str, dict[str, Any]] | None = None,
) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of the episode returns of one trained model acting with each planner (the
    source's comparison of the actor and model-predictive control), with SB3's ``evaluate_policy``. The model's
    own planner is restored afterwards.

    :param planner_kwargs: per planner, overrides of its settings (e.g. ``{"cem": {"candidates": 100}}``)
    """
    saved = (model.planner, model.planner_kwargs)
    results: dict[str, tuple[float, float]] = {}
    try:
        for planner in planners:
            model.set_planner(planner, (planner_kwargs or {}).get(planner))
            mean, std = evaluate_policy(model, env, n_eval_episodes=n_eval_episodes, deterministic=deterministic)
            assert not isinstance(mean, list) and not isinstance(std, list)
            results[planner] = (float(mean), float(std))
    finally:
        model.set_planner(*saved)
    return results


def _check_observation_space(observation_space: spaces.Space) -> None:
    """The package's pixel-space checks with Dreamer's name, then Dreamer's own: 64 x 64 frames."""
    check_pixel_observation_space(observation_space, 1, "Dreamer")
    assert isinstance(observation_space, spaces.Box)
    channels, height, width = channel_first_shape(observation_space)
    check_image_size(height, width)
    if channels > 3 and channels % 3 == 0:
        warnings.warn(
            f"Dreamer gets {channels}-channel observations, i.e. {channels // 3} stacked RGB frames: its recurrent model "
            "reads motion from the sequence of single frames. Give it single frames (dmc-* and PixelReach-v0: "
            "env_kwargs=dict(frame_stack=1)).",
            stacklevel=3,
        )

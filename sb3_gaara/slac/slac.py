"""SLAC (Lee, Nagabandi, Abbeel & Levine, "Stochastic Latent Actor-Critic: Deep Reinforcement Learning with a Latent
Variable Model", NeurIPS 2020) on Stable-Baselines3's SAC.

SLAC learns a sequential latent variable model of the frames (:mod:`sb3_gaara.slac.latent_model`) and runs SAC with
the critic on the model's latent samples and the actor on the history of encoded frames and past actions
(:mod:`sb3_gaara.slac.policies`), both on sequences replayed from the frame-once store
(:mod:`sb3_gaara.common.sequence_buffer`).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, Schedule
from stable_baselines3.common.utils import polyak_update
from stable_baselines3.sac import SAC

from sb3_gaara.common.preprocessing import (
    channel_first_shape,
    check_continuous_action_space,
    check_pixel_observation_space,
)
from sb3_gaara.common.recurrent import TracksEpisodeStarts
from sb3_gaara.common.saving import DurableSaves
from sb3_gaara.common.sequence_buffer import SequenceReplayBuffer, SequenceSamples
from sb3_gaara.common.training import CheckedTraining, Metrics, Recorder
from sb3_gaara.plotting import reconstruction_grid
from sb3_gaara.slac.latent_model import check_image_size
from sb3_gaara.slac.policies import CnnPolicy, SLACHistory, SLACPolicy, advance_history, record_action


class SLAC(CheckedTraining, DurableSaves, TracksEpisodeStarts, SAC):
    """Stochastic latent actor-critic from pixels.

    ``SLAC("CnnPolicy", env)`` trains with the paper's settings (appendix B): frames of 64 x 64 px, one per
    observation (``dmc-*``: ``env_kwargs=dict(height=64, width=64, frame_stack=1)``; the action repeats of the PlaNet
    benchmark, the ``dmc-*`` ids' defaults: cheetah 4, walker 2, ball_in_cup 4, finger 2, cartpole 8, reacher 4);
    sequences of 8 observations; latents ``z1`` of 32 and ``z2`` of 256; Adam at 1e-4 for the model (batch 32 sequences)
    and 3e-4 for the actor, the critic and the temperature (batch 256 sequences); ``gamma=0.99``, ``tau=0.005``, the
    temperature learned from 1 towards an entropy of ``-action_dim``; 10k agent steps of random actions, then 100k
    model updates (``model_pretraining_steps``) before the first agent update; then one model and one agent update
    per agent step.

    One agent step of training (:meth:`train`):

    1. **model** (:meth:`model_step`): a batch of ``model_batch_size`` sequences, the loss
       ``-(sum_t log p(x_t | z_t) - KL terms + sum_t log p(r_t | z_t, a_t, z_{t+1}))`` on posterior samples
       (:meth:`sb3_gaara.slac.latent_model.LatentModel.loss`), the model's Adam;
    2. **agent** (:meth:`agent_step`): a batch of ``batch_size`` sequences filtered by the posterior without gradient,
       ``z_{S-1}`` and ``z_S`` its last two latent samples; SB3's SAC update with ``Q(z_{S-1}, a_{S-1})`` regressed on
       ``r_{S-1} + gamma (1 - done) (min Q_target(z_S, a') - alpha log pi(a' | h))`` and the actor on
       ``alpha log pi(a | h) - min Q(z_S, a)``, where ``h`` is the encoded frames ``x_{1:S}`` (detached) and the actions
       ``a_{1:S-1}`` (the paper's ``J_Q`` and ``J_pi``, §5).

    Where it follows the original SLAC code (``alexlee-gk/slac``, TensorFlow) and where the PyTorch port
    (``toshikwa/slac.pytorch``) differs:

    * the critic's loss is ``0.5 * sum of MSEs`` (SB3's, the paper's ``J_Q``, and the original's ``weights=0.5``); the
      port drops the 0.5;
    * the temperature's loss is ``-log alpha * (log pi + target entropy)`` averaged, in all three;
    * the reward's log-likelihood counts every step of a sequence, a terminal one included (the original leaves out
      only the step that crosses an episode boundary; the port also drops a terminal step's reward; DeepMind Control
      has no terminal steps);
    * before an episode's first step, the actor's history and the replayed sequences hold copies of the episode's
      first frame and zero actions (the original's ``filter_before_first_step``); the port acts on zero frames and
      never replays a sequence that starts before its episode.

    Where it departs from the original, and why:

    * a sequence holds ``sequence_length`` = 8 observations and 7 actions, the model's and the critic's filter
      included; both references sample one step more (the original ``sequence_length + 1`` stored steps, the port 9
      frames), filter 9 frames and train the critic on ``(z_8, a_8) -> z_9`` and the actor on ``z_8``, with the
      histories ``x_{1:8}`` (actor) and ``x_{2:9}`` (the target's action). Here the critic trains on ``(z_7, a_7) ->
      z_8`` and the actor on ``z_8``, both with the history ``x_{1:8}``, as the paper's ``J_Q`` and ``J_pi`` write it
      (``x_{1:tau+1}``, ``a_{1:tau}``, ``tau + 1 = sequence_length``): the actor's history is the same 8 frames and 7
      actions, and one frame less is replayed and filtered;
    * every stored transition ends a sequence equally often (SB3's uniform draw), and a sequence never spans two
      episodes: the steps before its episode are padding (above), flagged ``observed = 0``. The model restarts its
      filter at the first observed step and its losses skip the padding. The original's replay has no padding: its
      sequences cross episode boundaries, its model restarts the latent at the new episode's first step and trains on
      the previous episode's steps as well (only the boundary's reward left out), and only the actor's and critic's
      sequence inputs are padded. Skipping the padding keeps the repeated first frame, which the original's model never
      sees, out of the ELBO; the port keeps only sequences wholly inside an episode, so its actor never trains on the
      padded histories it acts on;
    * the model's 32 sequences are drawn apart from the agent's 256 (as the port does); the original trains the model
      on the first 32 of the agent's batch, in the same update;
    * SB3's order within an update is kept: temperature, critic, then the actor on the updated critic, then the
      target's EMA; the original computes every loss at the same parameters before applying them, the port updates the
      critic, then the actor and the temperature.

    Acting carries the actor's history across steps (:class:`~sb3_gaara.slac.policies.SLACHistory`): ``model.predict``
    takes and returns it as SB3's recurrent ``state`` and clears it where ``episode_start`` is set, so SB3's
    ``evaluate_policy``, rl-zoo3's ``enjoy`` and ``record_video`` and the package's evaluation protocol act as in
    training. While training, the history of each env lives in the model (and is saved with it).

    :param sequence_length: observations per sequence ``S``, also the frames of the actor's history (8)
    :param model_learning_rate: learning rate of the model's Adam (1e-4)
    :param model_batch_size: sequences per model update (32)
    :param model_pretraining_steps: model updates before the first agent update (100k, the paper's); they run in the
        first ``train()`` call, after ``learning_starts`` steps of random actions have filled the buffer
    :param reconstruction_log_interval: every this many model updates, write a replayed sequence and the decoder's
        reconstruction of it as the TensorBoard image ``train/reconstructions`` (only when the logger writes TensorBoard:
        ``tensorboard_log=...``); 0 turns it off

    The other parameters are SB3's ``SAC``'s, with the paper's defaults (``batch_size`` is the agent's batch of
    sequences). ``buffer_size`` defaults to 100k transitions (the PyTorch port's; 1.2 GB of 64 px frames).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"CnnPolicy": CnnPolicy, "SLACPolicy": SLACPolicy}
    #: ``--algo`` name in the RL Zoo
    zoo_name: ClassVar[str] = "slac"
    #: arguments that decide the saved networks: ``load`` refuses to override them
    architecture_keys: ClassVar[tuple[str, ...]] = ("sequence_length",)
    #: why the update is not written for the speed options (``cuda_graphs``, ``overlap_env_step``): the refusal says it
    speed_options_reason: ClassVar[str] = (
        "SLAC's update is not written for it: it is two updates (the latent model's, then the agent's) on two batches "
        "of sequences, drawn after the store"
    )
    policy: SLACPolicy  # type: ignore[assignment]
    replay_buffer: SequenceReplayBuffer

    def __init__(
        self,
        policy: str | type[SLACPolicy],
        env: GymEnv | str | None,
        learning_rate: float | Schedule = 3e-4,
        buffer_size: int = 100_000,
        learning_starts: int = 10_000,
        batch_size: int = 256,
        tau: float = 0.005,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 1,
        gradient_steps: int = 1,
        action_noise: ActionNoise | None = None,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        ent_coef: str | float = "auto",
        target_update_interval: int = 1,
        target_entropy: str | float = "auto",
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        sequence_length: int = 8,
        model_learning_rate: float = 1e-4,
        model_batch_size: int = 32,
        model_pretraining_steps: int = 100_000,
        reconstruction_log_interval: int = 10_000,
        _init_setup_model: bool = True,
    ) -> None:
        self.sequence_length = sequence_length
        self.model_learning_rate = model_learning_rate
        self.model_batch_size = model_batch_size
        self.model_pretraining_steps = model_pretraining_steps
        self.reconstruction_log_interval = reconstruction_log_interval
        self._check_hyperparameters()
        if _init_setup_model and env is not None and not isinstance(env, str):
            # Fail here, before SB3 wraps the env, with a message that says what to change.
            _check_observation_space(env.observation_space)
            check_continuous_action_space(env.action_space, "SLAC", "is SAC")
        super().__init__(
            policy,  # type: ignore[arg-type]
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
            ent_coef=ent_coef,
            target_update_interval=target_update_interval,
            target_entropy=target_entropy,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        #: model updates so far (pretraining included)
        self._n_model_updates = 0
        #: the actor's history of each training env (frames and actions), carried across rollouts
        self._rollout_history: SLACHistory | None = None
        if _init_setup_model:
            self._setup_model()

    def _check_hyperparameters(self) -> None:
        """Reject settings that cannot mean what the user wants, naming the fix."""
        checks = {
            "sequence_length": (self.sequence_length, 2, "observations per sequence (SLAC: 8)"),
            "model_batch_size": (self.model_batch_size, 1, "sequences per model update (SLAC: 32)"),
            "model_pretraining_steps": (self.model_pretraining_steps, 0, "model updates before the agent's (SLAC: 100000)"),
            "reconstruction_log_interval": (self.reconstruction_log_interval, 0, "model updates between images (0: off)"),
        }
        for name, (value, minimum, meaning) in checks.items():
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, the {meaning}; got {value!r}.")
        if not isinstance(self.model_learning_rate, (int, float)) or not self.model_learning_rate > 0:
            raise ValueError(f"model_learning_rate must be a positive number (SLAC: 1e-4), got {self.model_learning_rate!r}.")

    def _setup_model(self) -> None:
        """SB3's ``SAC._setup_model`` with SLAC's buffer and policy settings, then the model's alias."""
        _check_observation_space(self.observation_space)
        check_continuous_action_space(self.action_space, "SLAC", "is SAC")
        if self.replay_buffer_class is None:
            self.replay_buffer_class = SequenceReplayBuffer
        if not issubclass(self.replay_buffer_class, SequenceReplayBuffer):
            raise ValueError(
                f"SLAC trains on sequences from SequenceReplayBuffer, got replay_buffer_class="
                f"{self.replay_buffer_class.__name__}: leave replay_buffer_class unset (or subclass SequenceReplayBuffer)."
            )
        decided: dict[str, Any] = {"sequence_length": self.sequence_length}
        policy_decided = {**decided, "model_learning_rate": self.model_learning_rate}
        for kwargs, where, keys in (
            (self.replay_buffer_kwargs, "replay_buffer_kwargs", decided),
            (self.policy_kwargs, "policy_kwargs", policy_decided),
        ):
            for key, expected in keys.items():
                if key in kwargs and kwargs[key] != expected:
                    raise ValueError(
                        f"{where}[{key!r}]={kwargs[key]!r} contradicts the model's {key}={expected!r}; set {key} on SLAC, "
                        f"not in {where}."
                    )
        if not self.replay_buffer_kwargs.get("pad_with_first_frame", True):
            raise ValueError(
                "SLAC pads replayed sequences with their episode's first frame, as its actor's history holds it at an "
                "episode's start: leave pad_with_first_frame out of replay_buffer_kwargs."
            )
        self.replay_buffer_kwargs = {**self.replay_buffer_kwargs, **decided, "pad_with_first_frame": True}
        # SB3's OffPolicyAlgorithm adds use_sde (False: SLAC has no gSDE) to the policy's arguments.
        policy_kwargs = {key: value for key, value in self.policy_kwargs.items() if key != "use_sde"}
        self.policy_kwargs = {**policy_kwargs, **policy_decided}
        SAC._setup_model(self)
        self.latent_model = self.policy.latent_model

    # ------------------------------------------------------------------------------------------ acting

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """SB3's ``_sample_action`` with the actor's history: uniform random actions for ``learning_starts`` agent
        steps, then the actor's sample given the last ``S`` frames and ``S - 1`` actions of each env (before the
        episode's start, its first frame repeated and zero actions). The history records every step, the random ones
        included, so that the actor's first actions see the frames and actions that preceded them."""
        assert self._last_obs is not None, "self._last_obs was not set"
        frames, _ = self.policy.frames(self._last_obs)  # type: ignore[arg-type]
        history = advance_history(
            self._rollout_history, frames, self._last_episode_starts, self.policy.action_dim, self.sequence_length
        )
        if self.num_timesteps < learning_starts:
            scaled_action = self.policy.scale_action(np.array([self.action_space.sample() for _ in range(n_envs)]))
        else:
            with th.no_grad():
                scaled_action = self.actor(self.policy.history_input(history), deterministic=False).cpu().numpy()
        if action_noise is not None:
            scaled_action = np.clip(scaled_action + action_noise(), -1, 1)
        self._rollout_history = record_action(history, scaled_action)
        return self.policy.unscale_action(scaled_action), scaled_action

    # ------------------------------------------------------------------------------------------ the update

    def _scheduled_optimizers(self) -> list[th.optim.Optimizer]:
        """SB3's SAC schedules the actor's, the critic's and the temperature's learning rates; the model's is constant,
        as in the paper."""
        optimizers = [self.actor.optimizer, self.critic.optimizer]
        return optimizers if self.ent_coef_optimizer is None else [*optimizers, self.ent_coef_optimizer]

    def _before_gradient_steps(self, record: Recorder) -> None:
        """Before the first agent update, ``model_pretraining_steps`` model updates (counted as update #1)."""
        if self._n_updates == 0 and self._n_model_updates < self.model_pretraining_steps:
            remaining = self.model_pretraining_steps - self._n_model_updates
            if self.verbose >= 1:
                print(f"SLAC: pretraining the latent model for {remaining} updates before the first agent update")
            for _ in range(remaining):
                self.model_step(self._sample_model_batch(), record)

    def _sample_model_batch(self) -> SequenceSamples:
        """``model_batch_size`` sequences for the latent model's update."""
        return self.replay_buffer.sample(self.model_batch_size, env=self._vec_normalize_env)

    def _sample_batch(self, batch_size: int) -> tuple[SequenceSamples, SequenceSamples]:
        """The sequences of one SLAC update: the model's ``model_batch_size``, then the agent's ``batch_size``."""
        return self._sample_model_batch(), self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)

    def _gradient_step(self, batch: tuple[SequenceSamples, SequenceSamples], record: Recorder) -> None:
        """One SLAC update (class docstring): a model update, then an agent update on their own sequences.

        The loop around it is SB3 2.9's ``SAC.train`` (:meth:`CheckedTraining.train`); training stops at the first
        non-finite loss or parameter."""
        model_sequences, agent_sequences = batch
        self.model_step(model_sequences, record)
        self.agent_step(agent_sequences, record)

    def _log_and_check(self, metrics: Metrics, error: Exception | None = None, skip_nonfinite: bool = False) -> None:
        super()._log_and_check(metrics, error, skip_nonfinite)
        if error is None:
            self.logger.record("train/n_model_updates", self._n_model_updates, exclude="tensorboard")

    def model_step(self, sequences: SequenceSamples, record: Recorder) -> None:
        """One update of the latent variable model on ``sequences`` (its own Adam)."""
        loss, terms = self.latent_model.loss(sequences.observations, sequences.actions, sequences.rewards, sequences.observed)
        self.latent_model.optimizer.zero_grad()
        loss.backward()
        self.latent_model.optimizer.step()
        self._n_model_updates += 1
        record("model_loss", loss)
        record("kl", terms.kl.mean())
        record("image_log_likelihood", terms.image_log_likelihood.mean())
        record("reward_log_likelihood", terms.reward_log_likelihood.mean())
        record("reconstruction_mse", terms.reconstruction_mse)
        interval = self.reconstruction_log_interval
        if interval and self._n_model_updates % interval == 0:
            self.log_reconstructions(sequences.observations[0], sequences.actions[0], sequences.observed[0])

    def agent_step(self, sequences: SequenceSamples, record: Recorder) -> None:
        """One SAC update of the temperature, the critic and the actor on ``sequences``, then the EMA."""
        with th.no_grad():
            features = self.latent_model.encode(sequences.observations)
            latents = self.latent_model.posterior(features, sequences.actions, sequences.observed).latents
        history = self.policy.actor_input(features, sequences.actions)
        self.sac_update(history, latents[:, -2], latents[:, -1], sequences, record)
        if self._n_updates % self.target_update_interval == 0:
            polyak_update(self.critic.parameters(), self.critic_target.parameters(), self.tau)

    def sac_update(
        self,
        history: th.Tensor,
        latent: th.Tensor,
        next_latent: th.Tensor,
        sequences: SequenceSamples,
        record: Recorder,
    ) -> None:
        """SB3 2.9's SAC update (temperature, critic, actor, in its order) with the critic on latents and the actor on
        the history.

        :param history: ``(B, history_dim)`` the actor's input at the sequence's last observation ``x_S``
        :param latent: ``(B, latent_dim)`` ``z_{S-1}``, the state of the last replayed action
        :param next_latent: ``(B, latent_dim)`` ``z_S``
        """
        actions = sequences.actions[:, -1]
        rewards, dones = sequences.rewards[:, -1], sequences.dones[:, -1]
        actions_pi, log_prob = self.actor.action_log_prob(history)
        log_prob = log_prob.reshape(-1, 1)

        if self.ent_coef_optimizer is not None and self.log_ent_coef is not None:
            ent_coef = th.exp(self.log_ent_coef.detach())
            assert isinstance(self.target_entropy, float)
            ent_coef_loss = -(self.log_ent_coef * (log_prob + self.target_entropy).detach()).mean()
            record("ent_coef_loss", ent_coef_loss)
            self.ent_coef_optimizer.zero_grad()
            ent_coef_loss.backward()
            self.ent_coef_optimizer.step()
        else:
            ent_coef = self.ent_coef_tensor
        record("ent_coef", ent_coef.reshape(()))

        with th.no_grad():
            next_actions, next_log_prob = self.actor.action_log_prob(history)
            next_q_values = th.cat(self.critic_target(next_latent, next_actions), dim=1)
            next_q_values, _ = th.min(next_q_values, dim=1, keepdim=True)
            next_q_values = next_q_values - ent_coef * next_log_prob.reshape(-1, 1)
            target_q_values = rewards + (1 - dones) * self.gamma * next_q_values
        current_q_values = self.critic(latent, actions)
        critic_loss = 0.5 * sum(F.mse_loss(current_q, target_q_values) for current_q in current_q_values)
        assert isinstance(critic_loss, th.Tensor)
        record("critic_loss", critic_loss)
        self.critic.optimizer.zero_grad()
        critic_loss.backward()
        self.critic.optimizer.step()

        q_values_pi = th.cat(self.critic(next_latent, actions_pi), dim=1)
        min_qf_pi, _ = th.min(q_values_pi, dim=1, keepdim=True)
        actor_loss = (ent_coef * log_prob - min_qf_pi).mean()
        record("actor_loss", actor_loss)
        self.actor.optimizer.zero_grad()
        actor_loss.backward()
        self.actor.optimizer.step()

    def log_reconstructions(self, observations: th.Tensor, actions: th.Tensor, observed: th.Tensor | None = None) -> None:
        """Write one replayed sequence (top row) and the decoder's means at its posterior samples (bottom row) as the
        TensorBoard image ``train/reconstructions``, at the current ``num_timesteps``; nothing without a TensorBoard
        writer. Blurred or frozen reconstructions show a model that stopped reading the frames.

        :param observations: ``(S, C, H, W)`` uint8
        :param actions: ``(S - 1, action_dim)``
        :param observed: ``(S,)`` 1 for observed steps, 0 for the padding before the episode's first observation
        """

        def grid() -> np.ndarray:
            with th.no_grad():
                features = self.latent_model.encode(observations[None])
                latents = self.latent_model.posterior(
                    features, actions[None], None if observed is None else observed[None]
                ).latents
                means = self.latent_model.decoder(latents)[0]
            steps, channels, height, width = observations.shape
            # reconstruction_grid shows its reconstructions + 0.5 (the 5-bit target of the other agents' decoders).
            return reconstruction_grid(
                observations.reshape(1, steps * channels, height, width).cpu().numpy(),
                (means - 0.5).reshape(1, steps * channels, height, width).cpu().numpy(),
            )

        self._write_image("train/reconstructions", grid)

    # ------------------------------------------------------------------------------------------ learn, save, load

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "latent_model"]

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts, saved_variables = super()._get_torch_save_params()
        return [*state_dicts, "latent_model.optimizer"], saved_variables


def _check_observation_space(observation_space: spaces.Space) -> None:
    """The package's pixel-space checks with SLAC's name, then SLAC's own: square frames, a multiple of 16 px."""
    check_pixel_observation_space(observation_space, 1, "SLAC")
    assert isinstance(observation_space, spaces.Box)
    channels, height, width = channel_first_shape(observation_space)
    if height != width:
        raise ValueError(
            f"SLAC's encoder needs square frames, got {height}x{width}: render them square (the paper: 64 x 64; dmc-*: "
            "env_kwargs=dict(height=64, width=64))."
        )
    check_image_size(height)
    if channels > 3 and channels % 3 == 0:
        warnings.warn(
            f"SLAC gets {channels}-channel observations, i.e. {channels // 3} stacked RGB frames: SLAC models one frame "
            "per step and reads motion from its sequences and the actor's history. Give it single frames (dmc-* and "
            "PixelReach-v0: env_kwargs=dict(frame_stack=1)).",
            stacklevel=3,
        )

"""SLAC's networks: the latent variable model, the actor on the history of encoded frames and past actions, the twin
critic on latent samples, and the history the actor carries across steps while acting.

Gradient routing (SLAC §5, appendix B: the model, the critic and the actor are separate optimization problems):

* the **model** (encoder, prior, posterior, decoder, reward model) is trained by the ELBO alone, with its own Adam;
* the **critic** reads posterior samples ``z`` drawn without gradient: its loss does not move the model;
* the **actor** reads the encoder's features detached: its loss moves neither the model nor the critic (the critic's
  Q values of the actor's actions are computed with the critic's parameters, but only the actor's optimizer steps).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy, ContinuousCritic
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.sac.policies import Actor
from torch import nn

from sb3_gaara.common.preprocessing import check_channels_first
from sb3_gaara.common.recurrent import observation_frames
from sb3_gaara.slac.latent_model import DECODER_STD, LatentModel, xavier_init


class SLACHistory(NamedTuple):
    """What the actor conditions on while acting, per env: SB3's recurrent ``state`` for SLAC.

    After acting at step ``t`` it holds the observations ``x_{t-S+1..t}`` and the actions ``a_{t-S+2..t}`` (the one just
    chosen last). At the next step the new observation is appended and the actor reads ``x_{t-S+2..t+1}`` with
    ``a_{t-S+2..t}``: the last ``S`` observations and the ``S - 1`` actions between them, as on a replayed sequence.
    Before an episode's first step the frames are copies of its first frame and the actions zeros, as the original SLAC
    code fills the history (its ``filter_before_first_step``; the PyTorch port pads with zero frames instead), and as
    SLAC's replay pads its sequences (:mod:`sb3_gaara.common.sequence_buffer`).

    :param observations: ``(n_envs, S, C, H, W)`` uint8
    :param actions: ``(n_envs, S - 1, action_dim)`` float32 actions in ``[-1, 1]`` (the policy's scaled actions, as
        the replay buffer stores them)
    """

    observations: np.ndarray
    actions: np.ndarray


def advance_history(
    history: SLACHistory | None,
    observation: np.ndarray,
    episode_start: np.ndarray | None,
    action_dim: int,
    sequence_length: int,
) -> SLACHistory:
    """The history with ``observation`` (``(n_envs, C, H, W)`` uint8) as its newest frame; envs at an episode start
    (``episode_start``; every env when ``history`` is None) start from ``S`` copies of it and zero actions.

    Pure: returns new arrays."""
    n_envs = observation.shape[0]
    if history is None or history.observations.shape[0] != n_envs:
        observations = np.repeat(observation[:, None].astype(np.uint8, copy=False), sequence_length, axis=1)
        actions = np.zeros((n_envs, sequence_length - 1, action_dim), dtype=np.float32)
    else:
        if history.observations.shape[1:] != (sequence_length, *observation.shape[1:]):
            raise ValueError(
                f"The state passed to SLAC's predict has observations of shape {history.observations.shape[1:]}, "
                f"expected {(sequence_length, *observation.shape[1:])}: pass the state the previous predict returned "
                "(or None at the start of an episode)."
            )
        observations = np.roll(history.observations, -1, axis=1)
        actions = np.array(history.actions, dtype=np.float32, copy=True)
        if episode_start is not None:
            starts = np.asarray(episode_start, dtype=bool).reshape(-1)
            observations[starts] = observation[starts, None]
            actions[starts] = 0.0
    observations[:, -1] = observation
    return SLACHistory(observations, actions)


def record_action(history: SLACHistory, scaled_action: np.ndarray) -> SLACHistory:
    """The history with ``scaled_action`` (``(n_envs, action_dim)`` in ``[-1, 1]``) as the newest action."""
    actions = np.roll(history.actions, -1, axis=1)
    actions[:, -1] = scaled_action
    return SLACHistory(history.observations, actions)


class SLACPolicy(BasePolicy):
    """SLAC's latent variable model, actor, twin critic and target critic.

    * ``latent_model``: :class:`~sb3_gaara.slac.latent_model.LatentModel` with its own optimizer
      (``latent_model.optimizer``, Adam at ``model_learning_rate``);
    * ``actor``: SB3's SAC ``Actor`` (tanh-Gaussian, log-std clamped to ``[-20, 2]``) on the concatenation of the
      encoder's features of the last ``S`` frames and the ``S - 1`` actions between them: ``S * features_dim +
      (S - 1) * action_dim`` inputs (paper §5: the actor sees the history of observations and actions, not the
      latent, so that it acts without filtering);
    * ``critic`` and ``critic_target``: SB3's ``ContinuousCritic`` on ``z = [z1, z2]`` and the action.

    :param observation_space: channel-first uint8 frames, square, a multiple of 16 px
    :param action_space: Box actions
    :param lr_schedule: learning rate of the actor and the critic (3e-4)
    :param net_arch: hidden layers of the actor and of each Q network (256, 256)
    :param activation_fn: their activation (ReLU)
    :param sequence_length: observations per sequence ``S``, i.e. frames in the actor's history (8)
    :param features_dim: encoder features per frame (256)
    :param z1_dim: size of ``z1`` (32)
    :param z2_dim: size of ``z2`` (256)
    :param model_hidden_sizes: hidden layers of the model's conditional Gaussians (256, 256)
    :param base_channels: channels of the encoder's first convolution (32)
    :param decoder_std: the decoder's fixed standard deviation (``sqrt(0.1)``)
    :param model_learning_rate: learning rate of the model's Adam (1e-4)
    :param normalize_images: kept for SB3's signature; the model always scales uint8 frames to ``[0, 1]``
    :param optimizer_class: optimizer of every network (Adam)
    :param optimizer_kwargs: its extra arguments
    :param n_critics: Q networks (2)
    """

    actor: Actor
    critic: ContinuousCritic
    critic_target: ContinuousCritic
    latent_model: LatentModel

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        sequence_length: int = 8,
        features_dim: int = 256,
        z1_dim: int = 32,
        z2_dim: int = 256,
        model_hidden_sizes: tuple[int, ...] | list[int] = (256, 256),
        base_channels: int = 32,
        decoder_std: float = DECODER_STD,
        model_learning_rate: float = 1e-4,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 2,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class=FlattenExtractor,
            features_extractor_kwargs=None,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
            squash_output=True,
            normalize_images=normalize_images,
        )
        check_channels_first(observation_space, "SLACPolicy", "SLAC")
        self.net_arch = [256, 256] if net_arch is None else list(net_arch)
        self.activation_fn = activation_fn
        self.sequence_length = sequence_length
        self.features_dim = features_dim
        self.z1_dim = z1_dim
        self.z2_dim = z2_dim
        self.model_hidden_sizes = tuple(model_hidden_sizes)
        self.base_channels = base_channels
        self.decoder_std = decoder_std
        self.model_learning_rate = model_learning_rate
        self.n_critics = n_critics
        self.action_dim = int(np.prod(action_space.shape))
        self._build(lr_schedule)

    @property
    def history_dim(self) -> int:
        """Size of the actor's input: ``S`` feature vectors and ``S - 1`` actions."""
        return self.sequence_length * self.features_dim + (self.sequence_length - 1) * self.action_dim

    def _build(self, lr_schedule: Schedule) -> None:
        shape = self.observation_space.shape
        assert shape is not None
        self.latent_model = LatentModel(
            (shape[0], shape[1], shape[2]),
            self.action_dim,
            features_dim=self.features_dim,
            z1_dim=self.z1_dim,
            z2_dim=self.z2_dim,
            hidden_sizes=self.model_hidden_sizes,
            base_channels=self.base_channels,
            decoder_std=self.decoder_std,
        ).to(self.device)
        assert isinstance(self.action_space, spaces.Box)
        history_space = spaces.Box(-np.inf, np.inf, (self.history_dim,), dtype=np.float32)
        latent_space = spaces.Box(-np.inf, np.inf, (self.latent_model.latent_dim,), dtype=np.float32)
        self.actor = Actor(
            history_space,
            self.action_space,
            net_arch=self.net_arch,
            features_extractor=FlattenExtractor(history_space),
            features_dim=self.history_dim,
            activation_fn=self.activation_fn,
            normalize_images=False,
        ).to(self.device)
        self.critic, self.critic_target = (
            ContinuousCritic(
                latent_space,
                self.action_space,
                net_arch=self.net_arch,
                features_extractor=FlattenExtractor(latent_space),
                features_dim=self.latent_model.latent_dim,
                activation_fn=self.activation_fn,
                normalize_images=False,
                n_critics=self.n_critics,
                share_features_extractor=False,
            ).to(self.device)
            for _ in range(2)
        )
        # The public SLAC code initialises the actor and the critic like the model (Xavier-uniform, zero biases).
        self.actor.apply(xavier_init)
        self.critic.apply(xavier_init)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.set_training_mode(False)

        self.actor.optimizer = self.optimizer_class(self.actor.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.critic.optimizer = self.optimizer_class(self.critic.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.latent_model.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.latent_model.parameters(), lr=self.model_learning_rate, **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            net_arch=self.net_arch,
            activation_fn=self.activation_fn,
            sequence_length=self.sequence_length,
            features_dim=self.features_dim,
            z1_dim=self.z1_dim,
            z2_dim=self.z2_dim,
            model_hidden_sizes=self.model_hidden_sizes,
            base_channels=self.base_channels,
            decoder_std=self.decoder_std,
            model_learning_rate=self.model_learning_rate,
            n_critics=self.n_critics,
            lr_schedule=self._dummy_schedule,
        )
        return data

    # ------------------------------------------------------------------------------------------ the actor's input

    def actor_input(self, features: th.Tensor, actions: th.Tensor) -> th.Tensor:
        """``(B, S * features_dim + (S - 1) * action_dim)``: the features of ``S`` frames and the actions between them.

        :param features: ``(B, S, features_dim)``
        :param actions: ``(B, S - 1, action_dim)``
        """
        return th.cat([features.flatten(1), actions.flatten(1)], dim=1)

    def history_input(self, history: SLACHistory) -> th.Tensor:
        """The actor's input for a history: its frames encoded by the current encoder, without gradient."""
        with th.no_grad():
            images = th.as_tensor(history.observations, device=self.device)
            features = self.latent_model.encode(images)
            actions = th.as_tensor(history.actions, device=self.device)
        return self.actor_input(features, actions)

    # ------------------------------------------------------------------------------------------ acting

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Actions for ``observation`` as the first step of an episode (its frame repeated before it). Acting within
        an episode needs the history: use :meth:`predict` with its ``state``."""
        assert isinstance(observation, th.Tensor)
        frames = observation.cpu().numpy().astype(np.uint8)
        history = advance_history(None, frames, None, self.action_dim, self.sequence_length)
        return self.actor(self.history_input(history), deterministic=deterministic)

    def frames(self, observation: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(n_envs, C, H, W)`` uint8 frames of an observation as ``predict`` gets it, and whether it was vectorized
        (:func:`~sb3_gaara.common.recurrent.observation_frames`)."""
        return observation_frames(observation, self.observation_space, "SLAC")

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, SLACHistory]:
        """SB3's recurrent ``predict`` contract: actions for ``observation`` given the ``state`` the previous call
        returned (a :class:`SLACHistory`; ``None`` at the first step), the envs flagged in ``episode_start`` starting
        a new episode. Returns the actions (unscaled to the action space, as SB3's ``predict``) and the new state.

        SB3's ``evaluate_policy``, rl-zoo3's ``enjoy`` and ``record_video`` and the package's evaluation protocol pass
        the state and the episode starts along, so a SLAC model acts with its history there."""
        self.set_training_mode(False)
        frames, vectorized = self.frames(observation)
        history = advance_history(
            None if state is None else SLACHistory(*state), frames, episode_start, self.action_dim, self.sequence_length
        )
        with th.no_grad():
            scaled = self.actor(self.history_input(history), deterministic=deterministic).cpu().numpy()
        history = record_action(history, scaled)
        actions = self.unscale_action(scaled)
        assert isinstance(self.action_space, spaces.Box)
        actions = np.clip(actions, self.action_space.low, self.action_space.high)
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, history

    def set_training_mode(self, mode: bool) -> None:
        self.latent_model.train(mode)
        self.actor.set_training_mode(mode)
        self.critic.set_training_mode(mode)
        self.training = mode


CnnPolicy = SLACPolicy

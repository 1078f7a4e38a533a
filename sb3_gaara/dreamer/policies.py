"""Dreamer's networks and how it acts: the world model, the actor and the value, the latent state carried across
steps, and the three planners.

Gradient routing (Dreamer §3, Algorithm 1: three models, three optimizers):

* the **world model** (encoder, RSSM, decoder, reward model) is trained by its ELBO alone;
* the **actor** maximizes the lambda-return of trajectories it imagines from the model's posterior states: the
  gradient flows back through the model's dynamics, the reward model and the value into the actions, but the model's
  and the value's parameters are frozen for that backward pass (:func:`frozen`), so the actor's loss moves only the
  actor;
* the **value** regresses the (detached) lambda-returns from the (detached) imagined states: its loss moves only the
  value.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn
from torch.nn import functional as F

from sb3_gaara.common.preprocessing import check_channels_first
from sb3_gaara.common.recurrent import observation_frames
from sb3_gaara.dreamer.planning import cem_plan, lambda_returns
from sb3_gaara.dreamer.world_model import DenseHead, RSSMState, WorldModel, keras_initialization_

#: the planners ``Dreamer(planner=...)`` accepts
PLANNERS = ("actor", "cem", "dreamer_mpc")
#: each planner's settings (``planner_kwargs`` overrides them): PlaNet's CEM (horizon 12, 10 iterations, 1000
#: candidates, top 100) and Dreamer's MPC with the same search over the imagination horizon of 15 steps, its Gaussian
#: started at the actor's plan with a unit standard deviation (the source's Algorithm 2: ``N(a_{t:t+H}, I)``)
PLANNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "actor": {},
    "cem": {"horizon": 12, "iterations": 10, "candidates": 1000, "top_k": 100},
    "dreamer_mpc": {"horizon": 15, "iterations": 10, "candidates": 1000, "top_k": 100, "init_std": 1.0},
}
#: the actor's mean before the tanh is ``MEAN_SCALE * tanh(mean / MEAN_SCALE)``: Dreamer's factor 5 lets it saturate
MEAN_SCALE = 5.0
#: the actor's standard deviation at initialization (Dreamer's 5) and its floor (1e-4)
INIT_STD = 5.0
ACTOR_MIN_STD = 1e-4
#: how ``DreamerPolicy(weight_init=...)`` initializes the networks: ``"keras"``, Dreamer's code's
#: (:func:`~sb3_gaara.dreamer.world_model.keras_initialization_`), or ``"torch"``, PyTorch's defaults
WEIGHT_INITS = ("keras", "torch")


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """Parameters of ``modules`` excluded from autograd inside the block (gradients still flow *through* them)."""
    parameters = [parameter for module in modules for parameter in module.parameters()]
    flags = [parameter.requires_grad for parameter in parameters]
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(parameters, flags, strict=True):
            parameter.requires_grad_(flag)


class ActionModel(nn.Module):
    """Dreamer's actor: dense layers to a Gaussian transformed by tanh (appendix A): the mean is ``5 tanh(mu / 5)``
    and the standard deviation ``softplus(sigma + softplus^-1(5)) + 1e-4``, so it starts broad (5) and can saturate.

    :param features_dim: size of the model state ``[s, h]``
    :param action_dim: action dimensions
    :param units: units per dense layer (Dreamer's code: 400; the paper's text: 300)
    :param layers: dense layers (Dreamer's code: 4; the paper's text: 3)
    :param init_std: the standard deviation before the tanh at initialization (Dreamer's 5)
    :param mean_scale: the bound of the mean before the tanh (Dreamer's 5)
    """

    optimizer: th.optim.Optimizer

    def __init__(
        self,
        features_dim: int,
        action_dim: int,
        units: int = 400,
        layers: int = 4,
        init_std: float = INIT_STD,
        mean_scale: float = MEAN_SCALE,
    ) -> None:
        super().__init__()
        if not init_std > ACTOR_MIN_STD or not mean_scale > 0:
            raise ValueError(
                f"The actor's init_std must exceed {ACTOR_MIN_STD} and its mean_scale be positive (Dreamer: 5 and 5), "
                f"got {init_std!r} and {mean_scale!r}."
            )
        self.net = DenseHead(features_dim, 2 * action_dim, units, layers)
        self.raw_init_std = math.log(math.expm1(init_std))
        self.mean_scale = mean_scale

    def distribution(self, features: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """The Gaussian before the tanh: ``(mean, std)``."""
        mean, raw_std = self.net(features).chunk(2, dim=-1)
        mean = self.mean_scale * th.tanh(mean / self.mean_scale)
        std = F.softplus(raw_std + self.raw_init_std) + ACTOR_MIN_STD
        return mean, std

    def forward(self, features: th.Tensor, deterministic: bool = False) -> th.Tensor:
        """Actions in ``[-1, 1]``: ``tanh`` of a reparametrized sample (gradients reach the actor through it), or
        ``tanh(mean)`` when ``deterministic``."""
        mean, std = self.distribution(features)
        if deterministic:
            return th.tanh(mean)
        return th.tanh(mean + std * th.randn_like(mean))


class ValueModel(DenseHead):
    """Dreamer's value: dense layers to one output, the expected discounted rewards after a model state (Dreamer's
    code and the paper's text: 3 layers; 400 units in the code, 300 in the text)."""

    optimizer: th.optim.Optimizer

    def __init__(self, features_dim: int, units: int = 400, layers: int = 3) -> None:
        super().__init__(features_dim, 1, units, layers)


class DreamerState(NamedTuple):
    """What Dreamer carries from step to step while acting, per env: SB3's recurrent ``state``.

    After acting at step ``t`` it holds the posterior state of ``o_t`` and the action just chosen (in ``[-1, 1]``, as
    the replay buffer stores it), so the next observation is filtered by ``q(s_{t+1} | GRU(h_t, [s_t, a_t]), e_{t+1})``.
    At an episode's start the state is the RSSM's initial zeros and the action zero, as in training.

    :param deter: ``(n_envs, deter_size)`` ``h``
    :param stoch: ``(n_envs, stoch_size)`` ``s``
    :param action: ``(n_envs, action_dim)``
    """

    deter: np.ndarray
    stoch: np.ndarray
    action: np.ndarray


class DreamerPolicy(BasePolicy):
    """Dreamer's world model, actor and value, each with its own optimizer, and its acting (:meth:`act`).

    * ``world_model``: :class:`~sb3_gaara.dreamer.world_model.WorldModel` (``world_model.optimizer``: Adam at
      ``model_learning_rate``, 6e-4);
    * ``actor``: :class:`ActionModel` on ``[s, h]`` (``actor.optimizer``: Adam at the algorithm's ``learning_rate``,
      8e-5);
    * ``value``: :class:`ValueModel` on ``[s, h]`` (``value.optimizer``: Adam at ``value_learning_rate``, 8e-5).

    The sizes and the initialization of the dense heads default to Dreamer's code (github:danijar/dreamer), which
    produced the paper's scores, not to the paper's text: 400 units, a reward model of 2 layers, a value of 3, an actor
    of 4, and Keras's initialization (Glorot-uniform weights, an orthogonal GRU recurrent matrix, zero biases) where
    PyTorch's defaults would differ. ``units=300, layers=3`` builds the heads the paper's appendix A describes (three
    layers of 300 each); ``weight_init="torch"`` keeps PyTorch's initialization.

    :param observation_space: channel-first uint8 frames of 64 x 64 (or 32 x 32)
    :param action_space: Box actions
    :param lr_schedule: the actor's learning rate
    :param depth: the convolutions' base channels (32)
    :param deter_size: GRU units (200)
    :param stoch_size: stochastic units (30)
    :param hidden_size: the RSSM's hidden units (200)
    :param units: units of the dense layers of the reward model, the actor and the value (Dreamer's code: 400; the
        paper's text: 300)
    :param reward_layers: the reward model's dense layers (Dreamer's code: 2)
    :param value_layers: the value's dense layers (Dreamer's code: 3)
    :param actor_layers: the actor's dense layers (Dreamer's code: 4)
    :param layers: ``None`` (default): the three counts above; a number: that many layers for all three, replacing
        them (the paper's text: 3)
    :param weight_init: ``"keras"`` (default): Dreamer's code's initialization
        (:func:`~sb3_gaara.dreamer.world_model.keras_initialization_`) of every network; ``"torch"``: PyTorch's defaults
        (the paper names none)
    :param actor_init_std: the actor's standard deviation before the tanh at initialization (5)
    :param actor_mean_scale: the bound of the actor's mean before the tanh (5)
    :param model_learning_rate: the world model's Adam (6e-4)
    :param value_learning_rate: the value's Adam (8e-5)
    :param planner: how the agent acts: ``"actor"``, ``"cem"`` or ``"dreamer_mpc"`` (see :class:`~sb3_gaara.Dreamer`)
    :param planner_kwargs: overrides of :data:`PLANNER_DEFAULTS` for that planner
    :param gamma: discount of the lambda-returns the MPC planner scores (0.99)
    :param lambda_: their lambda (0.95)
    :param normalize_images: kept for SB3's signature; frames are always scaled to ``[-0.5, 0.5]``
    :param optimizer_class: optimizer of the three parts (Adam)
    :param optimizer_kwargs: its extra arguments
    """

    world_model: WorldModel
    actor: ActionModel
    value: ValueModel
    planner_names: ClassVar[tuple[str, ...]] = PLANNERS

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Box,
        lr_schedule: Schedule,
        depth: int = 32,
        deter_size: int = 200,
        stoch_size: int = 30,
        hidden_size: int = 200,
        units: int = 400,
        reward_layers: int = 2,
        value_layers: int = 3,
        actor_layers: int = 4,
        layers: int | None = None,
        weight_init: str = "keras",
        actor_init_std: float = INIT_STD,
        actor_mean_scale: float = MEAN_SCALE,
        model_learning_rate: float = 6e-4,
        value_learning_rate: float = 8e-5,
        planner: str = "actor",
        planner_kwargs: dict[str, Any] | None = None,
        gamma: float = 0.99,
        lambda_: float = 0.95,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
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
        check_channels_first(observation_space, "DreamerPolicy", "Dreamer")
        self.depth = depth
        self.deter_size = deter_size
        self.stoch_size = stoch_size
        self.hidden_size = hidden_size
        if weight_init not in WEIGHT_INITS:
            raise ValueError(
                f"weight_init must be one of {WEIGHT_INITS} ('keras': Dreamer's code's; 'torch': PyTorch's defaults), "
                f"got {weight_init!r}."
            )
        counts = {"reward_layers": reward_layers, "value_layers": value_layers, "actor_layers": actor_layers, "layers": layers}
        for name, count in counts.items():
            if count is not None and (isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0):
                raise ValueError(f"{name} must be an integer >= 0 (dense layers before the output), got {count!r}.")
        self.units = units
        self.layers = layers
        # ``layers`` replaces the three counts: the paper's text gives one for all three networks.
        self.reward_layers = reward_layers if layers is None else layers
        self.value_layers = value_layers if layers is None else layers
        self.actor_layers = actor_layers if layers is None else layers
        self.weight_init = weight_init
        self.actor_init_std = actor_init_std
        self.actor_mean_scale = actor_mean_scale
        self.model_learning_rate = model_learning_rate
        self.value_learning_rate = value_learning_rate
        self.gamma = gamma
        self.lambda_ = lambda_
        self.action_dim = int(np.prod(action_space.shape))
        self.set_planner(planner, planner_kwargs)
        self._build(lr_schedule)

    @property
    def draws_while_acting(self) -> bool:
        """Whether ``predict`` draws from torch's global generator even when deterministic: the CEM planners' candidates
        do. An evaluation elsewhere would then not draw what it draws here (``EnvStepEvalCallback(asynchronous=True)``
        refuses such a policy)."""
        return self.planner != "actor"

    def set_planner(self, planner: str, planner_kwargs: dict[str, Any] | None = None) -> None:
        """Choose how the agent acts from now on (the networks are unchanged): one of :data:`PLANNERS`, with
        overrides of its :data:`PLANNER_DEFAULTS`."""
        if planner not in PLANNERS:
            raise ValueError(f"planner must be one of {PLANNERS}, got {planner!r}.")
        planner_kwargs = dict(planner_kwargs or {})
        unknown = sorted(set(planner_kwargs) - set(PLANNER_DEFAULTS[planner]))
        if unknown:
            raise ValueError(
                f"planner_kwargs {unknown} are not settings of the {planner!r} planner; it takes "
                f"{sorted(PLANNER_DEFAULTS[planner]) or 'none'}."
            )
        settings = {**PLANNER_DEFAULTS[planner], **planner_kwargs}
        for name in ("horizon", "iterations", "candidates", "top_k"):
            if name in settings:
                value = settings[name]
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                    raise ValueError(f"planner_kwargs[{name!r}] must be a positive integer, got {value!r}.")
        if "top_k" in settings and settings["top_k"] > settings["candidates"]:
            raise ValueError(
                f"planner_kwargs: top_k={settings['top_k']} exceeds candidates={settings['candidates']}; the planner "
                "refits to the best top_k of its candidates."
            )
        self.planner = planner
        self.planner_kwargs = planner_kwargs

    @property
    def planner_settings(self) -> dict[str, Any]:
        return {**PLANNER_DEFAULTS[self.planner], **self.planner_kwargs}

    def _build(self, lr_schedule: Schedule) -> None:
        shape = self.observation_space.shape
        assert shape is not None
        self.world_model = WorldModel(
            shape[0],
            self.action_dim,
            image_size=shape[1],
            depth=self.depth,
            deter_size=self.deter_size,
            stoch_size=self.stoch_size,
            hidden_size=self.hidden_size,
            units=self.units,
            reward_layers=self.reward_layers,
        ).to(self.device)
        features_dim = self.world_model.features_dim
        self.actor = ActionModel(
            features_dim, self.action_dim, self.units, self.actor_layers, self.actor_init_std, self.actor_mean_scale
        ).to(self.device)
        self.value = ValueModel(features_dim, self.units, self.value_layers).to(self.device)
        if self.weight_init == "keras":
            for part in (self.world_model, self.actor, self.value):
                keras_initialization_(part)
        self.world_model.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.world_model.parameters(), lr=self.model_learning_rate, **self.optimizer_kwargs
        )
        self.actor.optimizer = self.optimizer_class(self.actor.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]
        self.value.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.value.parameters(), lr=self.value_learning_rate, **self.optimizer_kwargs
        )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            depth=self.depth,
            deter_size=self.deter_size,
            stoch_size=self.stoch_size,
            hidden_size=self.hidden_size,
            units=self.units,
            reward_layers=self.reward_layers,
            value_layers=self.value_layers,
            actor_layers=self.actor_layers,
            layers=self.layers,
            weight_init=self.weight_init,
            actor_init_std=self.actor_init_std,
            actor_mean_scale=self.actor_mean_scale,
            model_learning_rate=self.model_learning_rate,
            value_learning_rate=self.value_learning_rate,
            planner=self.planner,
            planner_kwargs=self.planner_kwargs,
            gamma=self.gamma,
            lambda_=self.lambda_,
            lr_schedule=self._dummy_schedule,
        )
        return data

    # ------------------------------------------------------------------------------------------ imagination

    def state_value(self, features: th.Tensor) -> th.Tensor:
        """The value's estimate ``(...,)``."""
        return self.value(features).squeeze(-1)

    def imagine(self, start: RSSMState, horizon: int, actions: th.Tensor | None = None) -> tuple[RSSMState, th.Tensor]:
        """Roll the prior forward ``horizon`` steps from ``start`` (``(N, ...)``): with the actor's reparametrized
        samples, or with the given ``actions`` (``(horizon, N, action_dim)``). Returns the states ``(horizon + 1, N,
        ...)``, the start first, and the actions ``(horizon, N, action_dim)``."""
        states = [start]
        taken = []
        state = start
        for step in range(horizon):
            action = self.actor(state.features.detach()) if actions is None else actions[step]
            state = self.world_model.rssm.imagine_step(state, action)
            states.append(state)
            taken.append(action)
        stacked = RSSMState(*(th.stack(tensors) for tensors in zip(*states, strict=True)))
        return stacked, th.stack(taken)

    def imagined_returns(self, states: RSSMState) -> th.Tensor:
        """Lambda-returns ``(H, N)`` of imagined states ``(H + 1, N, ...)``: rewards of the states reached, values of
        all of them (the last the bootstrap), the discount ``gamma`` at every step (no terminal states, as in DeepMind
        Control)."""
        features = states.features
        rewards = self.world_model.reward(features[1:])
        values = self.state_value(features)
        discounts = th.full_like(rewards, self.gamma)
        return lambda_returns(rewards, values, discounts, self.lambda_)

    # ------------------------------------------------------------------------------------------ acting

    def filter(
        self, state: DreamerState | None, frames: np.ndarray, episode_start: np.ndarray | None, deterministic: bool
    ) -> RSSMState:
        """The posterior state of each env after its new frame (``(n_envs, C, H, W)`` uint8): the previous state and
        action, reset to the initial state where ``episode_start`` is set (every env when ``state`` is None). The
        posterior's mean when ``deterministic``, a sample otherwise."""
        n_envs = frames.shape[0]
        rssm = self.world_model.rssm
        previous = rssm.initial_state(n_envs, self.device)
        action = th.zeros(n_envs, self.action_dim, device=self.device)
        if state is not None:
            shapes = (state.deter.shape, state.stoch.shape, state.action.shape)
            expected = ((n_envs, rssm.deter_size), (n_envs, rssm.stoch_size), (n_envs, self.action_dim))
            if shapes != expected:
                raise ValueError(
                    f"The state passed to Dreamer's predict has arrays of shapes {shapes}, expected {expected}: pass the "
                    "state the previous predict returned (or None at the start of an episode)."
                )
            keep = th.ones(n_envs, 1, device=self.device)
            if episode_start is not None:
                keep = th.as_tensor(1.0 - np.asarray(episode_start, dtype=np.float32).reshape(n_envs, 1), device=self.device)
            deter = th.as_tensor(state.deter, device=self.device)
            stoch = th.as_tensor(state.stoch, device=self.device)
            previous = RSSMState(deter, stoch, th.zeros_like(stoch), th.ones_like(stoch)).masked(keep)
            action = th.as_tensor(state.action, device=self.device) * keep
        embed = self.world_model.encoder(th.as_tensor(frames, device=self.device))
        posterior, _ = rssm.observe_step(previous, action, embed, sample=not deterministic)
        return posterior

    def act(self, posterior: RSSMState, deterministic: bool) -> th.Tensor:
        """Actions ``(n_envs, action_dim)`` in ``[-1, 1]`` from each env's posterior state, by the planner."""
        if self.planner == "actor":
            return self.actor(posterior.features, deterministic=deterministic)
        settings = self.planner_settings
        actions = []
        for env in range(posterior.deter.shape[0]):
            start = RSSMState(*(tensor[env : env + 1] for tensor in posterior))
            plan = self.plan(start, settings)
            actions.append(plan[0])
        return th.stack(actions)

    def plan(self, start: RSSMState, settings: dict[str, Any]) -> th.Tensor:
        """The ``(horizon, action_dim)`` plan of the ``"cem"`` or ``"dreamer_mpc"`` planner from one state (``(1,
        ...)``)."""
        horizon, candidates = settings["horizon"], settings["candidates"]
        starts = RSSMState(*(tensor.expand(candidates, -1) for tensor in start))

        def rollout(plans: th.Tensor) -> RSSMState:
            states, _ = self.imagine(starts, horizon, actions=plans.transpose(0, 1))
            return states

        if self.planner == "cem":
            # PlaNet: the sum of the rewards the model predicts along the plan.
            def objective(plans: th.Tensor) -> th.Tensor:
                return self.world_model.reward(rollout(plans).features[1:]).sum(0)

            init_mean, init_std = None, 1.0
        else:
            # The source's Algorithm 2: the lambda-return with the value as bootstrap, from the actor's imagined plan.
            def objective(plans: th.Tensor) -> th.Tensor:
                return self.imagined_returns(rollout(plans))[0]

            with th.no_grad():
                mean_actions = []
                state = start
                for _ in range(horizon):
                    action = self.actor(state.features, deterministic=True)
                    state = self.world_model.rssm.imagine_step(state, action, sample=False)
                    mean_actions.append(action[0])
            init_mean, init_std = th.stack(mean_actions), settings["init_std"]
        return cem_plan(
            objective,
            horizon,
            self.action_dim,
            settings["iterations"],
            candidates,
            settings["top_k"],
            init_mean=init_mean,
            init_std=init_std,
            device=self.device,
        )

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> th.Tensor:
        """Actions for ``observation`` as the first step of an episode. Acting within an episode needs the latent
        state: use :meth:`predict` with its ``state``."""
        assert isinstance(observation, th.Tensor)
        with th.no_grad():
            posterior = self.filter(None, observation.cpu().numpy().astype(np.uint8), None, deterministic)
            return self.act(posterior, deterministic)

    def frames(self, observation: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(n_envs, C, H, W)`` uint8 frames of an observation as ``predict`` gets it, and whether it was vectorized
        (:func:`~sb3_gaara.common.recurrent.observation_frames`)."""
        return observation_frames(observation, self.observation_space, "Dreamer")

    def step(
        self, frames: np.ndarray, state: DreamerState | None, episode_start: np.ndarray | None, deterministic: bool
    ) -> tuple[np.ndarray, RSSMState]:
        """Filter the new frames and act: scaled actions ``(n_envs, action_dim)`` in ``[-1, 1]`` and the posterior."""
        with th.no_grad():
            posterior = self.filter(state, frames, episode_start, deterministic)
            scaled = self.act(posterior, deterministic).cpu().numpy()
        return scaled, posterior

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, DreamerState]:
        """SB3's recurrent ``predict`` contract: actions for ``observation`` given the ``state`` the previous call
        returned (a :class:`DreamerState`; ``None`` at the first step), the envs flagged in ``episode_start`` starting
        a new episode. Returns the actions (unscaled to the action space) and the new state.

        SB3's ``evaluate_policy``, rl-zoo3's ``enjoy`` and ``record_video`` and the package's evaluation protocol pass
        the state and the episode starts along, so Dreamer acts with its filtered latent state there."""
        self.set_training_mode(False)
        frames, vectorized = self.frames(observation)
        scaled, posterior = self.step(frames, None if state is None else DreamerState(*state), episode_start, deterministic)
        new_state = DreamerState(posterior.deter.cpu().numpy(), posterior.stoch.cpu().numpy(), scaled.astype(np.float32))
        actions = self.unscale_action(scaled)
        assert isinstance(self.action_space, spaces.Box)
        actions = np.clip(actions, self.action_space.low, self.action_space.high)
        if not vectorized:
            actions = actions.squeeze(axis=0)
        return actions, new_state

    def set_training_mode(self, mode: bool) -> None:
        self.world_model.train(mode)
        self.actor.train(mode)
        self.value.train(mode)
        self.training = mode


CnnPolicy = DreamerPolicy

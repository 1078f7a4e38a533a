"""``GAARASAC(overlap_env_step=True)``: the gradient step that follows an agent step begins before the environment
step, where that changes nothing, so that on a GPU the update runs while the simulator steps and renders.

SB3's loop chooses the action, steps the env, calls the callbacks, stores the transition, then trains. The next action
needs the updated actor, but the update needs the newest transition only when its batch draws it. So, with the option,
:meth:`EnvStepOverlap._sample_action` begins the coming gradient step right after the action is chosen: the buffer draws
the batch now, over the rows it will hold after the store (``draw_after_next_add``), with SB3's ``np.random`` calls; the
learning rates are set to their value after the step; a batch that reads the row the store writes is left to
``train()``, as is every agent step at which a callback could act (:func:`~sb3_gaara.common.overlap.may_act_on_step`).
``train()`` (:meth:`~sb3_gaara.common.training.CheckedTraining.train`) then counts the step it finds in
``_early_update`` as its first (:meth:`EnvStepOverlap._updates_begun_early`), or trains first on the batch left
drawn. The result is the training without the option, bit for bit (``tests/test_overlap.py``).

It applies at the agent steps where it can change nothing: ``train_freq=1`` step and ``gradient_steps=1`` (the
papers'), after the first training, without ``VecNormalize``, and where no callback could act (an evaluation, a
checkpoint, a stop); elsewhere the step runs after the store, as without the option. It needs
``optimize_memory_usage=False``, and saves time only where the update runs asynchronously (CUDA, e.g. as a CUDA graph).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.type_aliases import MaybeCallback, RolloutReturn, TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.utils import update_learning_rate
from stable_baselines3.common.vec_env import VecEnv

from sb3_gaara.common.buffers import AugmentedPixelReplayBuffer, AugmentedReplayBufferSamples, SampledTransitions
from sb3_gaara.common.overlap import may_act_on_step
from sb3_gaara.common.training import CheckedTraining, Metrics

SelfEnvStepOverlap = TypeVar("SelfEnvStepOverlap", bound="EnvStepOverlap")


@dataclass
class EarlyUpdate:
    """The first gradient step of the coming ``train()`` call, begun before the environment step
    (``overlap_env_step``).

    Either it ran (on a GPU: was launched) and was counted, and ``sample`` is what it trained on; or its batch,
    drawn already, reads the row the coming ``add()`` writes, and ``batch`` keeps the draw for ``train()`` to gather
    after the store.
    """

    #: the values the step recorded (empty when it has not run)
    metrics: Metrics
    #: what the step trained on: the cropped batch (eager update) or the drawn transitions (CUDA graphs)
    sample: AugmentedReplayBufferSamples | SampledTransitions | None = None
    #: ``(batch_inds, env_indices)`` drawn for the step, when it has not run
    batch: tuple[np.ndarray, np.ndarray] | None = None


class EnvStepOverlap(CheckedTraining):
    """:class:`~sb3_gaara.common.training.CheckedTraining` whose first gradient step of a ``train()`` call may begin
    before the environment step: the ``overlap_env_step`` option (module docstring), under
    :class:`~sb3_gaara.GAARASAC`.

    It drives the model's one update entrance, ``_gradient_step(batch, record)``, on a batch made by
    ``_batch_from_transitions``, and hands ``train()`` what it began: the step's metrics and batch, or the drawn
    rows (:meth:`_take_early_draw`) that ``_sample_batch`` trains on first.
    """

    overlap_env_step: bool
    overlapped_updates: int
    _early_update: EarlyUpdate | None
    _early_draw: tuple[np.ndarray, np.ndarray] | None
    _early_update_check: Callable[[], bool] | None
    _in_learn: bool
    replay_buffer: AugmentedPixelReplayBuffer
    actor: Any
    critic: Any

    if TYPE_CHECKING:  # the model's, which this mixin drives

        def _batch_from_transitions(
            self, transitions: SampledTransitions
        ) -> AugmentedReplayBufferSamples | SampledTransitions: ...

    def learn(
        self: SelfEnvStepOverlap,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfEnvStepOverlap:
        """:meth:`CheckedTraining.learn` (every episode logged), with ``_in_learn`` set while it runs: only inside
        ``learn()`` may a gradient step begin early, and may GAARASAC's first ``train()`` take the initial burst of
        updates (``init_gradient_steps``). A step begun early that no ``train()`` took is dropped at the end."""
        self._in_learn = True
        try:
            return super().learn(
                total_timesteps=total_timesteps,
                callback=callback,
                log_interval=log_interval,
                tb_log_name=tb_log_name,
                reset_num_timesteps=reset_num_timesteps,
                progress_bar=progress_bar,
            )
        finally:
            self._in_learn = False
            self._early_update = self._early_draw = None

    def _excluded_save_params(self) -> list[str]:
        """SB3's list, and the state of a ``learn()`` call in progress: never saved."""
        return [*super()._excluded_save_params(), "_in_learn", "_early_update", "_early_draw", "_early_update_check"]

    def _updates_begun_early(self) -> tuple[Metrics, list[Any]]:
        """The step begun before the environment step, if one was: its metrics, and its batch if it ran (it was counted
        then); a batch drawn but not run is kept for :meth:`_take_early_draw`."""
        early, self._early_update = self._early_update, None
        if early is None:
            return super()._updates_begun_early()
        self._early_draw = early.batch
        return early.metrics, [] if early.sample is None else [early.sample]

    def _take_early_draw(self) -> SampledTransitions | None:
        """The transitions of the draw a step begun early left to ``train()`` (it read the row the store wrote), gathered
        now that the row is stored; once."""
        draw, self._early_draw = self._early_draw, None
        return None if draw is None else self.replay_buffer.gather_transitions(*draw)

    def _check_overlap_settings(self) -> None:
        """Reject ``overlap_env_step=True`` with settings under which no gradient step could ever begin early."""
        if not isinstance(self.overlap_env_step, (bool, np.bool_)):
            raise ValueError(f"overlap_env_step must be True or False, got {self.overlap_env_step!r}.")
        if not self.overlap_env_step:
            return
        train_freq = self.train_freq
        assert isinstance(train_freq, TrainFreq)  # SB3's _setup_model converted it
        if train_freq != TrainFreq(1, TrainFrequencyUnit.STEP) or self.gradient_steps != 1:
            raise ValueError(
                f"overlap_env_step=True begins the one gradient step that follows each agent step, but train_freq="
                f"({train_freq.frequency}, {train_freq.unit.value!r}) and gradient_steps={self.gradient_steps}: "
                "use train_freq=1 and gradient_steps=1 "
                "(the papers' settings), or overlap_env_step=False."
            )
        if self.optimize_memory_usage:
            raise ValueError(
                "overlap_env_step=True draws the batch before the store, which optimize_memory_usage=True does not allow "
                "(the next add() writes a sampled transition's next observation): use optimize_memory_usage=False (it "
                "saves nothing with this package's frame-once buffer)."
            )

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
        """SB3's ``collect_rollouts``; with ``overlap_env_step``, the coming gradient step begins as soon as the action
        is chosen (:meth:`_sample_action`) when :meth:`_can_begin_update_early` says that changes nothing. It asks then,
        after the callbacks' ``on_rollout_start``, which may change what they do at the step (the study's checkpoint
        callback writes a stop's checkpoint there, and its next step stops training)."""
        self._early_update = None  # one left by a rollout that raised belongs to no train() call
        if self.overlap_env_step:
            self._early_update_check = lambda: self._can_begin_update_early(
                env, callback, train_freq, replay_buffer, learning_starts
            )
        try:
            return super().collect_rollouts(
                env, callback, train_freq, replay_buffer, action_noise, learning_starts, log_interval
            )
        finally:
            self._early_update_check = None

    def _can_begin_update_early(
        self, env: VecEnv, callback: BaseCallback, train_freq: TrainFreq, replay_buffer: ReplayBuffer, learning_starts: int
    ) -> bool:
        """Whether this rollout's one agent step can begin the gradient step that ``learn()`` runs after it.

        Only then is the result the same: the rollout is one agent step and ``learn()`` follows it with one gradient
        step (not the first training's burst); the buffer samples as :meth:`AugmentedPixelReplayBuffer.draw_after_next_add`
        can draw ahead, with no ``VecNormalize`` statistics that the environment step would change; and no callback
        may read, save or stop the model at this step.
        """
        num_timesteps = self.num_timesteps + env.num_envs
        return (
            bool(self.overlap_env_step)
            and self._in_learn
            and train_freq == TrainFreq(1, TrainFrequencyUnit.STEP)
            and self.gradient_steps == 1
            and num_timesteps > learning_starts  # learn() trains after this step
            and self._gradient_steps_of_call(1) == 1
            and isinstance(replay_buffer, AugmentedPixelReplayBuffer)  # optimize_memory_usage: refused at set-up
            and self._vec_normalize_env is None
            and not may_act_on_step(callback, num_timesteps)
        )

    def _sample_action(
        self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """SB3's ``_sample_action``; then, when the rollout allows it, the gradient step begins (:meth:`_begin_update`)."""
        actions = super()._sample_action(learning_starts, action_noise, n_envs)
        check, self._early_update_check = self._early_update_check, None  # one agent step per rollout
        if check is not None and check():
            self._early_update = self._begin_update(n_envs)
        return actions

    def _begin_update(self, n_envs: int) -> EarlyUpdate:
        """Begin, before the environment step, the gradient step that ``train()`` would run after the store.

        What ``train()`` does first is done now with the values it will have then: training mode, and the learning
        rates at the progress after this agent step (SB3 updates the progress after the store). The batch is drawn as
        it would be after the store; if it reads the row that the store writes, the step is left to ``train()``.
        """
        buffer = self.replay_buffer
        self.policy.set_training_mode(True)
        progress_after_step = 1.0 - float(self.num_timesteps + n_envs) / float(self._total_timesteps)
        for optimizer in (self.actor.optimizer, self.critic.optimizer):
            update_learning_rate(optimizer, self.lr_schedule(progress_after_step))
        batch = buffer.draw_after_next_add(self.batch_size)
        metrics: Metrics = {}
        if np.any(batch[0] == buffer.pos):
            return EarlyUpdate(metrics, batch=batch)
        sample = self._batch_from_transitions(buffer.gather_transitions(*batch))
        try:
            self._gradient_step(sample, self._recorder(metrics))
        except ValueError as error:  # as in train(): name the loss that went non-finite, if one did
            self._log_and_check(metrics, error)
            raise
        self._n_updates += 1
        self.overlapped_updates += 1
        return EarlyUpdate(metrics, sample=sample)

"""Which callbacks leave an agent step alone: what lets a gradient step begin before the environment step.

SB3's off-policy loop runs, for each agent step: choose the action, step the environment, call the callbacks, store
the transition, then train. With ``overlap_env_step`` (:class:`~sb3_gaara.gaara.gaara_sac.GAARASAC`) the coming
gradient step begins right after the action is chosen, so that on a GPU the update runs while the host steps the
simulator and renders. That is the same computation only if nothing between the two reads or changes the model:
in particular no callback may evaluate it, save it or stop training at that step. :func:`may_act_on_step` says,
before the step, whether a callback could.
"""

from __future__ import annotations

from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    ConvertCallback,
    EvalCallback,
    ProgressBarCallback,
)

__all__ = ["may_act_on_step"]


def may_act_on_step(callback: BaseCallback | None, num_timesteps: int) -> bool:
    """Whether ``callback.on_step()`` at the agent step that brings ``model.num_timesteps`` to ``num_timesteps`` could
    do more than count: read or save the model, evaluate it, or stop training.

    A callback answers for itself with a method ``may_act_on_step(num_timesteps) -> bool`` (the evaluation and
    checkpoint callbacks of this package have one). SB3's ``CallbackList`` asks its callbacks; SB3's ``EvalCallback``
    and ``CheckpointCallback`` (these exact classes) act on their ``n_calls`` schedule; its ``ProgressBarCallback``
    and an empty ``ConvertCallback`` never act. Any other callback may act at every step: with it, no gradient step
    begins early, and training is SB3's as it is without the option.
    """
    if callback is None:
        return False
    own_answer = getattr(callback, "may_act_on_step", None)
    if callable(own_answer):
        return bool(own_answer(num_timesteps))
    if isinstance(callback, CallbackList):
        return any(may_act_on_step(child, num_timesteps) for child in callback.callbacks)
    # Exact classes: a subclass may act otherwise.
    if type(callback) is ConvertCallback:
        return callback.callback is not None
    if type(callback) is ProgressBarCallback:
        return False
    # Both increment n_calls, then act when it is a multiple of their frequency (SB3 2.9).
    if type(callback) is EvalCallback:
        return callback.eval_freq > 0 and (callback.n_calls + 1) % callback.eval_freq == 0
    if type(callback) is CheckpointCallback:
        return (callback.n_calls + 1) % callback.save_freq == 0
    return True

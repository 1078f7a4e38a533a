"""What every algorithm of the package does the same way around SB3's loop: one ``train()`` that draws a batch and
makes one gradient step (``_gradient_step(batch, record)``, the family's update) per step, records the losses, logs
their means once per call and stops at the first non-finite loss or parameter, naming it, its update and the
environment steps; ``learn()`` logs every episode; pictures go straight to TensorBoard.

A NaN reward or an overflowing gradient otherwise trains on silently: the parameters turn NaN, ``predict`` returns
NaN actions and the simulator receives them. Checking once per ``train()`` call costs one device synchronisation
(every recorded value goes to the host in one transfer), and the call ends before the next action is chosen, so a
non-finite action never reaches an env.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from stable_baselines3.common.logger import Image, TensorBoardOutputFormat
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import MaybeCallback

#: values recorded during one ``train()`` call: per metric, (update number, value) pairs
Metrics = dict[str, list[tuple[int, th.Tensor]]]
#: what an update calls to record one value: ``record(name, value)``
Recorder = Callable[[str, th.Tensor], None]
SelfCheckedTraining = TypeVar("SelfCheckedTraining", bound="CheckedTraining")

#: Every option that changes how fast an algorithm computes its updates, never what they compute, with what it asks of
#: the update. A class lists those its update is written for in :attr:`CheckedTraining.speed_options`; its
#: constructor refuses the others (:meth:`CheckedTraining.refuse_speed_options`).
SPEED_OPTIONS: Mapping[str, str] = {
    "cuda_graphs": "replays each update as a CUDA graph, which needs an update captured from static inputs",
    "overlap_env_step": "begins an update before the environment step, which needs a batch drawn before the store",
}


class CheckedTraining(OffPolicyAlgorithm):
    """Mixin before an SB3 off-policy algorithm (``class DrQv2(CheckedTraining, DurableSaves, OffPolicyAlgorithm)``).

    :meth:`train` is SB3's off-policy training loop, written once: training mode, the learning rates of
    :meth:`_scheduled_optimizers` from the schedule, then per gradient step a batch (:meth:`_sample_batch`), the
    family's update on it (:meth:`_gradient_step`, the one entrance of every update), ``_n_updates`` counted and
    :meth:`_after_gradient_step`; finally the recorded losses' means logged and checked (:meth:`_log_and_check`).
    A family writes its update and, where it differs, the batch it draws; nothing else of the loop.

    Where an update raises a ``ValueError`` (``torch.distributions`` refusing a NaN parameter, with
    ``gradient_steps > 1``), the loop calls ``_log_and_check(metrics, error)`` before re-raising, so that the loss that
    went non-finite first is named instead of the distribution that saw it later.
    """

    #: The options of :data:`SPEED_OPTIONS` (GAARA's ``cuda_graphs`` and ``overlap_env_step``) that the class's
    #: constructor takes and its update is written for. One rule for the others: the constructor refuses them, saying
    #: why (:meth:`refuse_speed_options`), and a study leaves them out (:meth:`speed_options_for`); the class runs
    #: without them, with the same results.
    speed_options: ClassVar[frozenset[str]] = frozenset()
    #: Why the class's update is not written for the speed options it does not list (the refusal's reason).
    speed_options_reason: ClassVar[str] = "the class's update is not written for it"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every constructor of the family refuses the speed options its class does not list, before Python would
        answer a bare "unexpected keyword argument": each ``__init__`` a subclass defines first calls
        :meth:`refuse_speed_options` (the wrapper keeps its signature for ``inspect``, the RL Zoo's checks and the
        docs).

        Not an ``__init__`` of this mixin: the subclass's own ``__init__`` runs first, and Python refuses the unknown
        keyword there. Nor a ``__new__``: Python 3.10's ``inspect.signature`` and Sphinx would then show
        ``(*args, **kwargs)`` for the classes without an ``__init__`` of their own (``SACAE``, ``CURLSAC``)."""
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def __init__(self: CheckedTraining, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **type(self).refuse_speed_options(kwargs))

        cls.__init__ = __init__  # type: ignore[method-assign,assignment]

    @classmethod
    def refuse_speed_options(cls, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor's ``kwargs`` without the speed options of :data:`SPEED_OPTIONS` that this class does not
        list in :attr:`speed_options` and that are off (they ask for nothing).

        :raise ValueError: one of them is on: naming the class, the option, why (:attr:`speed_options_reason`) and
            the fix (leave it out: the results are the same without it)
        """
        for name in SPEED_OPTIONS.keys() - cls.speed_options:
            if kwargs.get(name):
                listed = sorted(cls.speed_options)
                raise ValueError(
                    f"{cls.__name__} does not take {name}={kwargs[name]!r}: the option {SPEED_OPTIONS[name]}; "
                    f"{cls.speed_options_reason}. Leave it out: {cls.__name__} computes the same updates without it "
                    f"(the option changes only the speed). {cls.__name__}'s speed options: "
                    f"{', '.join(listed) if listed else 'none'}; a study passes each only where it is supported "
                    "(speed_options_for)."
                )
        return {name: value for name, value in kwargs.items() if name in cls.speed_options or name not in SPEED_OPTIONS}

    @classmethod
    def speed_options_for(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The speed-only ``options`` this class runs with: those in :data:`speed_options`; the others are left out,
        since without them the updates are the same. What lets a study give one set of options to every family."""
        return {name: value for name, value in options.items() if name in cls.speed_options}

    def _recorder(self, metrics: Metrics) -> Recorder:
        """A ``record(name, value)`` that appends the value to ``metrics`` with the number of the running update
        (``_n_updates + 1``: the update counts itself once it is done)."""

        def record(name: str, value: th.Tensor) -> None:
            metrics.setdefault(name, []).append((self._n_updates + 1, value.detach()))

        return record

    def _checked_modules(self) -> Mapping[str, th.nn.Module]:
        """The modules whose parameters :meth:`_first_nonfinite_parameter` checks, by the name that prefixes their
        parameters in its answer. The policy holds every network of most algorithms (SLAC's latent model, Dreamer's
        world model); one with learned parts elsewhere adds them."""
        return {"policy": self.policy}

    def _log_and_check(self, metrics: Metrics, error: Exception | None = None, skip_nonfinite: bool = False) -> None:
        """Log ``train/n_updates`` and the mean of each metric under ``train/<name>``; stop at the first non-finite
        loss or parameter.

        :param error: a step failed with it: only raise, from ``error``, when something is non-finite (the caller
            re-raises ``error`` otherwise), and log nothing
        :param skip_nonfinite: non-finite values belong to updates that were skipped, not applied: the means are
            over the finite ones and nothing is raised for them
        :raise FloatingPointError: ``train/<name> became <value> at update #<n>``, the first non-finite value by
            update (ties: the metric recorded first), or the first parameter holding a NaN or an infinity
        """
        means: dict[str, float] = {}
        first_bad: tuple[int, str, float] | None = None
        # Every value of every metric in one transfer: one synchronisation on a GPU.
        values = [value.reshape(()).float() for recorded in metrics.values() for _, value in recorded]
        every_value = th.stack(values).cpu() if values else th.empty(0)
        offset = 0
        for name, recorded in metrics.items():
            updates = [update for update, _ in recorded]
            stacked = every_value[offset : offset + len(recorded)]
            offset += len(recorded)
            finite = th.isfinite(stacked)
            if skip_nonfinite:
                stacked = stacked[finite] if bool(finite.any()) else stacked
            elif not bool(finite.all()):
                index = int((~finite).nonzero()[0])
                if first_bad is None or updates[index] < first_bad[0]:
                    first_bad = (updates[index], name, stacked[index].item())
            means[name] = float(stacked.mean())
        if first_bad is not None:
            update, name, value = first_bad
            raise FloatingPointError(
                f"train/{name} became {value} at update #{update} (counted like model._n_updates; "
                f"{self.num_timesteps} environment steps of the agent). The parameters are no longer trustworthy: "
                "lower the learning rates, check the rewards and observations for NaN/inf, or resume from the last "
                "checkpoint."
            ) from error
        bad = self._first_nonfinite_parameter()
        if bad is not None:
            raise FloatingPointError(
                f"Parameter {bad} is no longer finite after update #{self._n_updates} "
                f"({self.num_timesteps} environment steps of the agent), although every loss was finite: the "
                "gradients overflowed. Lower the learning rates or resume from the last checkpoint."
            ) from error
        if error is not None:
            return
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        for name, value in means.items():
            self.logger.record(f"train/{name}", value)

    def _first_nonfinite_parameter(self) -> str | None:
        """Name of the first parameter holding a NaN or an infinity (``policy.<name>``, ...), or ``None``."""
        modules = self._checked_modules()
        params = [param.detach() for module in modules.values() for param in module.parameters()]
        if not params:
            return None
        # A quick check of all of them, one synchronisation on a GPU; the names are searched only when it fails.
        if self.device.type == "cpu":
            # A NaN or an infinity makes its parameter's sum non-finite (and a finite parameter whose sum overflows is
            # cleared by the search below): one pass over the memory, 19x faster than isfinite on 84 px GAARA.
            quick = th.isfinite(th.stack([param.sum() for param in params])).all()
        else:
            quick = th.isfinite(th.cat([param.reshape(-1) for param in params])).all()  # one kernel of each
        if bool(quick):
            return None
        for module_name, module in modules.items():
            bad = next((name for name, param in module.named_parameters() if not bool(th.isfinite(param).all())), None)
            if bad is not None:
                return f"{module_name}.{bad}"
        return None

    def train(self, gradient_steps: int, batch_size: int = 256) -> None:
        """``gradient_steps`` updates on batches of ``batch_size`` (class docstring): SB3's off-policy loop."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self._scheduled_optimizers())
        metrics, trained = self._updates_begun_early()
        record = self._recorder(metrics)
        try:
            for batch in trained:
                self._after_gradient_step(batch)
            self._before_gradient_steps(record)
            for _ in range(len(trained), self._gradient_steps_of_call(gradient_steps)):
                batch = self._sample_batch(batch_size)
                self._gradient_step(batch, record)
                self._n_updates += 1
                self._after_gradient_step(batch)
        except ValueError as error:
            self._log_and_check(metrics, error)
            raise
        self._log_and_check(metrics)

    def _scheduled_optimizers(self) -> list[th.optim.Optimizer]:
        """The optimizers whose learning rate follows ``learning_rate``'s schedule (SB3: the actor's and the critic's)."""
        return [self.actor.optimizer, self.critic.optimizer]  # type: ignore[attr-defined,list-item]

    def _updates_begun_early(self) -> tuple[Metrics, list[Any]]:
        """Updates of this call already made, before the loop (GAARA's ``overlap_env_step`` begins one before the
        environment step): what they recorded, and the batches they trained on. None by default."""
        return {}, []

    def _before_gradient_steps(self, record: Recorder) -> None:
        """What a call does before its first gradient step (SLAC pretrains its model before the first agent update)."""

    def _gradient_steps_of_call(self, gradient_steps: int) -> int:
        """How many gradient steps this call makes, counting those begun early (GAARA's first call makes a burst)."""
        return gradient_steps

    def _sample_batch(self, batch_size: int) -> Any:
        """The batch of one gradient step: SB3's ``replay_buffer.sample``."""
        return self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]

    def _gradient_step(self, batch: Any, record: Recorder) -> None:
        """The family's update on one batch, recording its losses with ``record(name, value)``; the loop counts it."""
        raise NotImplementedError(f"{type(self).__name__} must implement _gradient_step(batch, record).")

    def _after_gradient_step(self, batch: Any) -> None:
        """After an update is counted: what reads the model at that update (pictures logged every N updates)."""

    def learn(
        self: SelfCheckedTraining,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfCheckedTraining:
        """SB3's ``learn``, logging every episode by default (``log_interval=1``; SB3's off-policy default is 4): a
        DeepMind Control episode is 125 to 500 agent steps, so SB3's default would print nothing for thousands of
        steps. ``tb_log_name`` defaults to the class's name (``"DrQv2"``, ``"SACAE"``)."""
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=type(self).__name__ if tb_log_name is None else tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    def _write_image(self, tag: str, grid: np.ndarray | Callable[[], np.ndarray], warn_without_writer: str = "") -> bool:
        """Write the ``(H, W, C)`` image ``grid`` (or what ``grid()`` returns: built only when there is a writer) to
        every TensorBoard writer of the logger, as ``tag`` at the current ``num_timesteps``.

        Straight to the writers, not through ``logger.record``, so that each call appears at its own step instead of
        only the last one before the logger's next dump. Without a TensorBoard writer nothing is built or written, with
        a warning if ``warn_without_writer`` names the setting that asked for the image.

        :return: whether a writer received it
        """
        writers = [output for output in self.logger.output_formats if isinstance(output, TensorBoardOutputFormat)]
        if not writers:
            if warn_without_writer:
                warnings.warn(
                    f"{warn_without_writer} is set, but the logger writes no TensorBoard file, so {tag} is not logged: "
                    "pass tensorboard_log=... (rl-zoo3: -tb DIR).",
                    stacklevel=3,
                )
            return False
        image = grid() if callable(grid) else grid
        for writer in writers:
            writer.write({tag: Image(image, "HWC")}, {tag: ()}, self.num_timesteps)
        return True

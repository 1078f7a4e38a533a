"""What every algorithm's ``train()`` does around its updates: record the losses, log their means once per call, and
stop at the first non-finite loss or parameter, naming it, its update and the environment steps.

A NaN reward or an overflowing gradient otherwise trains on silently: the parameters turn NaN, ``predict`` returns
NaN actions and the simulator receives them. Checking once per ``train()`` call costs one device synchronisation
(every recorded value goes to the host in one transfer), and the call ends before the next action is chosen, so a
non-finite action never reaches an env.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch as th
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

#: values recorded during one ``train()`` call: per metric, (update number, value) pairs
Metrics = dict[str, list[tuple[int, th.Tensor]]]
#: what an update calls to record one value: ``record(name, value)``
Recorder = Callable[[str, th.Tensor], None]


class CheckedTraining(OffPolicyAlgorithm):
    """Mixin before an SB3 off-policy algorithm (``class DrQv2(CheckedTraining, DurableSaves, TD3)``).

    An algorithm's ``train()`` makes a :data:`Metrics` dict, passes :meth:`_recorder` of it to its updates, and ends
    with :meth:`_log_and_check`. Where an update raises a ``ValueError`` (``torch.distributions`` refusing a NaN
    parameter, with ``gradient_steps > 1``), ``train()`` calls ``_log_and_check(metrics, error)`` before re-raising,
    so that the loss that went non-finite first is named instead of the distribution that saw it later.
    """

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

"""GAARASAC's gradient step captured as CUDA graphs (``GAARASAC(..., cuda_graphs=True)``).

On a GPU one SAC+GAARA update launches about a thousand small kernels (six encoder passes, three backward
passes, the decoder, five fused Adam steps, the EMA), and at batch 128 launching them costs the host more
time than the GPU needs to run them. A CUDA graph records the kernels of one update once and replays them
with a single launch.

A graph replays fixed kernels on fixed memory, so :class:`GraphedGradientStep` splits each update in two:

* **on the host**, what must be drawn there to stay identical to the eager update: the replay buffer draws
  the transitions with SB3's ``np.random`` calls
  (:meth:`~sb3_gaara.common.buffers.AugmentedPixelReplayBuffer.sample_transitions`), and their frame slots,
  actions, rewards and dones, with the current comparison weight, are copied into static device tensors
  (two small asynchronous copies from pinned memory, no synchronisation);
* **in the graph**, everything else, in the eager order: the crops gathered from the frame store on the GPU
  (:meth:`~sb3_gaara.common.buffers.AugmentedPixelReplayBuffer.crop_views`, random offsets drawn by ``th.randint``
  on the device), then ``GAARASAC._update`` itself, the very code of the eager update.

The update's cadence (actor and temperature, EMA targets, auxiliary losses, each on its own period) makes
the kernels differ from step to step, so one graph is captured per *phase*: per combination of the three
that occurs (two with the paper's settings). The first update of each phase runs eagerly on a side stream
(it warms up cuBLAS and cuDNN and creates the optimizers' states); the second is captured and replayed.
Each is a real update of the algorithm: nothing runs twice.

Random numbers come from the default CUDA generator, whose graph-safe Philox offsets advance on each replay
as they would in eager mode. Graphs are captured again when what they hold changes: the batch size, the
frame store (a loaded or grown replay buffer) or a learning rate (a schedule, which then recaptures at every
change: keep rates constant, as the papers do, for speed). The same class runs eagerly, without capture, on
any device, which is how the tests check on a CPU that the graph-ready step computes what the eager update
computes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th

from sb3_gaara.common.buffers import AugmentedPixelReplayBuffer, SampledTransitions

if TYPE_CHECKING:
    from sb3_gaara.gaara.gaara_sac import GAARASAC, UpdatePhase


@contextlib.contextmanager
def _distribution_checks_disabled() -> Iterator[None]:
    """Build ``torch.distributions`` objects without argument validation inside the block.

    Validation reads a device tensor's value on the host (a synchronisation, which a capture forbids). The
    graph path loses nothing: the non-finite values validation would report show up in the losses, which
    ``GAARASAC`` checks after every ``train()`` call.
    """
    previous = th.distributions.Distribution._validate_args
    th.distributions.Distribution.set_default_validate_args(False)
    try:
        yield
    finally:
        th.distributions.Distribution.set_default_validate_args(previous)


@dataclass
class _StaticInputs:
    """Device tensors a graph reads its inputs from; refilled before each replay."""

    #: ``(B, 2 * frame_stack)`` frame slots: the observations', then the next observations'
    index: th.Tensor
    #: actions ``(B * action_dim)``, dones ``(B)``, rewards ``(B)`` and the comparison weight, flattened
    values: th.Tensor


@dataclass
class _Captured:
    """One phase's graph and the device tensors it writes its metrics to."""

    graph: Any  # th.cuda.CUDAGraph
    metrics: dict[str, th.Tensor]
    anneal: bool


class GraphedGradientStep:
    """Runs ``model``'s gradient steps from static device inputs: captured as CUDA graphs on a CUDA device,
    eagerly (the same code, no capture) elsewhere.

    :param model: the ``GAARASAC`` whose update this runs; its replay buffer must keep its frames on the
        model's device (``storage_device``)
    :param capture: capture CUDA graphs; ``None``: when the model's device is CUDA
    """

    def __init__(self, model: GAARASAC, capture: bool | None = None) -> None:
        self.model = model
        self.capture = model.device.type == "cuda" if capture is None else capture
        self._signature: Hashable | None = None
        self._static: _StaticInputs | None = None
        self._graphs: dict[UpdatePhase, _Captured] = {}
        self._warm: set[UpdatePhase] = set()
        self._stream: th.cuda.Stream | None = None
        #: graphs captured so far (each phase once, again after an invalidation)
        self.captures = 0

    # ------------------------------------------------------------------------------------------ inputs

    def _prepare(self, transitions: SampledTransitions) -> _StaticInputs:
        """Static inputs for this batch, reallocated (and the graphs dropped) when what the graphs hold changed."""
        model = self.model
        buffer = model.replay_buffer
        frames = buffer._frames
        if not isinstance(frames, th.Tensor) or frames.device.type != model.device.type:
            raise ValueError(
                "cuda_graphs=True needs the replay frames on the model's device: build the buffer with "
                "storage_device='auto' (GAARASAC does so by default with cuda_graphs=True)."
            )
        batch_size, stack = transitions.obs_index.shape
        learning_rates = tuple(group["lr"] for optimizer in model.optimizers() for group in optimizer.param_groups)
        # The crops' kernels, and the random draws among them, depend on the views the buffer draws.
        views = (buffer.contrastive_views, buffer.anchor_crop)
        signature = (
            batch_size,
            stack,
            transitions.actions.shape[1],
            frames.data_ptr(),
            tuple(frames.shape),
            learning_rates,
            views,
        )
        if signature != self._signature or self._static is None:
            # Drop the old graphs first: their memory pools are freed before new ones are captured.
            self._graphs.clear()
            self._signature = signature
            n_values = transitions.actions.size + 2 * batch_size + 1
            self._static = _StaticInputs(
                index=th.zeros((batch_size, 2 * stack), dtype=th.long, device=model.device),
                values=th.zeros(n_values, dtype=th.float32, device=model.device),
            )
        return self._static

    def _fill(self, static: _StaticInputs, transitions: SampledTransitions, comparison_lambda: float) -> None:
        """Copy this batch's host arrays into the static inputs (from pinned memory, asynchronously on CUDA)."""
        index = np.concatenate([transitions.obs_index, transitions.next_obs_index], axis=1).astype(np.int64, copy=False)
        values = np.concatenate(
            [
                transitions.actions.ravel(),
                transitions.dones.ravel(),
                transitions.rewards.ravel(),
                np.array([comparison_lambda]),
            ]
        ).astype(np.float32, copy=False)
        for target, array in ((static.index, index), (static.values, values)):
            source = th.from_numpy(array)
            if target.device.type == "cuda":
                # The caching host allocator keeps a pinned block until the copy that reads it has run.
                target.copy_(source.pin_memory(), non_blocking=True)
            else:
                target.copy_(source)

    # ------------------------------------------------------------------------------------------ the step

    def _run(self, static: _StaticInputs) -> tuple[dict[str, th.Tensor], bool]:
        """The gradient step on the static inputs: crops, then ``GAARASAC._update``."""
        model = self.model
        buffer = model.replay_buffer
        batch_size, index_columns = static.index.shape
        n_actions = static.values.numel() - 2 * batch_size - 1
        values = static.values
        actions = values[:n_actions].view(batch_size, -1)
        dones = values[n_actions : n_actions + batch_size].view(batch_size, 1)
        rewards = values[n_actions + batch_size : n_actions + 2 * batch_size].view(batch_size, 1)
        comparison_lambda = values[-1]
        replay_data = buffer.crop_views(static.index, index_columns // 2, actions, dones, rewards)
        metrics: dict[str, th.Tensor] = {}

        def record(name: str, value: th.Tensor) -> None:
            metrics[name] = value.detach()

        anneal = model._update(replay_data, record, comparison_lambda)
        return metrics, anneal

    def step(
        self, transitions: SampledTransitions, comparison_lambda: float, record: Callable[[str, th.Tensor], None]
    ) -> bool:
        """One gradient step of the model (at ``model._n_updates``) on ``transitions``.

        :param comparison_lambda: the comparison weight of this step
        :param record: receives each metric of the step, as a tensor of its own (not the graph's memory)
        :return: whether the comparison weight anneals after this step
        """
        static = self._prepare(transitions)
        self._fill(static, transitions, comparison_lambda)
        phase = self.model.update_phase(self.model._n_updates)
        if not self.capture:
            metrics, anneal = self._run(static)
        else:
            metrics, anneal = self._replay(phase, static)
        for name, value in metrics.items():
            record(name, value)
        return anneal

    def _replay(self, phase: UpdatePhase, static: _StaticInputs) -> tuple[dict[str, th.Tensor], bool]:
        """Run ``phase``'s graph (warming it up, then capturing it, the first two times the phase occurs)."""
        if self._stream is None:
            self._stream = th.cuda.Stream(device=self.model.device)
        stream, current = self._stream, th.cuda.current_stream(self.model.device)
        captured = self._graphs.get(phase)
        if captured is None:
            stream.wait_stream(current)  # the frames added since the last update, the inputs just copied
            with th.cuda.stream(stream), _distribution_checks_disabled():
                if phase not in self._warm:
                    metrics, anneal = self._run(static)
                    self._warm.add(phase)
                    current.wait_stream(stream)
                    return metrics, anneal
                for optimizer in self.model.optimizers():
                    # Gradients allocated inside the capture live in the graph's memory pool.
                    optimizer.zero_grad(set_to_none=True)
                    # Lets the capture hold the step; a fused Adam computes the same with or without it.
                    for group in optimizer.param_groups:
                        group["capturable"] = True
                graph = th.cuda.CUDAGraph()
                with th.cuda.graph(graph, stream=stream):
                    metrics, anneal = self._run(static)
            current.wait_stream(stream)
            captured = _Captured(graph, metrics, anneal)
            self._graphs[phase] = captured
            self.captures += 1
        captured.graph.replay()
        # Fresh tensors: the next replay overwrites the graph's own.
        names = list(captured.metrics)
        stacked = th.stack([captured.metrics[name].reshape(()).float() for name in names]) if names else None
        fresh = {name: stacked[i] for i, name in enumerate(names)} if stacked is not None else {}
        return fresh, captured.anneal

    def reset(self) -> None:
        """Forget every graph and static input (after parameters or optimizer states were replaced)."""
        self._graphs.clear()
        self._warm.clear()
        self._signature = None
        self._static = None


def check_cuda_graph_settings(model: GAARASAC) -> None:
    """Reject settings of ``model`` that a CUDA graph cannot hold, naming the fix (at set-up, where graphs will be
    used)."""
    if model.skip_nonfinite_updates:
        raise ValueError(
            "skip_nonfinite_updates=True reads every loss on the host before applying it, which a CUDA graph cannot "
            "do: use cuda_graphs=False with it, or keep the default skip_nonfinite_updates=False (training then stops "
            "with an error at the first non-finite loss)."
        )
    if not model.policy_kwargs.get("fused_optimizers", True):
        raise ValueError(
            "cuda_graphs=True needs the fused Adam optimizers (policy_kwargs fused_optimizers=True, the default): "
            "the unfused ones compute differently when made capturable. Drop fused_optimizers=False."
        )
    assert model.replay_buffer_class is not None
    if not issubclass(model.replay_buffer_class, AugmentedPixelReplayBuffer):
        raise ValueError(
            f"cuda_graphs=True samples through AugmentedPixelReplayBuffer.sample_transitions, but replay_buffer_class is "
            f"{model.replay_buffer_class.__name__}: subclass AugmentedPixelReplayBuffer, or use cuda_graphs=False."
        )
    storage = model.replay_buffer_kwargs.get("storage_device", "auto")
    if storage is None or (storage != "auto" and th.device(storage).type != model.device.type):
        raise ValueError(
            f"cuda_graphs=True crops on the GPU from frames kept there, but replay_buffer_kwargs sets "
            f"storage_device={storage!r}: remove it (the default is the model's device) or set it to 'auto'."
        )

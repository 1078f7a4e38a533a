"""Replay memory, sampling, update and environment-step figures of GAARASAC next to SB3's SAC.

``python -m sb3_gaara.benchmark [--json out.json] [--device cpu|cuda] [--quick] [--conv-dtype bfloat16]
[--sections replay update env] [--update-groups gaara drq drqv2 slac dreamer]`` measures, in one process on one
machine, with 3 stacked ``3 x 100 x 100`` frames (``9 x 100 x 100`` observations) and 84 px crops:

* replay bytes per transition of :class:`~sb3_gaara.common.buffers.AugmentedPixelReplayBuffer` in steady state
  (full, after wrapping) and of SB3's ``ReplayBuffer`` for the same spaces;
* the time to sample a batch with both crops, and SB3's sample followed by the same crops;
* the same bytes for DrQ's observations, whole 84 px renders;
* the same bytes for SLAC's replay, :class:`~sb3_gaara.slac.SequenceReplayBuffer` on single ``3 x 64 x 64`` frames
  (the paper's setting, no frame stack), against SB3's ``ReplayBuffer`` for those spaces, and the time to sample the
  agent's batch of sequences of 8 frames; Dreamer's, the same store read as sequences of 50 frames, and the time to
  sample its batch of them;
* the time of one gradient step (``model.train(gradient_steps=1, batch_size=128)``) of ``GAARASAC("CnnPolicy")``,
  ``DrQ("CnnPolicy")`` and SB3's ``SAC("CnnPolicy")`` (NatureCNN, full-stack buffer), and of ``DrQv2("CnnPolicy")``
  and SB3's ``DDPG("CnnPolicy")``, on the same random-image env, and their ratios;
  on CUDA also of ``SACAE`` and of the fast path of both (``cuda_graphs=True``), all of ours with their frames
  on the GPU, so that eager and fast differ only by the graphs;
* SLAC's training step on single 64 px frames of a random-image env of its own, its two parts timed apart: one
  update of the latent variable model (``SLAC.model_step``, 32 sequences of 8 frames) and one SAC update
  (``SLAC.agent_step``, 256 sequences of 8 frames), against ``GAARASAC``'s update measured beside it. SLAC's batches
  follow ``--batch-size`` in the papers' proportions: the model's ``batch / 4`` and the agent's ``2 x batch``
  sequences, SLAC's 32 and 256 at the default 128 (see :func:`slac_batch_sizes`);
* Dreamer's update on the same single 64 px frames, its two parts timed apart: the world model's
  (``Dreamer.model_step``, 50 sequences of 50 frames: the replayed batch, sampled in this part) and the behaviour's
  (``Dreamer.behaviour_step``: actor and value on trajectories imagined 15 steps from every state of that batch),
  against ``GAARASAC``'s update measured beside it. Dreamer's batch follows ``--batch-size`` in proportion, the
  paper's 50 at the default 128 (see :func:`dreamer_batch_size`); ``--update-groups`` measures only some of the
  groups of models (a paper-sized Dreamer update takes tens of seconds on a 2-core CPU);
* end-to-end environment steps per second of ``GAARASAC`` on ``dmc-cheetah-run``, counted after action repeat
  (as the papers' tables count them), while collecting random warm-up steps and while training one update per
  agent step; on CUDA with the eager and the fast path, rendering on the GPU (``MUJOCO_GL=egl``).

On a CPU the fast path runs the eager update, so its figures are not measured there (the report says "CUDA only").
Timings are medians after warm-up (the minimum is printed too: it shows what the machine does when other
processes leave it alone). It prints a table and, with ``--json``, writes the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch as th
from gymnasium import spaces
from stable_baselines3 import DDPG, SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecFrameStack

from sb3_gaara.common.buffers import AugmentedPixelReplayBuffer
from sb3_gaara.common.crops import center_crop, crop, random_crop_offsets
from sb3_gaara.common.durability import write_text_atomic
from sb3_gaara.common.env_steps import env_steps
from sb3_gaara.common.sequence_buffer import SequenceSamples
from sb3_gaara.dreamer import Dreamer, RSSMState
from sb3_gaara.drq import DrQ, DrQv2
from sb3_gaara.gaara.gaara_sac import GAARASAC, SACAE
from sb3_gaara.slac import SLAC, SequenceReplayBuffer

FRAME_SHAPE = (3, 100, 100)
FRAME_STACK = 3
IMAGE_SIZE = 84
#: cheetah-run's action dimension: the spaces of the memory and update figures are the task's
ACTION_DIM = 6
#: agent steps per episode on cheetah-run (1000 simulator steps, action repeat 4)
EPISODE_STEPS = 250
DMC_ENV_ID = "dmc-cheetah-run"
#: update time of the paper's reference code (CURL / SAC+GAARA) over SB3's SAC("CnnPolicy"), batch 128, measured
#: in one process on this project's 2-core CPU machines (1.3 s / 0.39 s)
REFERENCE_UPDATE_RATIO = 3.3
#: the target of GAARASAC's update over SB3's SAC("CnnPolicy") on the CPU (1.5x faster than the reference code)
TARGET_UPDATE_RATIO = 2.2
#: the target of the fast path's update (``cuda_graphs=True``) over SB3's SAC("CnnPolicy") on one H100
TARGET_CUDA_GRAPHS_UPDATE_RATIO = 1.0
#: the target of end-to-end training with the fast path on one GPU, environment steps per second of one run
TARGET_CUDA_ENV_STEPS_PER_S = 300
#: fewest warm-up updates on CUDA: the fast path runs each phase of the update cadence (with and without the
#: actor step: two with the paper's settings) eagerly the first time and captures its graph the second, and neither
#: may be timed as a replayed update
CUDA_WARMUP_STEPS = 4
#: why the fast-path figures are missing from a CPU run
CUDA_ONLY = "CUDA only (on a CPU, cuda_graphs=True runs the eager update)"
#: SLAC's frames (the paper's setting: one 64 px RGB frame per observation, no frame stack) and sequences
SLAC_FRAME_SHAPE = (3, 64, 64)
SLAC_SEQUENCE_LENGTH = 8
#: the benchmark's default --batch-size (GAARA's batch), at which SLAC's batches are the paper's
DEFAULT_BATCH_SIZE = 128
#: SLAC's batches of sequences at DEFAULT_BATCH_SIZE: the model's and the agent's (the paper's appendix B)
SLAC_MODEL_BATCH_SIZE = 32
SLAC_AGENT_BATCH_SIZE = 256
#: Dreamer's frames (the paper's: one 64 px RGB frame per observation, SLAC's), sequences and their batch at
#: DEFAULT_BATCH_SIZE (appendix A: 50 sequences of 50 steps)
DREAMER_FRAME_SHAPE = SLAC_FRAME_SHAPE
DREAMER_SEQUENCE_LENGTH = 50
DREAMER_BATCH_SIZE = 50


class Counts(NamedTuple):
    """How many steps each section measures: few on a CPU (an update takes a second), many on a GPU."""

    update_steps: int
    update_warmup: int
    random_agent_steps: int
    train_agent_steps: int


#: by (CUDA device, --quick)
COUNTS = {
    (False, True): Counts(4, 1, 100, 4),
    (False, False): Counts(25, 3, 1000, 20),
    (True, True): Counts(20, CUDA_WARMUP_STEPS, 100, 50),
    (True, False): Counts(200, 10, 1000, 1000),
}
SECTIONS = ("replay", "update", "env")


class RandomFrameEnv(gym.Env):
    """Random ``3 x 100 x 100`` frames, episodes of ``episode_steps`` steps ending in a truncation (as DMC's)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, episode_steps: int = EPISODE_STEPS, frame_shape: tuple[int, int, int] = FRAME_SHAPE) -> None:
        super().__init__()
        self.frame_shape = frame_shape
        self.observation_space = spaces.Box(0, 255, frame_shape, dtype=np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
        self.episode_steps = episode_steps
        self._step = 0

    def _frame(self) -> np.ndarray:
        return self.np_random.integers(0, 256, self.frame_shape, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._step = 0
        return self._frame(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._step += 1
        return self._frame(), float(self.np_random.normal()), False, self._step >= self.episode_steps, {}


def stacked_random_env(seed: int = 0, frame_shape: tuple[int, int, int] = FRAME_SHAPE) -> VecFrameStack:
    venv = VecFrameStack(DummyVecEnv([lambda: RandomFrameEnv(frame_shape=frame_shape)]), FRAME_STACK)
    venv.seed(seed)
    return venv


def slac_random_env(seed: int = 0) -> DummyVecEnv:
    """SLAC's (and Dreamer's) random-image env: single ``3 x 64 x 64`` frames, no stack (the papers' observations)."""
    venv = DummyVecEnv([lambda: RandomFrameEnv(frame_shape=SLAC_FRAME_SHAPE)])
    venv.seed(seed)
    return venv


def slac_batch_sizes(batch_size: int) -> tuple[int, int]:
    """SLAC's ``(model, agent)`` batches of sequences for the benchmark's ``--batch-size`` (GAARA's batch).

    At the default 128 they are the paper's 32 and 256; other batch sizes scale both in the same proportion (the
    model's ``batch / 4``, at least 1, the agent's ``2 x batch``), so that a smaller ``--batch-size`` shortens SLAC's
    figures as it does the others' and the papers' settings keep their ratio.
    """
    model = max(1, round(batch_size * SLAC_MODEL_BATCH_SIZE / DEFAULT_BATCH_SIZE))
    agent = max(1, round(batch_size * SLAC_AGENT_BATCH_SIZE / DEFAULT_BATCH_SIZE))
    return model, agent


def dreamer_batch_size(batch_size: int) -> int:
    """Dreamer's batch of sequences for the benchmark's ``--batch-size`` (GAARA's batch): the paper's 50 at the
    default 128, in proportion otherwise (at least 1), as :func:`slac_batch_sizes` scales SLAC's."""
    return max(1, round(batch_size * DREAMER_BATCH_SIZE / DEFAULT_BATCH_SIZE))


def _synchronize(device: th.device) -> None:
    if device.type == "cuda":
        th.cuda.synchronize(device)


def time_calls(function: Callable[[], Any], repeats: int, warmup: int, device: th.device) -> dict[str, float]:
    """Median and minimum seconds of ``function()`` over ``repeats`` calls, after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    durations = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        function()
        _synchronize(device)
        durations.append(time.perf_counter() - start)
    return {"median_s": statistics.median(durations), "min_s": min(durations), "repeats": repeats}


def fill(buffers: list[ReplayBuffer], venv: VecEnv, n_steps: int, seed: int = 0) -> None:
    """Add ``n_steps`` transitions to every buffer, as SB3's off-policy loop does (terminal observations in next_obs)."""
    rng = np.random.default_rng(seed)
    obs = venv.reset()
    assert isinstance(obs, np.ndarray)
    for _ in range(n_steps):
        actions = rng.uniform(-1, 1, (venv.num_envs, ACTION_DIM)).astype(np.float32)
        new_obs, rewards, dones, infos = venv.step(actions)
        assert isinstance(new_obs, np.ndarray)
        next_obs = new_obs.copy()
        for i, done in enumerate(dones):
            if done:
                next_obs[i] = infos[i]["terminal_observation"]
        for buffer in buffers:
            buffer.add(obs, next_obs, actions, rewards, dones, infos)
        obs = new_obs


def sb3_bytes_per_transition(buffer: ReplayBuffer) -> float:
    arrays = [buffer.observations, buffer.actions, buffer.rewards, buffer.dones, buffer.timeouts]
    if not buffer.optimize_memory_usage:
        arrays.append(buffer.next_observations)
    return sum(array.nbytes for array in arrays) / (buffer.buffer_size * buffer.n_envs)


def bench_replay(buffer_size: int, batch_size: int, repeats: int, device: th.device, storage_device: str | None) -> dict:
    """Bytes per transition in steady state and sample times, ours against SB3's buffer plus the same crops."""
    venv = stacked_random_env()
    ours = AugmentedPixelReplayBuffer(
        buffer_size,
        venv.observation_space,
        venv.action_space,
        device=device,
        image_size=IMAGE_SIZE,
        storage_device=storage_device,
    )
    reference = ReplayBuffer(buffer_size, venv.observation_space, venv.action_space, device=device)
    fill([ours, reference], venv, n_steps=buffer_size + buffer_size // 2)
    # DrQ's (and DrQ-v2's) observations: whole 84 px renders, stored the same way
    small = stacked_random_env(frame_shape=(3, IMAGE_SIZE, IMAGE_SIZE))
    ours_84 = AugmentedPixelReplayBuffer(buffer_size, small.observation_space, small.action_space, image_size=IMAGE_SIZE)
    reference_84 = ReplayBuffer(buffer_size, small.observation_space, small.action_space)
    fill([ours_84, reference_84], small, n_steps=buffer_size + buffer_size // 2)
    # SLAC's: single 64 px frames, read back as sequences
    slac_env = slac_random_env()
    slac = SequenceReplayBuffer(
        buffer_size,
        slac_env.observation_space,
        slac_env.action_space,
        device=device,
        sequence_length=SLAC_SEQUENCE_LENGTH,
        storage_device=storage_device,
    )
    reference_slac = ReplayBuffer(buffer_size, slac_env.observation_space, slac_env.action_space)
    # Dreamer's: the same frames and store, read back as longer sequences
    dreamer = SequenceReplayBuffer(
        buffer_size,
        slac_env.observation_space,
        slac_env.action_space,
        device=device,
        sequence_length=DREAMER_SEQUENCE_LENGTH,
        storage_device=storage_device,
    )
    fill([slac, reference_slac, dreamer], slac_env, n_steps=buffer_size + buffer_size // 2)
    _, slac_batch_size = slac_batch_sizes(batch_size)
    dreamer_batch = dreamer_batch_size(batch_size)

    def sb3_sample_and_crop() -> None:
        # The reference implementations' path: full stacks gathered and moved, then cropped.
        samples = reference.sample(batch_size)
        top, left = random_crop_offsets(
            batch_size, FRAME_SHAPE[1], FRAME_SHAPE[2], IMAGE_SIZE, device=samples.observations.device
        )
        center_crop(samples.observations, IMAGE_SIZE).contiguous()
        center_crop(samples.next_observations, IMAGE_SIZE).contiguous()
        crop(samples.observations, top, left, IMAGE_SIZE)

    warmup = max(3, repeats // 10)
    return {
        "buffer_size": buffer_size,
        "frame_bytes": int(np.prod(FRAME_SHAPE)),
        "ours_bytes_per_transition": ours.bytes_per_transition(),
        "sb3_bytes_per_transition": sb3_bytes_per_transition(reference),
        "ours_bytes_per_transition_84": ours_84.bytes_per_transition(),
        "sb3_bytes_per_transition_84": sb3_bytes_per_transition(reference_84),
        "storage_device": _storage_name(ours),
        "batch_size": batch_size,
        "ours_sample": time_calls(lambda: ours.sample(batch_size), repeats, warmup, device),
        "sb3_sample_and_crop": time_calls(sb3_sample_and_crop, max(5, repeats // 5), warmup, device),
        "slac_frame_shape": list(SLAC_FRAME_SHAPE),
        "slac_frame_bytes": int(np.prod(SLAC_FRAME_SHAPE)),
        "slac_sequence_length": SLAC_SEQUENCE_LENGTH,
        "slac_bytes_per_transition": slac.bytes_per_transition(),
        "slac_sb3_bytes_per_transition": sb3_bytes_per_transition(reference_slac),
        "slac_batch_size": slac_batch_size,
        "slac_sample": time_calls(lambda: slac.sample(slac_batch_size), max(5, repeats // 5), warmup, device),
        "dreamer_sequence_length": DREAMER_SEQUENCE_LENGTH,
        "dreamer_bytes_per_transition": dreamer.bytes_per_transition(),
        "dreamer_batch_size": dreamer_batch,
        "dreamer_sample": time_calls(lambda: dreamer.sample(dreamer_batch), max(5, repeats // 5), warmup, device),
    }


def _storage_name(buffer: AugmentedPixelReplayBuffer) -> str:
    return "host (numpy)" if buffer.storage_device is None else str(buffer.storage_device)


@dataclass(frozen=True)
class UpdateModel:
    """One model of the update figures: its key in the figures, its class and whether it takes the fast path."""

    key: str
    algo: type[OffPolicyAlgorithm]
    cuda_graphs: bool = False
    #: why a CPU run leaves it out (None: measured everywhere)
    cpu_skip: str | None = None
    #: models of one group alternate their steps; groups are measured one after the other (see ``bench_updates``)
    group: str = "gaara"
    #: the model its group measures it against, where the same class is measured in another group too
    beside: str | None = None

    @property
    def ours(self) -> bool:
        return issubclass(self.algo, (GAARASAC, DrQv2))

    def label(self, figures: dict[str, Any]) -> str:
        beside = f", beside {figures['beside']}" if figures.get("beside") else ""
        if not self.ours:
            return f"SB3 {self.algo.__name__}('CnnPolicy'){beside}"
        if self.cuda_graphs:
            return f"{self.algo.__name__} + cuda_graphs=True"
        return f"{self.algo.__name__}('CnnPolicy'{_conv_dtype_argument(figures)}){beside}"


#: in the order of the measurements and of the report
UPDATE_MODELS = (
    UpdateModel("GAARASAC", GAARASAC),
    UpdateModel("GAARASAC_cuda_graphs", GAARASAC, cuda_graphs=True, cpu_skip=CUDA_ONLY),
    # SACAE's eager update takes most of a second on a CPU: left out there to keep the CPU benchmark's duration.
    UpdateModel("SACAE", SACAE, cpu_skip="CUDA only (left out on a CPU to keep the benchmark short)"),
    UpdateModel("SACAE_cuda_graphs", SACAE, cuda_graphs=True, cpu_skip=CUDA_ONLY),
    UpdateModel("SAC", SAC),
    # The DrQ family, each against its SB3 counterpart, in groups of their own (see bench_updates).
    UpdateModel("DrQ", DrQ, group="drq"),
    UpdateModel("SAC_beside_DrQ", SAC, group="drq", beside="DrQ"),
    UpdateModel("DrQv2", DrQv2, group="drqv2"),
    UpdateModel("DDPG", DDPG, group="drqv2"),
    # SLAC (model update + agent update, on 64 px single frames) against a GAARASAC of its own group.
    UpdateModel("SLAC", SLAC, group="slac"),
    UpdateModel("GAARASAC_beside_SLAC", GAARASAC, group="slac", beside="SLAC"),
    # Dreamer (world-model update + behaviour update, on the same frames) against a GAARASAC of its own group.
    UpdateModel("Dreamer", Dreamer, group="dreamer"),
    UpdateModel("GAARASAC_beside_Dreamer", GAARASAC, group="dreamer", beside="Dreamer"),
)
#: the groups of :data:`UPDATE_MODELS`, in the order they are measured (``--update-groups``)
UPDATE_GROUPS = tuple(dict.fromkeys(spec.group for spec in UPDATE_MODELS))
#: key in the update figures: (numerator, denominator) of median update times; absent where one is not measured
UPDATE_RATIOS = {
    "ratio": ("GAARASAC", "SAC"),
    "ratio_drq": ("DrQ", "SAC_beside_DrQ"),
    "ratio_drqv2": ("DrQv2", "DDPG"),
    "ratio_slac": ("SLAC", "GAARASAC_beside_SLAC"),
    "ratio_dreamer": ("Dreamer", "GAARASAC_beside_Dreamer"),
    "ratio_cuda_graphs": ("GAARASAC_cuda_graphs", "SAC"),
    "speedup_cuda_graphs": ("GAARASAC", "GAARASAC_cuda_graphs"),
    "speedup_cuda_graphs_sacae": ("SACAE", "SACAE_cuda_graphs"),
}


def bench_updates(
    batch_size: int,
    steps: int,
    warmup: int,
    filled: int,
    device: th.device,
    seed: int = 0,
    conv_dtype: str = "float32",
    storage_device: str | None = None,
    groups: Sequence[str] = UPDATE_GROUPS,
) -> dict[str, Any]:
    """Seconds per gradient step (``model.train(1, batch_size)``) of the :data:`UPDATE_MODELS` of ``groups`` and their
    ratios (the models of the other groups are left out of the figures).

    All models train on buffers of ``filled`` transitions of the same random-image env (SLAC and Dreamer: of their
    own, single 64 px frames); ours keep their frames in ``storage_device``. The models of one group (GAARA's family
    and SAC; DrQ and SAC; DrQv2 and DDPG; SLAC and GAARASAC; Dreamer and GAARASAC) alternate their steps, so that a
    change in the machine's load weighs on all alike; the groups run one after the other, each freed before the next
    is built. SLAC's step is its model update then its agent update, as its ``train`` runs them (:func:`_timed_step`),
    on the batches of :func:`slac_batch_sizes`: its figures are those of the step (the sum of the two parts, step by
    step) and, under ``model_update`` and ``agent_update``, of each part. Dreamer's update likewise: its world model's
    (``model_update``, the batch of :func:`dreamer_batch_size` sampled in it) then its behaviour's
    (``behaviour_update``). SLAC's model update is many small operations (the filter
    runs step by step along each sequence): on a CPU that other busy processes share, each waits for torch's
    threads, and its time grows many-fold, far more than the others' (read the load average in the figures).
    On a CPU the allocator's state moves update times by tens of percent
    (page faults, README "A tip for CPU training"), and it depends on which models share the process: each ratio
    is measured among the models it compares, as before the DrQ family was added. A model a CPU run leaves out
    has ``{"skipped": why}`` as its figures, and the ratios that need it are absent. On CUDA at least
    :data:`CUDA_WARMUP_STEPS` steps warm up, and the figures hold the peak GPU memory allocated while the models
    were built and trained.
    """
    cuda = device.type == "cuda"
    if cuda:
        warmup = max(warmup, CUDA_WARMUP_STEPS)
        th.cuda.reset_peak_memory_stats(device)
    results: dict[str, Any] = {}
    durations: dict[str, list[float]] = {}
    page_faults: dict[str, list[int]] = {}
    #: per model, the durations of the parts of its step where it has several (SLAC's model and agent updates)
    part_durations: dict[str, dict[str, list[float]]] = {}
    described: dict[str, dict[str, Any]] = {}
    unknown = sorted(set(groups) - set(UPDATE_GROUPS))
    if unknown:
        raise ValueError(f"Unknown update groups {unknown}; the groups are {', '.join(UPDATE_GROUPS)}.")
    for group in (group for group in UPDATE_GROUPS if group in groups):
        models: dict[str, OffPolicyAlgorithm] = {}
        for spec in UPDATE_MODELS:
            if spec.group != group or (spec.cpu_skip is not None and not cuda):
                continue
            models[spec.key] = _update_model(spec, batch_size, filled, device, seed, conv_dtype, storage_device)
        for key in models:
            durations[key], page_faults[key], part_durations[key] = [], [], {}
        for step in range(warmup + steps):
            for key, model in models.items():
                parts = _timed_step(model, batch_size)
                if step >= warmup:
                    durations[key].append(sum(seconds for seconds, _ in parts.values()))
                    page_faults[key].append(sum(faults for _, faults in parts.values()))
                    if len(parts) > 1:
                        for part, (seconds, _) in parts.items():
                            part_durations[key].setdefault(part, []).append(seconds)
        for key, model in models.items():
            described[key] = {
                "policy": type(model.policy).__name__,
                "parameters": sum(p.numel() for p in model.policy.parameters()),
                **(
                    {"storage_device": _storage_name(model.replay_buffer)}
                    if isinstance(model.replay_buffer, AugmentedPixelReplayBuffer)
                    else {}
                ),
            }
            if isinstance(model, SLAC):
                described[key].update(
                    frame_shape=list(model.observation_space.shape or ()),
                    sequence_length=model.sequence_length,
                    model_batch_size=model.model_batch_size,
                    agent_batch_size=model.batch_size,
                )
            if isinstance(model, Dreamer):
                described[key].update(
                    frame_shape=list(model.observation_space.shape or ()),
                    sequence_length=model.sequence_length,
                    batch_size=model.batch_size,
                    imagination_horizon=model.imagination_horizon,
                )
        del models
    for spec in UPDATE_MODELS:
        if spec.group not in groups:
            continue
        if spec.key not in durations:
            results[spec.key] = {"skipped": spec.cpu_skip}
            continue
        figures: dict[str, Any] = {
            **described[spec.key],
            "median_s": statistics.median(durations[spec.key]),
            "min_s": min(durations[spec.key]),
            "repeats": steps,
            "median_minor_page_faults": statistics.median(page_faults[spec.key]),
        }
        if issubclass(spec.algo, GAARASAC):
            figures.update(conv_dtype=conv_dtype, cuda_graphs=spec.cuda_graphs)
        for part, times in part_durations[spec.key].items():
            figures[part] = {"median_s": statistics.median(times), "min_s": min(times), "repeats": steps}
        if spec.beside is not None:
            figures["beside"] = spec.beside
        results[spec.key] = figures
    for key, (numerator, denominator) in UPDATE_RATIOS.items():
        if numerator in durations and denominator in durations:
            results[key] = results[numerator]["median_s"] / results[denominator]["median_s"]
    results["warmup"] = warmup
    results["groups"] = [group for group in UPDATE_GROUPS if group in groups]
    if cuda:
        results["peak_gpu_memory_bytes"] = th.cuda.max_memory_allocated(device)
    return results


def _update_model(
    spec: UpdateModel,
    batch_size: int,
    filled: int,
    device: th.device,
    seed: int,
    conv_dtype: str,
    storage_device: str | None,
) -> OffPolicyAlgorithm:
    """``spec``'s model on the random-image env, its buffer holding ``filled`` random transitions, not trained yet."""
    ours_kwargs: dict[str, Any] = dict(replay_buffer_kwargs=dict(storage_device=storage_device))
    if issubclass(spec.algo, SLAC):
        model_batch_size, agent_batch_size = slac_batch_sizes(batch_size)
        slac = SLAC(
            "CnnPolicy",
            slac_random_env(seed),
            buffer_size=filled + 1,
            learning_starts=filled,
            batch_size=agent_batch_size,
            model_batch_size=model_batch_size,
            sequence_length=SLAC_SEQUENCE_LENGTH,
            seed=seed,
            device=device,
            **ours_kwargs,
        )
        slac.learn(total_timesteps=filled)  # random actions only, as below
        return slac
    if issubclass(spec.algo, Dreamer):
        dreamer = Dreamer(
            "CnnPolicy",
            slac_random_env(seed),
            buffer_size=filled + 1,
            learning_starts=filled,
            # One agent step per rollout: SB3 collects whole rollouts (Dreamer's are 500 steps), past total_timesteps.
            train_freq=1,
            batch_size=dreamer_batch_size(batch_size),
            sequence_length=DREAMER_SEQUENCE_LENGTH,
            seed=seed,
            device=device,
            **ours_kwargs,
        )
        dreamer.learn(total_timesteps=filled)  # random actions only (every frame filtered, as Dreamer acts)
        return dreamer
    if issubclass(spec.algo, GAARASAC):
        ours_kwargs.update(policy_kwargs=dict(conv_dtype=conv_dtype), cuda_graphs=spec.cuda_graphs)
    model = spec.algo(
        "CnnPolicy",
        stacked_random_env(seed),
        buffer_size=filled + 1,
        learning_starts=filled,
        batch_size=batch_size,
        seed=seed,
        device=device,
        **(ours_kwargs if spec.ours else {}),
    )
    model.learn(total_timesteps=filled)  # random actions only: SB3 trains once num_timesteps > learning_starts
    return model


def _discard(name: str, value: th.Tensor) -> None:
    """SLAC's and Dreamer's ``record`` of a training metric, for the timed steps: the benchmark logs nothing."""


def _timed_step(model: OffPolicyAlgorithm, batch_size: int) -> dict[str, tuple[float, int]]:
    """One training step of ``model``: seconds and minor page faults of each of its parts, each timed between device
    synchronisations.

    One part, ``update`` (``model.train(gradient_steps=1, batch_size=batch_size)``), for all but SLAC and Dreamer;
    SLAC's two, in the order of its ``train``: ``model_update`` (``model_batch_size`` sequences sampled,
    :meth:`SLAC.model_step` on them) and ``agent_update`` (its ``batch_size`` sequences sampled, :meth:`SLAC.agent_step`
    on them, then the update count its ``train`` keeps). SLAC's ``train`` would run its ``model_pretraining_steps``
    model updates first: calling the parts keeps them out (the steady state of training, one of each per agent step).
    Dreamer's two, as one iteration of its ``train``: ``model_update`` (its ``batch_size`` sequences sampled,
    :meth:`Dreamer.model_step` on them) and ``behaviour_update`` (:meth:`Dreamer.behaviour_step` from their posterior
    states, then the update count).
    """
    parts: dict[str, Callable[[], None]]
    if isinstance(model, Dreamer):
        dreamer = model
        dreamer.policy.set_training_mode(True)
        batch: list[tuple[SequenceSamples, RSSMState]] = []

        def world_model_update() -> None:
            sequences = dreamer.replay_buffer.sample(dreamer.batch_size)
            batch.append((sequences, dreamer.model_step(sequences, _discard)))

        def behaviour_update() -> None:
            sequences, posterior = batch.pop()
            dreamer.behaviour_step(posterior, sequences.observed, _discard)
            dreamer._n_updates += 1

        parts = {"model_update": world_model_update, "behaviour_update": behaviour_update}
    elif isinstance(model, SLAC):
        slac = model
        slac.policy.set_training_mode(True)

        def agent_update() -> None:
            slac.agent_step(slac.replay_buffer.sample(slac.batch_size), _discard)
            slac._n_updates += 1

        parts = {"model_update": lambda: slac.model_step(slac._sample_model_batch(), _discard), "agent_update": agent_update}
    else:
        parts = {"update": lambda: model.train(gradient_steps=1, batch_size=batch_size)}
    timed = {}
    for part, run in parts.items():
        _synchronize(model.device)
        faults = _minor_page_faults()
        start = time.perf_counter()
        run()
        _synchronize(model.device)
        timed[part] = (time.perf_counter() - start, _minor_page_faults() - faults)
    return timed


def _minor_page_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing).

    On a CPU they explain most of the spread of the update times: glibc returns the memory an update
    freed to the system and the next update faults it in again, 4 KB at a time (README, "A tip for CPU
    training").
    """
    try:
        import resource
    except ImportError:  # Windows has no resource module
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def make_dmc_env() -> tuple[VecEnv, int]:
    """``dmc-cheetah-run`` with 3 stacked frames (the env's ``frame_stack``: the first frame repeated at reset, as the
    packaged hyper-parameters train), and its action repeat."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from sb3_gaara.envs import default_action_repeat, register_dmc_envs

    register_dmc_envs()
    venv = DummyVecEnv([lambda: gym.make(DMC_ENV_ID, frame_stack=FRAME_STACK)])
    venv.seed(0)
    return venv, default_action_repeat("cheetah")


#: The parts of an agent step that :func:`bench_env_steps` times on their own, as the off-policy loop calls them:
#: choosing the action (the actor's forward pass and the action's copy to the host), stepping the environment
#: (simulation and rendering), storing the transition (the frame's copy into the replay) and the update. What is
#: left of the step is SB3's loop itself (callbacks, logging, bookkeeping).
STEP_PARTS: dict[str, str] = {
    "action": "_sample_action",
    "env_step": "step",
    "store": "_store_transition",
    "update": "train",
}


@contextlib.contextmanager
def timed_step_parts(model: OffPolicyAlgorithm) -> Iterator[dict[str, dict[str, float]]]:
    """Seconds spent in, and calls of, each of :data:`STEP_PARTS` while the block runs ``model.learn``.

    Each method is wrapped by an instance attribute of the same name (the environment's ``step`` on
    ``model.env``), removed again on exit, so nothing else of the model changes. On a GPU the update's time
    includes its kernels: ``train`` ends with a synchronisation (the loss check), so the action's time does not
    carry the update's work.
    """
    totals = {part: {"seconds": 0.0, "calls": 0.0} for part in STEP_PARTS}
    owners: dict[str, Any] = {part: model.env if part == "env_step" else model for part in STEP_PARTS}

    def timed(method: Callable[..., Any], total: dict[str, float]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                total["seconds"] += time.perf_counter() - start
                total["calls"] += 1

        return wrapper

    for part, name in STEP_PARTS.items():
        if name in vars(owners[part]):
            raise RuntimeError(f"{type(owners[part]).__name__}.{name} is already wrapped: timed_step_parts does not nest.")
    for part, name in STEP_PARTS.items():
        setattr(owners[part], name, timed(getattr(owners[part], name), totals[part]))
    try:
        yield totals
    finally:
        for part, name in STEP_PARTS.items():
            delattr(owners[part], name)  # the class's method again


def bench_env_steps(
    random_steps: int,
    train_steps: int,
    device: th.device,
    storage_device: str | None = None,
    cuda_graphs: bool = False,
    conv_dtype: str = "float32",
    overlap_env_step: bool = False,
) -> dict[str, Any]:
    """Environment steps per second (after action repeat) of GAARASAC on dmc-cheetah-run.

    The model keeps its frames in ``storage_device``, takes the fast path with ``cuda_graphs``, runs its
    convolutions in ``conv_dtype`` and, with ``overlap_env_step``, begins each update before the env step. Each
    phase ends with a device synchronisation, so that the updates it queued count in its time. With
    ``overlap_env_step`` the step's parts read differently: ``action`` includes launching the update, and the
    update's remaining GPU time shows where the host first waits for it (the store's copy to the GPU, or the
    loss check of ``train()``).
    """
    try:
        venv, action_repeat = make_dmc_env()
    except Exception as error:  # no dm_control, no OpenGL, or the env package missing: say why and go on
        return {"skipped": f"{DMC_ENV_ID} could not be built: {error!r}"}
    model = GAARASAC(
        "CnnPolicy",
        venv,
        buffer_size=random_steps + train_steps + 1,
        learning_starts=random_steps,
        # The steady state, one update per agent step: without the reference code's burst of learning_starts
        # updates when training starts (a one-time cost, 1000 updates here, that would swamp the 20 timed steps).
        init_gradient_steps=0,
        device=device,
        seed=0,
        replay_buffer_kwargs=dict(storage_device=storage_device),
        cuda_graphs=cuda_graphs,
        overlap_env_step=overlap_env_step,
        policy_kwargs=dict(conv_dtype=conv_dtype),
    )
    _synchronize(device)
    start = time.perf_counter()
    model.learn(total_timesteps=random_steps)
    _synchronize(device)
    collect_s = time.perf_counter() - start
    with timed_step_parts(model) as parts:
        start = time.perf_counter()
        model.learn(total_timesteps=train_steps, reset_num_timesteps=False)
        _synchronize(device)
        train_s = time.perf_counter() - start
    venv.close()
    per_step_ms = {part: 1e3 * parts[part]["seconds"] / max(train_steps, 1) for part in STEP_PARTS}
    per_step_ms["rest"] = 1e3 * train_s / max(train_steps, 1) - sum(per_step_ms.values())
    return {
        "cuda_graphs": cuda_graphs,
        "overlap_env_step": overlap_env_step,
        "overlapped_updates": model.overlapped_updates,
        "conv_dtype": conv_dtype,
        "storage_device": _storage_name(model.replay_buffer),
        "env_id": DMC_ENV_ID,
        "action_repeat": action_repeat,
        "random_agent_steps": random_steps,
        "collect_env_steps_per_s": env_steps(random_steps, action_repeat) / collect_s,
        "train_agent_steps": train_steps,
        "gradient_steps": model._n_updates,
        "train_env_steps_per_s": env_steps(train_steps, action_repeat) / train_s,
        # Where a training agent step's time goes (STEP_PARTS, then the loop's "rest"), in ms per agent step.
        "train_ms_per_agent_step": per_step_ms,
    }


def machine(device: th.device) -> dict[str, Any]:
    """What the figures depend on besides the code: the machine, the libraries and, on CUDA, the GPU."""
    facts: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": th.get_num_threads(),
        "torch": th.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "numpy": np.__version__,
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "malloc_environment": {name: value for name, value in os.environ.items() if name.startswith("MALLOC_")},
    }
    if device.type == "cuda":
        facts["gpu"] = gpu_facts(device)
    return facts


def gpu_facts(device: th.device) -> dict[str, Any]:
    """The GPU and the libraries behind its figures; TF32 changes the speed and the float32 results of
    convolutions (cuDNN) and matrix products, so whether it is allowed belongs next to any GPU timing."""
    properties = th.cuda.get_device_properties(device)
    return {
        "name": th.cuda.get_device_name(device),
        "memory_bytes": properties.total_memory,
        "multiprocessors": properties.multi_processor_count,
        "cuda": th.version.cuda,
        "cudnn": th.backends.cudnn.version(),
        "tf32_cudnn": th.backends.cudnn.allow_tf32,
        "tf32_matmul": th.backends.cuda.matmul.allow_tf32,
        "cudnn_benchmark": th.backends.cudnn.benchmark,
    }


def _ms(timing: dict[str, float]) -> str:
    return f"{timing['median_s'] * 1e3:8.2f} ms (min {timing['min_s'] * 1e3:.2f})"


def _s(timing: dict[str, float]) -> str:
    return f"{timing['median_s']:8.3f} s  (min {timing['min_s']:.3f})"


def _conv_dtype_argument(figures: dict[str, Any]) -> str:
    conv_dtype = figures.get("conv_dtype", "float32")
    return "" if conv_dtype == "float32" else f", conv_dtype={conv_dtype!r}"


def _row(label: str, value: str) -> str:
    """One line of a table: the label padded to the figures' column."""
    return f"  {label}".ljust(33) + " " + value


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _header_lines(results: dict[str, Any]) -> list[str]:
    facts = results["machine"]
    lines = [
        f"sb3-gaara benchmark ({results['device']}; {facts['cpu_count']} CPUs, "
        f"{facts['torch_threads']} torch threads, load {facts['load_average_1min']})",
    ]
    if "gpu" in facts:
        gpu = facts["gpu"]
        lines.append(
            f"GPU {gpu['name']} ({gpu['memory_bytes'] / 2**30:.1f} GiB), CUDA {gpu['cuda']}, cuDNN {gpu['cudnn']}, "
            f"TF32 allowed: cuDNN {_yes(gpu['tf32_cudnn'])}, matmul {_yes(gpu['tf32_matmul'])}, "
            f"cudnn.benchmark {_yes(gpu.get('cudnn_benchmark', False))}"
        )
    lines.append(f"observation 9x100x100 uint8 (3 stacked RGB frames), crops {IMAGE_SIZE} px, batch {results['batch_size']}")
    return lines


def _replay_lines(replay: dict[str, Any]) -> list[str]:
    return [
        "replay memory per transition (steady state)",
        f"  AugmentedPixelReplayBuffer      {replay['ours_bytes_per_transition'] / 1e3:8.1f} KB",
        f"  SB3 ReplayBuffer                {replay['sb3_bytes_per_transition'] / 1e3:8.1f} KB  "
        f"({replay['sb3_bytes_per_transition'] / replay['ours_bytes_per_transition']:.1f}x ours)",
        f"  one frame                       {replay['frame_bytes'] / 1e3:8.1f} KB",
        *(
            [
                f"  84 px renders (DrQ): ours {replay['ours_bytes_per_transition_84'] / 1e3:.1f} KB, SB3 ReplayBuffer "
                f"{replay['sb3_bytes_per_transition_84'] / 1e3:.1f} KB",
            ]
            if "ours_bytes_per_transition_84" in replay
            else []
        ),
        *(
            [
                f"  SLAC, one {'x'.join(map(str, replay['slac_frame_shape']))} frame per observation: SequenceReplayBuffer "
                f"{replay['slac_bytes_per_transition'] / 1e3:.1f} KB, SB3 ReplayBuffer "
                f"{replay['slac_sb3_bytes_per_transition'] / 1e3:.1f} KB",
            ]
            if "slac_bytes_per_transition" in replay
            else []
        ),
        *([_dreamer_replay_line(replay)] if "dreamer_bytes_per_transition" in replay else []),
        f"sample, batch {replay['batch_size']}, center + random crops (storage: {replay['storage_device']})",
        f"  AugmentedPixelReplayBuffer      {_ms(replay['ours_sample'])}",
        f"  SB3 sample + sb3_gaara.common.crops    {_ms(replay['sb3_sample_and_crop'])}",
        *(
            [
                _row(
                    f"SLAC sequences ({replay['slac_batch_size']} x {replay['slac_sequence_length']} frames)",
                    _ms(replay["slac_sample"]),
                )
            ]
            if "slac_sample" in replay
            else []
        ),
        *(
            [
                _row(
                    f"Dreamer sequences ({replay['dreamer_batch_size']} x {replay['dreamer_sequence_length']} frames)",
                    _ms(replay["dreamer_sample"]),
                )
            ]
            if "dreamer_sample" in replay
            else []
        ),
    ]


def _dreamer_replay_line(replay: dict[str, Any]) -> str:
    """Dreamer's replay memory: SLAC's store read as longer sequences, so the same bytes where SLAC's were measured."""
    kb = f"{replay['dreamer_bytes_per_transition'] / 1e3:.1f} KB"
    same = replay.get("slac_bytes_per_transition") == replay["dreamer_bytes_per_transition"]
    return f"  Dreamer, sequences of {replay['dreamer_sequence_length']}: SequenceReplayBuffer {kb}" + (
        ", as SLAC's (frames stored once)" if same else ""
    )


def _update_lines(update: dict[str, Any], batch_size: int, cuda: bool) -> list[str]:
    """Update times in ms on CUDA (a few ms each), in s on a CPU; the ratios with their targets."""
    timing = _ms if cuda else _s
    lines = [f"gradient step, batch {batch_size} (model.train)"]
    for spec in UPDATE_MODELS:
        figures = update.get(spec.key)
        if figures is None:
            continue
        if "behaviour_update" in figures:
            lines += _dreamer_lines(figures, timing)
        elif "model_update" in figures:
            lines += _slac_lines(figures, timing)
        else:
            lines.append(_row(spec.label(figures), figures["skipped"] if "skipped" in figures else timing(figures)))
    eager_note = (
        "eager update" if cuda else f"target <= {TARGET_UPDATE_RATIO}x; the paper's reference code: {REFERENCE_UPDATE_RATIO}x"
    )
    ratios = (
        ("ratio", "ratio GAARASAC / SAC", eager_note),
        ("ratio_drq", "ratio DrQ / SAC", "K = M = 2: twice the critic and target passes"),
        ("ratio_drqv2", "ratio DrQv2 / DDPG", "SB3's DDPG('CnnPolicy'): NatureCNN, full-stack buffer"),
        ("ratio_slac", "ratio SLAC step / GAARASAC", "model + agent update over GAARASAC's update beside it"),
        (
            "ratio_dreamer",
            "ratio Dreamer update / GAARASAC",
            "model + behaviour update over GAARASAC's update beside it",
        ),
        (
            "ratio_cuda_graphs",
            "ratio fast GAARASAC / SAC",
            f"fast = cuda_graphs=True; target <= {TARGET_CUDA_GRAPHS_UPDATE_RATIO}x on one H100",
        ),
        ("speedup_cuda_graphs", "speed-up of fast GAARASAC", "eager time / fast time"),
        ("speedup_cuda_graphs_sacae", "speed-up of fast SACAE", "eager time / fast time"),
    )
    lines += [_row(label, f"{update[key]:8.2f}x  ({note})") for key, label, note in ratios if key in update]
    ours, sb3 = update.get("GAARASAC", {}), update.get("SAC", {})
    if "median_minor_page_faults" in ours and "median_minor_page_faults" in sb3:
        lines.append(
            _row(
                "minor page faults per update",
                f"{ours['median_minor_page_faults']:8.0f} GAARASAC, {sb3['median_minor_page_faults']:.0f} SAC (median)",
            )
        )
    if "peak_gpu_memory_bytes" in update:
        lines.append(
            _row("peak GPU memory, all models", f"{update['peak_gpu_memory_bytes'] / 2**20:8.1f} MiB (max_memory_allocated)")
        )
    return lines


def _slac_lines(figures: dict[str, Any], timing: Callable[[dict[str, float]], str]) -> list[str]:
    """SLAC's model update, agent update and their sum, one training step, with their batches of sequences."""
    frames = figures["sequence_length"]
    return [
        _row(f"SLAC model update ({figures['model_batch_size']} x {frames} frames)", timing(figures["model_update"])),
        _row(f"SLAC agent update ({figures['agent_batch_size']} x {frames} frames)", timing(figures["agent_update"])),
        _row("SLAC step (model + agent)", timing(figures)),
    ]


def _dreamer_lines(figures: dict[str, Any], timing: Callable[[dict[str, float]], str]) -> list[str]:
    """Dreamer's world-model update, behaviour update and their sum, one update, with its batch of sequences."""
    batch = f"{figures['batch_size']} x {figures['sequence_length']} frames"
    return [
        _row(f"Dreamer model update ({batch})", timing(figures["model_update"])),
        _row(
            f"Dreamer behaviour update ({figures['imagination_horizon']} imagined steps)",
            timing(figures["behaviour_update"]),
        ),
        _row("Dreamer update (model + behaviour)", timing(figures)),
    ]


def _env_run_lines(env: dict[str, Any], indent: str = "  ", target: str = "") -> list[str]:
    if "skipped" in env:
        return [f"{indent}skipped: {env['skipped']}"]
    collect, train = env["collect_env_steps_per_s"], env["train_env_steps_per_s"]
    lines = [
        f"{indent}random warm-up ({env['random_agent_steps']} agent steps)   {collect:8.1f} env steps/s",
        f"{indent}training ({env['train_agent_steps']} agent steps, 1 update each) {train:6.2f} env steps/s{target}",
    ]
    if "train_ms_per_agent_step" in env:  # absent from the JSON of runs before it was measured
        lines.append(f"{indent}  one training agent step: {step_parts_line(env['train_ms_per_agent_step'])}")
    return lines


def step_parts_line(per_step_ms: dict[str, float]) -> str:
    """``"16.1 ms = action 0.9 + env step 4.4 + store 0.2 + update 10.3 + rest 0.3"``: a training agent step and its parts."""
    parts = " + ".join(f"{part.replace('_', ' ')} {ms:.1f}" for part, ms in per_step_ms.items())
    return f"{sum(per_step_ms.values()):.1f} ms = {parts}"


def _env_lines(eager: dict[str, Any], fast: dict[str, Any] | None, overlapped: dict[str, Any] | None = None) -> list[str]:
    """The eager run's figures as on a CPU; where the fast path ran, each run under a heading of its own (the fast
    path, then the fast path with ``overlap_env_step``, where measured)."""
    lines = [f"end to end on {DMC_ENV_ID} (environment steps after action repeat)"]
    if fast is None or "skipped" in fast:
        lines += _env_run_lines(eager)
        if fast is not None:
            lines.append(f"  with cuda_graphs=True: {fast['skipped']}")
        return lines
    target = f"  (target >= {TARGET_CUDA_ENV_STEPS_PER_S} on one GPU)"
    lines += [f"  eager update (frames in {eager.get('storage_device', '?')})", *_env_run_lines(eager, indent="    ")]
    lines += [f"  fast path, cuda_graphs=True (frames in {fast['storage_device']})"]
    lines += _env_run_lines(fast, indent="    ", target=target)
    if overlapped is not None and "skipped" not in overlapped:
        began = f"{overlapped['overlapped_updates']} of {overlapped['gradient_steps']} updates begun early"
        lines += [f"  fast path + overlap_env_step=True ({began})"]
        lines += _env_run_lines(overlapped, indent="    ", target=target)
    return lines


def report(results: dict[str, Any]) -> str:
    """The figures as a table, section by section (only those measured); the numbers come from ``results`` alone."""
    lines = [*_header_lines(results), ""]
    if "replay" in results:
        lines += _replay_lines(results["replay"])
    if "update" in results:
        lines += _update_lines(results["update"], results["batch_size"], cuda=results["device"].startswith("cuda"))
    if "env_steps" in results:
        lines += _env_lines(
            results["env_steps"], results.get("env_steps_cuda_graphs"), results.get("env_steps_overlap_env_step")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m sb3_gaara.benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--device", default="cpu", help="training device: cpu or cuda (default: cpu)")
    parser.add_argument(
        "--storage-device",
        default=None,
        help="where our models' replay frames live: omitted = host memory on a CPU run, the training device on a CUDA run",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute on a 2-core CPU)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        help=f"transitions per sample and update (default: {DEFAULT_BATCH_SIZE}); SLAC's batches of sequences scale "
        f"with it, the model's batch / 4 and the agent's 2 x batch ({SLAC_MODEL_BATCH_SIZE} and "
        f"{SLAC_AGENT_BATCH_SIZE}, the paper's, at the default), and Dreamer's, batch x 50 / 128 "
        f"({DREAMER_BATCH_SIZE} sequences of {DREAMER_SEQUENCE_LENGTH} frames at the default)",
    )
    parser.add_argument(
        "--conv-dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="GAARAPolicy's conv_dtype in the update figures (bfloat16: mixed-precision convolutions)",
    )
    parser.add_argument(
        "--cudnn-benchmark",
        action="store_true",
        help="set torch.backends.cudnn.benchmark: cuDNN times its convolution kernels once per shape and keeps "
        "the fastest (the study's --cudnn-benchmark)",
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="measure only these parts: replay memory and sampling, update times, end-to-end env steps (default: all)",
    )
    parser.add_argument(
        "--update-groups",
        nargs="+",
        choices=UPDATE_GROUPS,
        default=list(UPDATE_GROUPS),
        help="the update section's groups of models (default: all): gaara (GAARASAC, SACAE, SAC), drq (DrQ, SAC), "
        "drqv2 (DrQv2, DDPG), slac (SLAC, GAARASAC), dreamer (Dreamer, GAARASAC)",
    )
    args = parser.parse_args(argv)

    device = th.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not th.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    storage_device = args.storage_device or ("auto" if cuda else None)
    th.backends.cudnn.benchmark = args.cudnn_benchmark
    quick = args.quick
    counts = COUNTS[cuda, quick]
    sections = [section for section in SECTIONS if section in args.sections]
    results: dict[str, Any] = {
        "device": str(device),
        "quick": quick,
        "sections": sections,
        "batch_size": args.batch_size,
        "machine": machine(device),
    }
    if "replay" in sections:
        results["replay"] = bench_replay(
            buffer_size=1_000 if quick else 5_000,
            batch_size=args.batch_size,
            repeats=50 if quick else 200,
            device=device,
            storage_device=storage_device,
        )
    if "update" in sections:
        results["update"] = bench_updates(
            args.batch_size,
            steps=counts.update_steps,
            warmup=counts.update_warmup,
            filled=300,
            device=device,
            conv_dtype=args.conv_dtype,
            storage_device=storage_device,
            groups=args.update_groups,
        )
    if "env" in sections:

        def env_run(cuda_graphs: bool, overlap_env_step: bool = False) -> dict[str, Any]:
            return bench_env_steps(
                counts.random_agent_steps,
                counts.train_agent_steps,
                device,
                storage_device,
                cuda_graphs=cuda_graphs,
                overlap_env_step=overlap_env_step,
            )

        results["env_steps"] = env_run(cuda_graphs=False)
        results["env_steps_cuda_graphs"] = env_run(cuda_graphs=True) if cuda else {"skipped": CUDA_ONLY}
        # On a CPU the update is synchronous: beginning it early saves nothing there.
        overlapped = env_run(cuda_graphs=True, overlap_env_step=True) if cuda else {"skipped": CUDA_ONLY}
        results["env_steps_overlap_env_step"] = overlapped
    print(report(results))
    if args.json:
        write_text_atomic(args.json, json.dumps(results, indent=2))
        print(f"\nfigures written to {args.json}")
    return results


if __name__ == "__main__":
    main()

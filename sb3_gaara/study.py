"""``python -m sb3_gaara.study``: a grid of tasks x agents x seeds, evaluated as the papers evaluate.

Every run trains one agent (a :class:`~sb3_gaara.GAARASAC` variant) on one task with one seed, and
evaluates it with :class:`~sb3_gaara.evaluation.EnvStepEvalCallback` (10 deterministic episodes on a
separate env every 10k *environment* steps). The study then writes, under ``--out``:

* ``curves.csv``: every evaluation of every run, in the columns of DrQ's published learning curves
  (``step,episode,episode_reward,env,seed,agent``; ``step`` counts environment steps, ``env`` is
  named like ``cheetah_run``);
* ``<task>.png``: mean +- std over seeds of each agent against environment steps, with the reference
  curves (``--reference``, DrQ's ``dmc_planet_bench.csv``), the published 100k/500k scores and a
  random policy drawn beside;
* ``results.md``: scores at 100k and 500k environment steps (mean +- std over seeds) next to the
  published numbers (DrQ paper, Table 1; embedded below, the repository's reference folder is not shipped),
  then each run's last evaluation, wall time and device, so that runs cut short by ``--time-limit`` say
  how far they got.

Runs are resumable: each run directory (``runs/<task>/<agent>/seed_<seed>``) holds its curve, a
checkpoint (model + replay buffer, written then renamed) every ``--checkpoint-every`` environment steps
and when stopped (``--time-limit``, unless ``--no-checkpoint-at-deadline``; SIGTERM, Ctrl-C), and
``done.json`` once finished. Running the same command again skips finished runs and continues
interrupted ones from their checkpoint, so a study can be spread over short GPU slices. A resumed run
restarts its current episode and does not replay the random-number streams, so it is statistically,
not bitwise, the run it would have been.
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import io
import json
import math
import multiprocessing
import os
import shutil
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Columns of ``curves.csv`` (those of DrQ's ``dmc_planet_bench.csv``).
CURVE_COLUMNS = ("step", "episode", "episode_reward", "env", "seed", "agent")

#: Environment-step milestones of the papers' tables.
PAPER_MILESTONES = (100_000, 500_000)

#: Agents of the published tables, in their column order.
PUBLISHED_AGENTS = ("DrQ", "CURL", "SAC+AE", "SLAC", "PlaNet", "SAC from state")

# DrQ paper (Kostrikov et al. 2020), Table 1: mean, std over 10 seeds of the return after 100k / 500k
# environment steps (PlaNet benchmark protocol). SLAC has no cartpole or reacher entry.
_PUBLISHED_ROWS = {
    100_000: {
        "finger_spin": ((901, 104), (779, 108), (747, 130), (680, 130), (95, 164), (672, 76)),
        "cartpole_swingup": ((759, 92), (592, 170), (276, 38), None, (303, 71), (812, 45)),
        "reacher_easy": ((601, 213), (517, 113), (225, 164), None, (140, 256), (919, 123)),
        "cheetah_run": ((344, 67), (307, 48), (240, 38), (391, 47), (165, 123), (228, 95)),
        "walker_walk": ((612, 164), (344, 132), (395, 58), (428, 74), (125, 57), (604, 317)),
        "ball_in_cup_catch": ((913, 53), (772, 241), (338, 196), (607, 173), (198, 442), (957, 26)),
    },
    500_000: {
        "finger_spin": ((938, 103), (874, 151), (914, 107), (771, 203), (418, 382), (927, 43)),
        "cartpole_swingup": ((868, 10), (861, 30), (730, 152), None, (464, 50), (870, 7)),
        "reacher_easy": ((942, 71), (904, 94), (601, 135), None, (351, 483), (975, 5)),
        "cheetah_run": ((660, 96), (500, 91), (544, 50), (629, 74), (321, 104), (772, 60)),
        "walker_walk": ((921, 45), (906, 56), (858, 82), (865, 97), (293, 114), (964, 8)),
        "ball_in_cup_catch": ((963, 9), (958, 13), (810, 121), (959, 4), (352, 467), (979, 6)),
    },
}

#: ``PUBLISHED_SCORES[milestone][task][agent] = (mean, std)``; missing entries are absent.
PUBLISHED_SCORES: dict[int, dict[str, dict[str, tuple[float, float]]]] = {
    milestone: {
        task: {agent: score for agent, score in zip(PUBLISHED_AGENTS, scores, strict=True) if score is not None}
        for task, scores in rows.items()
    }
    for milestone, rows in _PUBLISHED_ROWS.items()
}

#: The six tasks of the PlaNet benchmark, named as in the reference curves.
PLANET_TASKS = ("cartpole_swingup", "reacher_easy", "cheetah_run", "finger_spin", "walker_walk", "ball_in_cup_catch")
#: Tasks of the SAC+GAARA paper's figures (Fig. 4-6); its ablations (Fig. 3, 7-9) run on cheetah_run.
PAPER_TASKS = ("cheetah_run", "walker_walk", "finger_spin")
#: The CPU-scale task (:mod:`sb3_gaara.envs.pixel_reach`).
CPU_TASK = "pixel_reach"


@dataclass(frozen=True)
class AgentSpec:
    """One column of the study: a ``GAARASAC`` variant with fixed extra arguments.

    :param label: name in ``curves.csv``, plots and tables
    :param variant: ``GAARASAC``'s ``variant``
    :param kwargs: further ``GAARASAC`` arguments
    :param description: where it comes from
    """

    label: str
    variant: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""


#: Agents by command-line key.
AGENTS: dict[str, AgentSpec] = {
    "gaara": AgentSpec("GAARA", "gaara", {}, "SAC+GAARA, comparison weight annealed 1 -> 0.5 (default)"),
    "sac_ae": AgentSpec("SAC+AE", "sac_ae", {}, "reconstruction only (SAC+AE baseline, paper Fig. 4-6)"),
    "contrastive": AgentSpec("Contrastive", "contrastive", {}, "comparison loss only, no decoder (CURL-like)"),
    "gaara_c1": AgentSpec(
        "GAARA (c=1)",
        "gaara",
        {"comparison_lambda": 1.0, "comparison_lambda_decay": 0.0},
        "fixed comparison weight 1 (paper Fig. 3)",
    ),
    "gaara_c05": AgentSpec(
        "GAARA (c=0.5)",
        "gaara",
        {"comparison_lambda": 0.5, "comparison_lambda_min": 0.5, "comparison_lambda_decay": 0.0},
        "fixed comparison weight 0.5 (paper Fig. 3)",
    ),
    "joint": AgentSpec("GAARA-joint", "joint", {}, "one joint reconstruction+comparison step (paper §5.1)"),
    "random_anchor": AgentSpec("GAARA-random-anchor", "random_anchor", {}, "random-crop anchor (paper §5.2, Fig. 8)"),
    "decoder_discriminator": AgentSpec(
        "GAARA-decoder-disc", "decoder_discriminator", {}, "decoder as discriminator (paper §5.3, Fig. 9; collapses)"
    ),
}
MAIN_AGENTS = ("gaara", "sac_ae", "contrastive")
ABLATION_AGENTS = ("gaara_c1", "gaara_c05", "joint", "random_anchor", "decoder_discriminator")
#: Table cell of a score that does not exist (an en dash, as in the published tables).
_MISSING = "\u2013"
#: Key and label of the random-policy baseline measured once per task.
RANDOM_AGENT = "random"
RANDOM_LABEL = "Random"

#: ``--preset``: the grid as ``(tasks, agents)`` blocks; settings the preset changes unless given. Besides the
#: grid's settings (``seeds``, ``env_steps``, ``eval_every``, ``eval_episodes``, ``checkpoint_every``,
#: ``milestones``), a preset may default the run-time settings of :data:`RUNTIME_DEFAULTS` and add
#: ``model_kwargs`` (``GAARASAC`` arguments of every run); explicit flags win over all of them.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "grid": [(PAPER_TASKS, MAIN_AGENTS), (("cheetah_run",), ABLATION_AGENTS)],
        "seeds": [0, 1, 2],
        "env_steps": 100_000,
    },
    "planet": {"grid": [(PLANET_TASKS, MAIN_AGENTS)], "seeds": [0, 1, 2], "env_steps": 500_000},
    "cpu-scale": {
        "grid": [((CPU_TASK,), MAIN_AGENTS)],
        "seeds": [0, 1],
        "env_steps": 5_000,
        "eval_every": 500,
        "eval_episodes": 10,
        "checkpoint_every": 2_500,
        "milestones": [2_500, 5_000],
    },
    # One job of ~9 minutes on one H100 that keeps nothing but curves.csv, the PNG and results.md: every run
    # side by side on the GPU (4 training runs + the random baseline), stopped at the time limit without the
    # checkpoints (model + ~750 MB replay buffer per run) that only a later slice could use.
    "gpu-10min": {
        "grid": [(("cheetah_run",), ("gaara", "sac_ae"))],
        "seeds": [0, 1],
        "env_steps": 100_000,
        "eval_every": 10_000,
        "eval_episodes": 10,
        "checkpoint_every": 1_000_000,
        "checkpoint_at_deadline": False,
        "workers": 5,
        "device": "cuda",
        # Leaves ~30 s of the 9 minutes for an evaluation begun just before the limit (it runs to its end),
        # the workers' exit and the reports.
        "time_limit": 510,
        "model_kwargs": {"cuda_graphs": True},
    },
}

#: Run-time settings and their values without a preset or flag (``time_limit`` None: no limit).
RUNTIME_DEFAULTS: dict[str, Any] = {"workers": 1, "device": "auto", "time_limit": None, "checkpoint_at_deadline": True}

#: ``GAARASAC`` arguments that change how fast a run computes, not what it computes (``cuda_graphs``: the
#: same update captured as CUDA graphs, eager on a CPU with identical results). Like ``device``, they are
#: left out of a run's identity, so a run checkpointed on a GPU can resume on a CPU, and they are given
#: again when a run resumes (the checkpoint's own value would win otherwise).
SPEED_ONLY_MODEL_KWARGS = frozenset({"cuda_graphs"})


@dataclass(frozen=True)
class TaskSpec:
    """How to build one task's environments and which ``GAARASAC`` settings suit it.

    :param name: name in the curves (``cheetah_run``, ``pixel_reach``)
    :param env_id: Gymnasium id
    :param env_kwargs: keyword arguments of the env
    :param frame_stack: frames stacked with ``VecFrameStack`` (3)
    :param model_kwargs: ``GAARASAC`` arguments that differ from its (paper) defaults
    """

    name: str
    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    frame_stack: int = 3
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)


#: ``GAARASAC`` settings of the CPU-scale task: 32 px crops of 40 px frames, small networks, batch 32.
CPU_SCALE_MODEL_KWARGS: dict[str, Any] = {
    "image_size": 32,
    "batch_size": 32,
    "learning_starts": 500,
    "policy_kwargs": {
        "net_arch": [64, 64],
        "features_extractor_kwargs": {"features_dim": 32, "num_layers": 2, "num_filters": 16},
    },
}


def resolve_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``pixel_reach``, a DMC task named like the reference curves
    (``cheetah_run``, ``ball_in_cup_catch``) or a ``dmc-<domain>-<task>`` id."""
    if name in (CPU_TASK, "PixelReach-v0"):
        from sb3_gaara.envs.pixel_reach import PIXEL_REACH_ID, register_pixel_reach

        register_pixel_reach()
        return TaskSpec(CPU_TASK, PIXEL_REACH_ID, {}, 3, CPU_SCALE_MODEL_KWARGS)
    from sb3_gaara.envs import DMC_TASKS, dmc_env_id, register_dmc_envs

    for domain, task in DMC_TASKS:
        if name in (f"{domain}_{task}", dmc_env_id(domain, task)):
            register_dmc_envs()
            return TaskSpec(f"{domain}_{task}", dmc_env_id(domain, task))
    raise ValueError(
        f"Unknown task {name!r}: use {CPU_TASK!r}, a DeepMind Control task named like the reference curves "
        f"(e.g. {', '.join(PLANET_TASKS)}) or a dmc-<domain>-<task> id."
    )


@dataclass(frozen=True)
class RunConfig:
    """Everything one run needs; picklable, so that it can be sent to a worker process."""

    task: TaskSpec
    agent: str
    seed: int
    env_steps: int
    eval_every: int
    eval_episodes: int
    checkpoint_every: int
    run_dir: str
    device: str = "auto"
    buffer_size: int | None = None
    deadline: float | None = None
    threads: int | None = None
    verbose: int = 0
    #: ``GAARASAC`` arguments of every run of the study, applied over the task's and the agent's
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: ``False``: a run stopped by ``deadline`` just stops (curve written, no model or replay buffer saved)
    checkpoint_at_deadline: bool = True

    def identity(self) -> dict[str, Any]:
        """Settings that must match to resume a run (everything but its length, device, deadline and the
        :data:`SPEED_ONLY_MODEL_KWARGS`)."""
        identity = {
            "task": dataclasses.asdict(self.task),
            "agent": self.agent,
            "agent_spec": dataclasses.asdict(AGENTS[self.agent]) if self.agent in AGENTS else None,
            "seed": self.seed,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes,
            "buffer_size": self.buffer_size,
        }
        model_kwargs = {key: value for key, value in self.model_kwargs.items() if key not in SPEED_ONLY_MODEL_KWARGS}
        if model_kwargs:  # only then: the config.json of runs without extra arguments stays as it was, resumable
            identity["model_kwargs"] = model_kwargs
        return identity


def run_directory(out: str | os.PathLike, task: str, agent: str, seed: int | None = None) -> Path:
    """``<out>/runs/<task>/<agent>/seed_<seed>`` (``<out>/runs/<task>/random`` for the random baseline)."""
    path = Path(out) / "runs" / task / agent
    return path if seed is None else path / f"seed_{seed}"


# ----------------------------------------------------------------------------------------------------
# Files of a run, each written to a temporary name and renamed, so that a kill never leaves half a file.


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as file:  # newline="": keep the csv module's line endings as they are
        file.write(text)
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    _write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def write_curve_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows with :data:`CURVE_COLUMNS` (written then renamed)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    _write_atomic(Path(path), text.getvalue())


def read_curve_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a curve file in :data:`CURVE_COLUMNS`, numbers parsed (``[]`` if the file is missing)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        missing = set(CURVE_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} lacks the columns {sorted(missing)} (expected {','.join(CURVE_COLUMNS)}).")
        for row in reader:
            rows.append(
                {
                    "step": int(float(row["step"])),
                    "episode": int(float(row["episode"])),
                    "episode_reward": float(row["episode_reward"]),
                    "env": row["env"],
                    "seed": int(float(row["seed"])),
                    "agent": row["agent"],
                }
            )
    return rows


# ----------------------------------------------------------------------------------------------------
# One run.

#: Set by SIGTERM / SIGINT in a run's process: the run checkpoints and stops at its next step.
_stop_requested = False


def _request_stop(signum: int, frame: Any) -> None:
    global _stop_requested
    _stop_requested = True


def make_train_env(task: TaskSpec, seed: int, eval_env: bool = False) -> Any:
    """The task's env as the RL Zoo builds it: ``make_vec_env`` (with ``Monitor``) and ``VecFrameStack``.

    The evaluation env is a separate instance seeded ``seed + 10_000``.
    """
    from sb3_gaara.envs import register_dmc_envs
    from sb3_gaara.envs.pixel_reach import register_pixel_reach
    from sb3_gaara.evaluation import make_eval_env

    # A spawned worker starts with gymnasium's registry only: register the ids (entry-point strings, cheap).
    register_pixel_reach()
    register_dmc_envs()
    return make_eval_env(task.env_id, dict(task.env_kwargs), task.frame_stack, seed + 10_000 if eval_env else seed)


def describe_device(device: Any) -> str:
    """``"cuda (NVIDIA H100 80GB HBM3)"`` or ``"cpu (16 cores)"``: what a reader needs to judge a run's speed."""
    import torch as th

    device = th.device(device)
    if device.type == "cuda":
        return f"{device} ({th.cuda.get_device_name(device)})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return f"{device} ({_count(cores, 'core')})"


def check_device(device: str) -> None:
    """Fail before any run starts if ``device`` cannot be used, rather than in every worker after minutes of setup."""
    import torch as th

    if device == "auto":  # SB3's word for "cuda if torch sees one, else cpu": always usable
        return
    try:
        wanted = th.device(device)
    except RuntimeError as error:
        raise SystemExit(f"--device {device!r} is not a torch device ({error}); use auto, cpu or cuda.") from error
    if wanted.type != "cuda":
        return
    count = th.cuda.device_count() if th.cuda.is_available() else 0
    if count == 0 or (wanted.index is not None and wanted.index >= count):
        raise SystemExit(
            f"--device {device} was asked (by a flag or the preset), but torch {th.__version__} sees "
            f"{_count(count, 'CUDA device')} (built for CUDA {th.version.cuda}). Run on a machine with an NVIDIA GPU "
            "and a CUDA build of torch, or pass --device cpu (or --device auto) to run the same grid on the CPU."
        )


class _RandomPolicy:
    """Uniform random actions, with ``predict``'s signature so that SB3's ``evaluate_policy`` can run it."""

    def __init__(self, action_space: Any, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False) -> Any:
        return np.stack([self.action_space.sample() for _ in range(len(observation))]), None


def evaluate_random_policy(task: TaskSpec, n_episodes: int, seed: int = 0) -> tuple[float, float]:
    """Mean and std of the return of a uniform random policy over ``n_episodes`` on the task's eval env."""
    from stable_baselines3.common.evaluation import evaluate_policy

    env = make_train_env(task, seed, eval_env=True)
    try:
        rewards, _ = evaluate_policy(
            _RandomPolicy(env.action_space, seed),  # type: ignore[arg-type]
            env,
            n_eval_episodes=n_episodes,
            return_episode_rewards=True,
        )
    finally:
        env.close()
    return float(np.mean(rewards)), float(np.std(rewards))


def run_random_baseline(task: TaskSpec, n_episodes: int, out: str | os.PathLike) -> str:
    """Measure the random policy once per task into ``runs/<task>/random/baseline.json``; ``"skipped"`` if done."""
    run_dir = run_directory(out, task.name, RANDOM_AGENT)
    path = run_dir / "baseline.json"
    done = _read_json(path)
    if done is not None and done.get("episodes", 0) >= n_episodes:
        return "skipped"
    run_dir.mkdir(parents=True, exist_ok=True)
    mean, std = evaluate_random_policy(task, n_episodes)
    _write_json(path, {"env": task.name, "agent": RANDOM_LABEL, "mean": mean, "std": std, "episodes": n_episodes})
    return "done"


def _checkpoint_callback_class() -> type:
    from stable_baselines3.common.callbacks import BaseCallback

    class StudyCheckpointCallback(BaseCallback):
        """Checkpoint every ``every`` environment steps; checkpoint and stop on SIGTERM, and at the deadline
        (there without the checkpoint if not ``save_at_deadline``: a one-shot job could not use it)."""

        def __init__(
            self, save: Any, action_repeat: int, every: int, deadline: float | None, save_at_deadline: bool = True
        ) -> None:
            super().__init__()
            self.save = save
            self.action_repeat = action_repeat
            self.every = every
            self.deadline = deadline
            self.save_at_deadline = save_at_deadline
            self.next_save = 0
            self.stopped = False
            self.saved_at_stop = False

        def _on_training_start(self) -> None:
            env_steps = self.num_timesteps * self.action_repeat
            self.next_save = (env_steps // self.every + 1) * self.every

        def _on_step(self) -> bool:
            env_steps = self.num_timesteps * self.action_repeat
            out_of_time = self.deadline is not None and time.time() >= self.deadline
            if _stop_requested or out_of_time:
                if _stop_requested or self.save_at_deadline:
                    self.save()
                    self.saved_at_stop = True
                self.stopped = True
                return False
            if env_steps >= self.next_save:
                self.save()
                self.next_save = (env_steps // self.every + 1) * self.every
            return True

    return StudyCheckpointCallback


def run_training(config: RunConfig) -> str:
    """Train and evaluate one run, resuming from its checkpoint; return ``"done"``, ``"skipped"`` or ``"stopped"``.

    ``"stopped"``: the deadline passed or a stop was requested; the run saved a checkpoint and resumes
    when called again. Without ``config.checkpoint_at_deadline``, a run stopped by the deadline saves
    only its curve and ``stopped.json`` (steps, wall time, device), and starts again from its last
    checkpoint, if any, or from scratch.
    """
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList
    from stable_baselines3.common.logger import configure

    from sb3_gaara.evaluation import EnvStepEvalCallback, Evaluation, get_action_repeat
    from sb3_gaara.gaara.gaara_sac import GAARASAC

    run_dir = Path(config.run_dir)
    done = _read_json(run_dir / "done.json")
    if done is not None and done["env_steps"] >= config.env_steps:
        return "skipped"
    pointer = _read_json(run_dir / "checkpoint.json")
    if done is not None and pointer is None:
        raise ValueError(
            f"{run_dir} finished at {done['env_steps']} environment steps and kept no replay buffer, so it cannot be "
            f"extended to {config.env_steps}. Use another --out directory, or delete the run directory to start it again."
        )
    if config.deadline is not None and time.time() >= config.deadline:
        return "stopped"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "stopped.json").unlink(missing_ok=True)  # the timing of an earlier session, no longer the latest
    identity = config.identity()
    stored = _read_json(run_dir / "config.json")
    if stored is not None and stored != json.loads(json.dumps(identity)):
        raise ValueError(
            f"{run_dir} holds a run with other settings ({stored}); it cannot be resumed with {identity}. "
            "Use another --out directory, or delete the run directory to start it again."
        )
    _write_json(run_dir / "config.json", identity)
    if config.threads is not None:
        th.set_num_threads(config.threads)

    agent = AGENTS[config.agent]
    task = config.task
    env = make_train_env(task, config.seed)
    eval_env = make_train_env(task, config.seed, eval_env=True)
    action_repeat = get_action_repeat(env)
    agent_steps = math.ceil(config.env_steps / action_repeat)

    history: list[Evaluation] = []
    wall_time = 0.0
    if pointer is not None:
        checkpoint = run_dir / pointer["dir"]
        speed_kwargs = {key: value for key, value in config.model_kwargs.items() if key in SPEED_ONLY_MODEL_KWARGS}
        model = GAARASAC.load(checkpoint / "model.zip", env=env, device=config.device, **speed_kwargs)
        model.load_replay_buffer(checkpoint / "replay_buffer.pkl")
        wall_time = float(pointer["wall_time_s"])
        history = [
            Evaluation(row["step"], row["episode_reward"], float(row.get("std", 0.0)), row["episode"])
            for row in _read_history(run_dir / "curve.csv")
            if row["step"] <= pointer["env_steps"]
        ]
    else:
        # Deep copies: SB3 edits policy_kwargs in place, which would change the task's settings for later runs.
        model_kwargs = copy.deepcopy({**task.model_kwargs, **agent.kwargs, **config.model_kwargs})
        if config.buffer_size is not None:
            model_kwargs["buffer_size"] = config.buffer_size
        # A buffer longer than the run only costs memory (and checkpoint size: SB3 pickles it whole).
        model_kwargs["buffer_size"] = min(model_kwargs.get("buffer_size", 100_000), agent_steps)
        model = GAARASAC("CnnPolicy", env, variant=agent.variant, seed=config.seed, device=config.device, **model_kwargs)
    device = describe_device(model.device)
    session = len(list((run_dir / "logs").glob("session_*"))) if (run_dir / "logs").exists() else 0
    formats = ["csv", "stdout"] if config.verbose >= 1 else ["csv"]
    model.set_logger(configure(str(run_dir / "logs" / f"session_{session}"), formats))

    def write_curve() -> None:
        _write_history(run_dir / "curve.csv", eval_callback.history, task.name, config.seed, agent.label)

    class WriteCurve(BaseCallback):
        def _on_step(self) -> bool:
            write_curve()
            return True

    def timing() -> dict[str, Any]:
        """Where the run is and how long it took (over all its sessions), for the run's json files."""
        elapsed = wall_time + time.time() - started
        return {
            "env_steps": model.num_timesteps * action_repeat,
            "num_timesteps": model.num_timesteps,
            "wall_time_s": elapsed,
            "device": device,
        }

    def save_checkpoint() -> None:
        env_steps = model.num_timesteps * action_repeat
        name = f"ckpt_{env_steps:09d}"
        tmp = run_dir / (name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save(tmp / "model.zip")
        model.save_replay_buffer(tmp / "replay_buffer.pkl")
        shutil.rmtree(run_dir / name, ignore_errors=True)
        os.replace(tmp, run_dir / name)
        write_curve()
        _write_json(run_dir / "checkpoint.json", {"dir": name, **timing()})
        for old in run_dir.glob("ckpt_*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    eval_callback = EnvStepEvalCallback(
        eval_env,
        eval_freq_env_steps=config.eval_every,
        n_eval_episodes=config.eval_episodes,
        action_repeat=action_repeat,
        history=history,
        callback_after_eval=WriteCurve(),
        verbose=config.verbose,
    )
    checkpoint_callback = _checkpoint_callback_class()(
        save_checkpoint, action_repeat, config.checkpoint_every, config.deadline, config.checkpoint_at_deadline
    )
    started = time.time()
    remaining = agent_steps - model.num_timesteps
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=CallbackList([eval_callback, checkpoint_callback]),
            reset_num_timesteps=pointer is None,
        )
    env.close()
    eval_env.close()
    if checkpoint_callback.stopped:
        if not checkpoint_callback.saved_at_stop:
            write_curve()  # every evaluation is written already; this covers a stop before the first one
            _write_json(run_dir / "stopped.json", timing())
        return "stopped"
    if not eval_callback.history or eval_callback.history[-1].env_steps < config.env_steps:
        # The last agent step may fall short of the next evaluation (env_steps not a multiple of eval_every).
        eval_callback.evaluate(during_rollout=False)
    write_curve()
    model.save(run_dir / "final_model.zip")
    _write_json(run_dir / "done.json", timing())
    # The replay buffer is only needed to resume; a finished run keeps its final model and curve.
    (run_dir / "checkpoint.json").unlink(missing_ok=True)
    for old in run_dir.glob("ckpt_*"):
        shutil.rmtree(old, ignore_errors=True)
    return "done"


def _write_history(path: Path, history: Sequence[Any], task: str, seed: int, label: str) -> None:
    """Curve rows of a run (plus a ``std`` column over its evaluation episodes, which ``curves.csv`` drops)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow([*CURVE_COLUMNS, "std"])
    for evaluation in history:
        row = [evaluation.env_steps, evaluation.training_episodes, evaluation.mean_reward, task, seed, label]
        writer.writerow([*row, evaluation.std_reward])
    _write_atomic(path, text.getvalue())


def _read_history(path: Path) -> list[dict[str, Any]]:
    rows = read_curve_csv(path)
    if rows:
        with path.open(newline="") as file:
            for row, raw in zip(rows, csv.DictReader(file), strict=True):
                row["std"] = float(raw.get("std") or 0.0)
    return rows


def _run_job(job: tuple[str, Any], out: str) -> str:
    kind, payload = job
    if kind == RANDOM_AGENT:
        task, n_episodes = payload
        return run_random_baseline(task, n_episodes, out)
    return run_training(payload)


_EXIT_CODES = {"done": 0, "stopped": 3, "skipped": 4}


def _worker(job: tuple[str, Any], out: str) -> None:
    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    status = _run_job(job, out)
    # The exit code tells the parent how the run ended; anything else is a failure.
    sys.exit(_EXIT_CODES[status])


def _log(message: str) -> None:
    print(message, flush=True)  # progress must show up in redirected logs while the study runs


def run_jobs(jobs: Sequence[tuple[str, Any]], out: str, workers: int, log: Any = _log) -> dict[str, int]:
    """Run the jobs, ``workers`` processes at a time (in this process if ``workers <= 1``); count outcomes."""
    counts: dict[str, int] = defaultdict(int)

    def name(job: tuple[str, Any]) -> str:
        kind, payload = job
        if kind == RANDOM_AGENT:
            return f"{payload[0].name}/{RANDOM_AGENT}"
        return f"{payload.task.name}/{payload.agent}/seed_{payload.seed}"

    if workers <= 1:
        previous = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
        signal.signal(signal.SIGTERM, _request_stop)
        signal.signal(signal.SIGINT, _request_stop)
        try:
            for job in jobs:
                if _stop_requested:
                    counts["not started"] += 1
                    continue
                start = time.time()
                status = _run_job(job, out)
                counts[status] += 1
                log(f"[study] {name(job)}: {status} ({time.time() - start:.0f} s)")
        finally:
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
        return dict(counts)

    # Spawned (not forked) workers: a fork of a process that has started torch's thread pools can hang.
    context = multiprocessing.get_context("spawn")
    pending = list(jobs)
    running: dict[Any, tuple[tuple[str, Any], float]] = {}
    stopping = False

    def forward_stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in running:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    previous = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    signal.signal(signal.SIGTERM, forward_stop)
    signal.signal(signal.SIGINT, forward_stop)
    try:
        while pending or running:
            while pending and len(running) < workers and not stopping:
                job = pending.pop(0)
                process = context.Process(target=_worker, args=(job, out))
                process.start()
                running[process] = (job, time.time())
            for process in list(running):
                if process.is_alive():
                    continue
                job, start = running.pop(process)
                status = {code: status for status, code in _EXIT_CODES.items()}.get(
                    process.exitcode, f"failed (exit code {process.exitcode})"
                )
                counts[status] += 1
                log(f"[study] {name(job)}: {status} ({time.time() - start:.0f} s)")
            if stopping and not running and pending:
                counts["not started"] += len(pending)
                pending.clear()
            time.sleep(0.2)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    return dict(counts)


# ----------------------------------------------------------------------------------------------------
# Reports: curves.csv, one PNG per task, results.md.


def collect_curves(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run's curve under ``<out>/runs``, sorted by env, agent, seed and step."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(out).glob("runs/*/*/seed_*/curve.csv")):
        rows.extend(read_curve_csv(path))
    return sorted(rows, key=lambda row: (row["env"], row["agent"], row["seed"], row["step"]))


def collect_random_baselines(out: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """``{task: (mean, std)}`` of the random-policy baselines under ``<out>/runs``."""
    baselines = {}
    for path in sorted(Path(out).glob(f"runs/*/{RANDOM_AGENT}/baseline.json")):
        data = json.loads(path.read_text())
        baselines[data["env"]] = (float(data["mean"]), float(data["std"]))
    return baselines


#: The settings of the last command that ran runs under ``--out`` (:func:`describe_settings` in ``results.md``).
STUDY_FILE = "study.json"

#: A run's files that hold its timing, latest state first.
_TIMING_FILES = ("done.json", "stopped.json", "checkpoint.json")


def collect_run_timings(out: str | os.PathLike) -> dict[tuple[str, str, int], dict[str, Any]]:
    """``{(env, agent label, seed): {"env_steps", "wall_time_s", "device", ...}}`` of the runs under ``<out>/runs``.

    From the run's latest state: ``done.json`` (finished), ``stopped.json`` (stopped by the deadline without
    a checkpoint) or ``checkpoint.json`` (stopped or interrupted after a checkpoint).
    """
    timings = {}
    for run_dir in sorted(Path(out).glob("runs/*/*/seed_*")):
        data = next((d for d in map(_read_json, (run_dir / n for n in _TIMING_FILES)) if d is not None), None)
        if data is None or "wall_time_s" not in data:
            continue
        agent = AGENTS[run_dir.parent.name].label if run_dir.parent.name in AGENTS else run_dir.parent.name
        timings[(run_dir.parent.parent.name, agent, int(run_dir.name.removeprefix("seed_")))] = data
    return timings


def aggregate_curves(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[tuple[int, float, float, int]]]:
    """``{(env, agent): [(step, mean, std, n_seeds), ...]}``: mean and (population) std over seeds at each step."""
    grouped: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        grouped[(row["env"], row["agent"])][int(row["step"])].append(float(row["episode_reward"]))
    return {
        key: [(step, float(np.mean(values)), float(np.std(values)), len(values)) for step, values in sorted(steps.items())]
        for key, steps in grouped.items()
    }


def score_at(rows: Iterable[Mapping[str, Any]], milestone: int, eval_every: int) -> float | None:
    """A run's score at ``milestone`` environment steps: its first evaluation in ``[milestone, milestone + eval_every)``.

    Evaluations land on the first agent step at or past each multiple of ``eval_every``, so the
    evaluation "at 100k" may sit a few environment steps (less than ``action_repeat * n_envs``) later.
    """
    candidates = [row for row in rows if milestone <= row["step"] < milestone + max(eval_every, 1)]
    if not candidates:
        return None
    return float(min(candidates, key=lambda row: row["step"])["episode_reward"])


def milestone_scores(
    rows: Iterable[Mapping[str, Any]], milestones: Sequence[int], eval_every: int
) -> dict[int, dict[str, dict[str, list[float]]]]:
    """``{milestone: {env: {agent: [score of each seed that reached it]}}}``."""
    by_run: dict[tuple[str, str, int], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_run[(row["env"], row["agent"], row["seed"])].append(row)
    scores: dict[int, dict[str, dict[str, list[float]]]] = {m: defaultdict(lambda: defaultdict(list)) for m in milestones}
    for (env, agent, _), run_rows in sorted(by_run.items()):
        for milestone in milestones:
            score = score_at(run_rows, milestone, eval_every)
            if score is not None:
                scores[milestone][env][agent].append(score)
    return scores


def format_score(mean: float, std: float) -> str:
    """``"901±104"`` (DrQ's table style); one decimal below 100 in magnitude, so small returns stay readable."""
    if abs(mean) >= 100 or abs(std) >= 100:
        return f"{mean:.0f}±{std:.0f}"
    return f"{mean:.1f}±{std:.1f}"


def results_markdown(
    rows: Sequence[Mapping[str, Any]],
    milestones: Sequence[int],
    eval_every: int,
    agents: Sequence[str] | None = None,
    random_baselines: Mapping[str, tuple[float, float]] | None = None,
    n_seeds: int | None = None,
    eval_episodes: int = 10,
    timings: Mapping[tuple[str, str, int], Mapping[str, Any]] | None = None,
    max_step: int | None = None,
    settings_line: str | None = None,
) -> str:
    """Markdown tables of our scores (mean±std over seeds) at each milestone next to the published ones, then
    where each run got (:func:`last_evaluation_markdown`).

    :param agents: our agent labels, in column order (default: as found in ``rows``)
    :param n_seeds: seeds per run; a cell averaging fewer shows ``(n=k)``
    :param timings: :func:`collect_run_timings`; ``max_step``: the runs' planned length; ``settings_line``:
        :func:`describe_settings` of the study
    """
    agents = list(agents) if agents is not None else sorted({row["agent"] for row in rows})
    tasks = sorted({row["env"] for row in rows} | set(random_baselines or {}))
    scores = milestone_scores(rows, milestones, eval_every)
    lines = [
        "# Results",
        "",
        "Return after the given number of *environment* steps (simulator steps after action repeat), "
        f"mean of {eval_episodes} evaluation episodes of the deterministic policy on the center crop; "
        "mean ± std over seeds"
        + (f" ({n_seeds} per run; fewer shown as n=k)" if n_seeds else "")
        + ". Published: DrQ paper, Table 1 (10 seeds). Random: a uniform random policy, mean ± std over its episodes.",
        "",
    ]
    for milestone in milestones:
        published = PUBLISHED_SCORES.get(milestone, {})
        has_published = any(task in published for task in tasks)
        columns = [f"{agent} (ours)" for agent in agents]
        if random_baselines:
            columns.append(RANDOM_LABEL)
        if has_published:
            columns += list(PUBLISHED_AGENTS)
        lines.append(f"| {_format_steps(milestone)} env steps | " + " | ".join(columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for task in tasks:
            cells = []
            for agent in agents:
                values = scores[milestone].get(task, {}).get(agent, [])
                if not values:
                    cells.append(_MISSING)
                    continue
                cell = format_score(float(np.mean(values)), float(np.std(values)))
                if n_seeds is not None and len(values) < n_seeds:
                    cell += f" (n={len(values)})"
                cells.append(cell)
            if random_baselines:
                baseline = random_baselines.get(task)
                cells.append(format_score(*baseline) if baseline else _MISSING)
            if has_published:
                task_scores = published.get(task, {})
                cells += [format_score(*task_scores[a]) if a in task_scores else _MISSING for a in PUBLISHED_AGENTS]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += last_evaluation_markdown(rows, agents, timings or {}, max_step, settings_line)
    return "\n".join(lines)


def last_evaluation_markdown(
    rows: Sequence[Mapping[str, Any]],
    agents: Sequence[str],
    timings: Mapping[tuple[str, str, int], Mapping[str, Any]],
    max_step: int | None = None,
    settings_line: str | None = None,
) -> list[str]:
    """Lines of ``results.md`` that say where the runs got: a run stopped by the time limit misses the later
    milestones, and a reader should see how far it came, what it scored there and how fast it went."""
    by_run: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = defaultdict(dict)
    for row in rows:
        latest = by_run[(row["env"], row["agent"])].get(row["seed"])
        if latest is None or row["step"] > latest["step"]:
            by_run[(row["env"], row["agent"])][row["seed"]] = row
    if not by_run:
        return []
    planned = f" (planned: {_format_steps(max_step)})" if max_step else ""
    lines = [
        "## Last evaluation of each run",
        "",
        f"Environment steps of each seed's last evaluation{planned}, the return there (mean ± std over seeds), "
        "and each run's wall time (training and evaluations, summed over resumed sessions; "
        "env steps/s: mean over seeds).",
        "",
        "| task | agent | seeds | last evaluation (env steps) | return | wall time (s) | env steps/s |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {agent: i for i, agent in enumerate(agents)}
    for env, agent in sorted(by_run, key=lambda key: (key[0], order.get(key[1], len(order)), key[1])):
        seeds = sorted(by_run[(env, agent)])
        last = [by_run[(env, agent)][seed] for seed in seeds]
        rewards = [float(row["episode_reward"]) for row in last]
        runs = [timings.get((env, agent, seed)) for seed in seeds]
        walls = [_MISSING if run is None else f"{run['wall_time_s']:.0f}" for run in runs]
        speeds = [run["env_steps"] / run["wall_time_s"] for run in runs if run is not None and run["wall_time_s"] > 0]
        cells = [
            ", ".join(map(str, seeds)),
            ", ".join(_format_steps(row["step"]) for row in last),
            format_score(float(np.mean(rewards)), float(np.std(rewards))),
            ", ".join(walls),
            f"{np.mean(speeds):.0f}" if speeds else _MISSING,
        ]
        lines.append(f"| {env} | {agent} | " + " | ".join(cells) + " |")
    lines.append("")
    devices = sorted({str(run["device"]) for run in timings.values() if run.get("device")})
    if devices:
        lines.append("Device: " + "; ".join(devices) + ".")
    if settings_line:
        lines.append(f"Study: {settings_line}.")
    if devices or settings_line:
        lines.append("")
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _format_steps(steps: int) -> str:
    if steps and steps % 1_000_000 == 0:
        return f"{steps // 1_000_000}M"
    if steps >= 1000 and steps % 100 == 0:
        return f"{steps / 1000:g}k"
    return str(steps)


def load_reference(path: str | os.PathLike | None) -> list[dict[str, Any]]:
    """Rows of a reference curve file (DrQ's ``dmc_planet_bench.csv``); ``[]`` without a path."""
    return read_curve_csv(path) if path is not None else []


def default_reference_path() -> Path | None:
    """``../shared/reference/drq_planet_bench.csv`` or ``shared/reference/...`` seen from the working directory, if present."""
    for candidate in (Path("../shared/reference/drq_planet_bench.csv"), Path("shared/reference/drq_planet_bench.csv")):
        if candidate.exists():
            return candidate
    return None


#: Colours of agents by label; the same name (ours or published) gets the same colour.
_AGENT_COLORS = {
    "GAARA": "tab:blue",
    "SAC+AE": "tab:orange",
    "Contrastive": "tab:green",
    "CURL": "tab:olive",
    "DrQ": "black",
    "SLAC": "tab:purple",
    "PlaNet": "tab:brown",
    "SAC from state": "tab:gray",
}
_SPARE_COLORS = ("tab:red", "tab:pink", "tab:cyan", "gold", "navy", "lime", "teal", "maroon")
_PUBLISHED_MARKERS = dict(zip(PUBLISHED_AGENTS, "osD^v*", strict=True))


def plot_task(
    task: str,
    ours: Mapping[str, Sequence[tuple[int, float, float, int]]],
    path: str | os.PathLike,
    reference: Mapping[str, Sequence[tuple[int, float, float, int]]] | None = None,
    published: Mapping[int, Mapping[str, tuple[float, float]]] | None = None,
    random_baseline: tuple[float, float] | None = None,
    max_step: int | None = None,
    eval_episodes: int = 10,
) -> None:
    """Learning curves of one task: our agents (solid, mean ± std over seeds), reference curves (dashed,
    mean ± std over their seeds), published scores (markers with ± std bars beside their milestone) and
    the random policy (dotted)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    spare = iter(_SPARE_COLORS)
    colors: dict[str, str] = {}

    def color_of(agent: str) -> str:
        if agent not in colors:
            colors[agent] = _AGENT_COLORS.get(agent) or next(spare, "tab:gray")
        return colors[agent]

    horizon = max_step or max((points[-1][0] for points in ours.values() if points), default=0)
    for agent, points in ours.items():
        steps, means, stds, counts = (np.array(values) for values in zip(*points, strict=True))
        label = f"{agent} (ours, {_count(int(counts.max()), 'seed')})"
        marker = "o" if len(steps) == 1 else None  # a single evaluation is still visible
        axes.plot(steps, means, color=color_of(agent), label=label, linewidth=2, marker=marker)
        axes.fill_between(steps, means - stds, means + stds, color=color_of(agent), alpha=0.2)
    for agent, points in (reference or {}).items():
        kept = [point for point in points if not horizon or point[0] <= horizon]
        if not kept:
            continue
        steps, means, stds, counts = (np.array(values) for values in zip(*kept, strict=True))
        label = f"{agent} (reference curves, {_count(int(counts.max()), 'seed')})"
        marker = "o" if len(steps) == 1 else None
        axes.plot(steps, means, color=color_of(agent), linestyle="--", linewidth=1.2, label=label, marker=marker)
        axes.fill_between(steps, means - stds, means + stds, color=color_of(agent), alpha=0.07)
    # Published scores sit at their milestone, spread sideways so that their error bars do not overlap.
    visible = {m: scores for m, scores in (published or {}).items() if not horizon or m <= horizon}
    shown = [agent for agent in PUBLISHED_AGENTS if any(agent in scores for scores in visible.values())]
    spread = 0.012 * (horizon or 1)
    for i, agent in enumerate(shown):
        marks = [(m, scores[agent]) for m, scores in visible.items() if agent in scores]
        offset = (i - (len(shown) - 1) / 2) * spread
        axes.errorbar(
            [m + offset for m, _ in marks],
            [score[0] for _, score in marks],
            yerr=[score[1] for _, score in marks],
            fmt=_PUBLISHED_MARKERS[agent],
            color=color_of(agent),
            capsize=2,
            markersize=5,
            elinewidth=1,
            alpha=0.85,
            label=f"{agent} (published)",
        )
    if random_baseline is not None:
        axes.axhline(random_baseline[0], color="gray", linestyle=":", label=RANDOM_LABEL)
    axes.set_title(f"{task}: evaluation return ({_count(eval_episodes, 'episode')}, deterministic policy)")
    axes.set_xlabel("environment steps (after action repeat)")
    axes.set_ylabel("return")
    if horizon:
        axes.set_xlim(0, horizon + max(0.02 * horizon, (len(shown) / 2 + 1) * spread))
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="upper left", ncol=2 if len(ours) + len(shown) > 6 else 1)
    figure.tight_layout()
    figure.savefig(path)


def write_reports(
    out: str | os.PathLike,
    milestones: Sequence[int],
    eval_every: int,
    reference_path: str | os.PathLike | None = None,
    agents: Sequence[str] | None = None,
    n_seeds: int | None = None,
    max_step: int | None = None,
    eval_episodes: int = 10,
) -> dict[str, Path]:
    """Write ``curves.csv``, ``<task>.png`` and ``results.md`` from the run directories under ``out`` (and
    the settings of the last command that ran them, ``study.json``)."""
    out = Path(out)
    rows = collect_curves(out)
    write_curve_csv(out / "curves.csv", rows)
    baselines = collect_random_baselines(out)
    ours = aggregate_curves(rows)
    reference = aggregate_curves(load_reference(reference_path))
    labels = list(agents) if agents is not None else sorted({row["agent"] for row in rows})
    written = {"curves": out / "curves.csv"}
    for task in sorted({row["env"] for row in rows}):
        task_curves = {label: ours[(task, label)] for label in labels if (task, label) in ours}
        task_reference = {agent: points for (env, agent), points in reference.items() if env == task}
        published = {m: scores[task] for m, scores in PUBLISHED_SCORES.items() if task in scores}
        path = out / f"{task}.png"
        plot_task(task, task_curves, path, task_reference, published, baselines.get(task), max_step, eval_episodes)
        written[task] = path
    timings = collect_run_timings(out)
    study = _read_json(out / STUDY_FILE)
    settings_line = describe_settings(study["settings"]) if study is not None else None
    results = results_markdown(
        rows, milestones, eval_every, labels, baselines, n_seeds, eval_episodes, timings, max_step, settings_line
    )
    (out / "results.md").write_text(results)
    written["results"] = out / "results.md"
    return written


# ----------------------------------------------------------------------------------------------------
# Command line.


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sb3_gaara.study",
        description="Train a grid of tasks x agents x seeds, evaluated every --eval-every environment steps, "
        "and write curves.csv, one PNG per task and results.md. Rerun the same command to resume.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="a predefined grid and settings (explicit flags win)")
    parser.add_argument("--cpu-scale", action="store_true", help="same as --preset cpu-scale: PixelReach, minutes on a CPU")
    parser.add_argument("--tasks", nargs="+", help=f"e.g. cheetah_run walker_walk, or {CPU_TASK}")
    parser.add_argument(
        "--variants",
        "--algos",
        dest="agents",
        nargs="+",
        help=f"agents: {', '.join(AGENTS)}; 'main' = {' '.join(MAIN_AGENTS)}, 'ablations', 'all'",
    )
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--env-steps", type=int, help="environment steps per run, after action repeat (100000)")
    parser.add_argument("--eval-every", type=int, help="evaluate every this many environment steps (10000)")
    parser.add_argument("--eval-episodes", type=int, help="episodes per evaluation (10)")
    parser.add_argument(
        "--random-episodes", type=int, default=30, help="episodes of the random-policy baseline per task (0: none)"
    )
    parser.add_argument("--checkpoint-every", type=int, help="checkpoint every this many environment steps (50000)")
    parser.add_argument("--milestones", nargs="+", type=int, help="environment steps of the results table (100000 500000)")
    parser.add_argument("--buffer-size", type=int, help="replay capacity in agent steps (default: 100k, capped by the run)")
    parser.add_argument("--workers", type=int, help="runs in parallel, one process each (default 1: in this process)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (1: fastest for small CPU nets)")
    parser.add_argument("--device", help="torch device of the runs (auto, cpu, cuda; default auto)")
    parser.add_argument(
        "--time-limit", type=float, help="seconds; runs checkpoint and stop after it, rerun to resume (0: no limit)"
    )
    parser.add_argument(
        "--checkpoint-at-deadline",
        action=argparse.BooleanOptionalAction,
        help="whether a run stopped by --time-limit saves model and replay buffer to resume (default: yes); "
        "without, it keeps only its curve",
    )
    parser.add_argument(
        "--cuda-graphs",
        action=argparse.BooleanOptionalAction,
        help="GAARASAC(cuda_graphs=...): the update as CUDA graphs on a GPU, same results (default: off)",
    )
    parser.add_argument("--reference", help="reference curves CSV (DrQ's dmc_planet_bench.csv); default: found nearby")
    parser.add_argument("--out", default="study", help="output directory (default: ./study)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite curves.csv, PNGs and results.md")
    parser.add_argument("--verbose", type=int, default=0)
    return parser.parse_args(argv)


def _expand_agents(names: Sequence[str]) -> list[str]:
    agents: list[str] = []
    for name in names:
        group = {"main": MAIN_AGENTS, "ablations": ABLATION_AGENTS, "all": tuple(AGENTS)}.get(name, (name,))
        for agent in group:
            if agent not in AGENTS:
                raise SystemExit(f"Unknown agent {agent!r}; choose from {', '.join(AGENTS)}, main, ablations, all.")
            if agent not in agents:
                agents.append(agent)
    return agents


def build_grid(args: argparse.Namespace) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The ``(task, agent)`` pairs and the settings of the study, from a preset and explicit flags."""
    preset_name = "cpu-scale" if args.cpu_scale else args.preset
    preset = PRESETS.get(preset_name or "", {})
    if args.tasks or args.agents or not preset:
        tasks = args.tasks or [task for block_tasks, _ in preset.get("grid", [(PAPER_TASKS, ())]) for task in block_tasks]
        agents = _expand_agents(args.agents or list(MAIN_AGENTS))
        pairs = [(task, agent) for task in dict.fromkeys(tasks) for agent in agents]
    else:
        pairs = list(dict.fromkeys((task, agent) for tasks, agents in preset["grid"] for task in tasks for agent in agents))
    settings = {
        "seeds": args.seeds or preset.get("seeds", [0]),
        "env_steps": args.env_steps or preset.get("env_steps", 100_000),
        "eval_every": args.eval_every or preset.get("eval_every", 10_000),
        "eval_episodes": args.eval_episodes or preset.get("eval_episodes", 10),
    }
    settings["checkpoint_every"] = args.checkpoint_every or preset.get("checkpoint_every", 50_000)
    for key, default in RUNTIME_DEFAULTS.items():
        value = getattr(args, key)  # None: not given (0 is a value: --time-limit 0 lifts a preset's limit)
        settings[key] = value if value is not None else preset.get(key, default)
    model_kwargs = dict(preset.get("model_kwargs", {}))
    if args.cuda_graphs is not None:
        model_kwargs["cuda_graphs"] = args.cuda_graphs
    settings["model_kwargs"] = model_kwargs
    if args.milestones:
        milestones = args.milestones
    else:
        # The preset's (or the papers') milestones that the runs reach, and the runs' end.
        reached = [m for m in preset.get("milestones", PAPER_MILESTONES) if m <= settings["env_steps"]]
        milestones = sorted({*reached, settings["env_steps"]})
    settings["milestones"] = sorted(milestones)
    for key in ("env_steps", "eval_every", "eval_episodes", "checkpoint_every"):
        if settings[key] < 1:
            raise SystemExit(f"--{key.replace('_', '-')} must be positive, got {settings[key]}.")
    if settings["time_limit"] is not None and settings["time_limit"] < 0:
        raise SystemExit(f"--time-limit must be positive (0: no limit), got {settings['time_limit']}.")
    return pairs, settings


def describe_settings(settings: Mapping[str, Any]) -> str:
    """One line of the settings that explain a study's speed and what its runs keep; printed and in ``results.md``."""
    limit = settings.get("time_limit")
    at_deadline = "checkpoint" if settings.get("checkpoint_at_deadline", True) else "no checkpoint"
    parts = [
        f"device {settings.get('device', 'auto')}",
        f"{_count(settings.get('workers', 1), 'worker')}",
        f"time limit {limit:g} s ({at_deadline} at the limit)" if limit else "no time limit",
        f"checkpoints every {_format_steps(settings['checkpoint_every'])} env steps",
    ]
    if settings.get("model_kwargs"):
        parts.append("GAARASAC " + ", ".join(f"{key}={value!r}" for key, value in settings["model_kwargs"].items()))
    return "; ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    pairs, settings = build_grid(args)
    # The limit counts from here: the whole command, setup and reports included, has to fit a job's slot.
    started = time.time()
    deadline = started + settings["time_limit"] if settings["time_limit"] else None
    if not args.report_only:
        check_device(settings["device"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = args.threads
    tasks = {name: resolve_task(name) for name in dict.fromkeys(task for task, _ in pairs)}
    labels = list(dict.fromkeys(AGENTS[agent].label for _, agent in pairs))
    counts: dict[str, int] = {}
    if not args.report_only:
        jobs: list[tuple[str, Any]] = []
        if args.random_episodes > 0:
            jobs += [(RANDOM_AGENT, (task, args.random_episodes)) for task in tasks.values()]
        n_baselines = len(jobs)
        for seed in settings["seeds"]:
            for task_name, agent in pairs:
                task = tasks[task_name]
                config = RunConfig(
                    task=task,
                    agent=agent,
                    seed=seed,
                    env_steps=settings["env_steps"],
                    eval_every=settings["eval_every"],
                    eval_episodes=settings["eval_episodes"],
                    checkpoint_every=settings["checkpoint_every"],
                    run_dir=str(run_directory(out, task.name, agent, seed)),
                    device=settings["device"],
                    buffer_size=args.buffer_size,
                    deadline=deadline,
                    threads=threads,
                    verbose=args.verbose,
                    model_kwargs=settings["model_kwargs"],
                    checkpoint_at_deadline=settings["checkpoint_at_deadline"],
                )
                jobs.append(("train", config))
        _log(
            f"[study] {len(jobs) - n_baselines} runs ({len(pairs)} task x agent pairs x {len(settings['seeds'])} seeds) "
            f"+ {n_baselines} random baselines, {threads} torch thread(s) per run, out={out}"
        )
        _log(
            f"[study] tasks {' '.join(tasks)}; agents {' '.join(dict.fromkeys(agent for _, agent in pairs))}; "
            f"seeds {' '.join(map(str, settings['seeds']))}; {_format_steps(settings['env_steps'])} env steps, "
            f"evaluated every {_format_steps(settings['eval_every'])} over {_count(settings['eval_episodes'], 'episode')}; "
            f"milestones {' '.join(_format_steps(m) for m in settings['milestones'])}"
        )
        _log(f"[study] {describe_settings(settings)}")
        # For results.md, also when --report-only rewrites it later with other (or no) flags.
        _write_json(out / STUDY_FILE, {"settings": settings})
        counts = run_jobs(jobs, str(out), settings["workers"])
    reference = args.reference or default_reference_path()
    written = write_reports(
        out,
        settings["milestones"],
        settings["eval_every"],
        reference_path=reference,
        agents=labels,
        n_seeds=len(settings["seeds"]),
        max_step=settings["env_steps"],
        eval_episodes=settings["eval_episodes"],
    )
    print(f"[study] {dict(counts)} in {time.time() - started:.0f} s; wrote " + ", ".join(str(p) for p in written.values()))
    unfinished = counts.get("stopped", 0) + counts.get("not started", 0)
    if unfinished:
        note = "" if settings["checkpoint_at_deadline"] else " (those stopped without a checkpoint start over)"
        print(f"[study] {unfinished} run(s) unfinished: run the same command again to resume them{note}.")
    failed = sum(n for status, n in counts.items() if status.startswith("failed"))
    # 3: nothing failed but runs remain, so a driver can repeat the command until it returns 0.
    return 1 if failed else 3 if unfinished else 0


if __name__ == "__main__":
    sys.exit(main())

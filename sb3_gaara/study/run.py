"""One run of the study: train one agent on one task with one seed, evaluated in environment steps,
checkpointed and resumable; and the random-policy baseline of a task.

A run directory (:func:`run_directory`) holds ``config.json`` (the run's identity), ``curve.csv``, the SB3
logs of each session, ``sessions.jsonl`` (one line per session: where it started, on which host and process),
``progress.json`` (where the session is, rewritten every few seconds), the latest checkpoint (``ckpt_<env steps>/``
with model, replay buffer and ``state.pkl``, named by ``checkpoint.json``), and once finished ``final_model.zip``
and ``done.json``; a run stopped by the deadline without a checkpoint leaves ``stopped.json``. While a process trains
the run it holds an exclusive lock on ``run.lock`` (:func:`run_lock`), so that two study commands given the same
``--out`` (or a retried Ray task beside the first) never train one run at once: the second finds it ``"busy"``.

A resumed run continues exactly where its checkpoint was taken: checkpoints are taken at the one point of SB3's
off-policy loop where the model, the replay buffer and the envs agree (the last transition stored and trained on,
the next not yet collected), and ``state.pkl`` keeps the random-number generators and the training and evaluation
envs themselves (pickled mid-episode). On the CPU a run killed and resumed writes the curve of a run that never
stopped, bit for bit. An env that cannot be pickled is rebuilt instead: the run then restarts its current episode,
statistically, not bitwise, the run it would have been (``checkpoint.json`` says ``"exact": false``).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import math
import os
import pickle
import random
import shutil
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import numpy as np
import torch as th
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_gaara.algorithms import BY_ZOO_NAME
from sb3_gaara.common.durability import atomic_file
from sb3_gaara.common.env_steps import env_steps, get_action_repeat
from sb3_gaara.common.training import CheckedTraining
from sb3_gaara.envs import register_dmc_envs
from sb3_gaara.envs.pixel_reach import register_pixel_reach
from sb3_gaara.evaluation import EnvStepEvalCallback, Evaluation, make_eval_env
from sb3_gaara.study.catalogue import (
    AGENT_DEPENDENT_TASK_FIELDS,
    AGENTS,
    ALGORITHM_TASK_SETTINGS,
    CPU_TASK,
    RANDOM_AGENT,
    RANDOM_LABEL,
    SPEED_ONLY_MODEL_KWARGS,
    TaskSpec,
    check_eval_planners,
    planner_eval_label,
    render_size_kwargs,
)
from sb3_gaara.study.report import format_count, read_json, read_run_curve, write_json, write_run_curve

if TYPE_CHECKING:
    from sb3_gaara.study.scheduling import StopRequest


#: A checkpoint's random-number generators and envs (beside ``model.zip`` and ``replay_buffer.pkl``)
STATE_FILE = "state.pkl"
#: One JSON line per session of a run (start, host, process, the checkpoint it resumed from)
SESSIONS_FILE = "sessions.jsonl"
#: Where a session is (environment steps, speed, host, process); rewritten every :data:`PROGRESS_EVERY_S` seconds
PROGRESS_FILE = "progress.json"
PROGRESS_EVERY_S = 5.0
#: The file a process holds locked while it trains a run (:func:`run_lock`)
LOCK_FILE = "run.lock"

#: How the runs' envs stack frames (part of a run's identity: runs of before, stacked by ``VecFrameStack`` with black
#: frames at reset, do not resume with the papers' stacking)
FRAME_STACKING = "first frame repeated at reset"


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
    #: arguments of every run's algorithm, applied over the task's and the agent's (speed-only ones, such as
    #: ``cuda_graphs``, only where the algorithm takes them: ``speed_options_for``)
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: ``False``: a run stopped by ``deadline`` just stops (curve written, no model or replay buffer saved)
    checkpoint_at_deadline: bool = True
    #: ``torch.backends.cudnn.benchmark`` while the run trains (speed only: not part of its identity)
    cudnn_benchmark: bool = False
    #: ``torch.backends.cuda.matmul.allow_tf32`` while the run trains (a precision setting of the GPU's matrix
    #: products; like the device, not part of its identity)
    tf32: bool = False
    #: evaluations in a process of their own (``EnvStepEvalCallback(asynchronous=True)``; the same results, so like
    #: the device not part of its identity)
    async_eval: bool = False
    #: Dreamer's planners (``"cem"``, ``"dreamer_mpc"``) each evaluation of a Dreamer run acting by its actor also
    #: evaluates, on the same model at the same step, with overrides of their settings (``PLANNER_DEFAULTS``): curves of
    #: their own in ``curve.csv`` (:func:`~sb3_gaara.study.catalogue.planner_eval_label`), computed by
    #: :func:`evaluate_planner`, which leaves the actor's run as it would have been. So, like the device, not part of
    #: the run's identity: a run resumed with them records them from then on. The evaluations then run here, even with
    #: ``async_eval`` (the planners must see the model of the evaluation's step).
    eval_planners: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: the planners evaluate at the evaluations whose environment step is a multiple of this (``None``: at every one):
    #: a planner's evaluation costs several of the actor's on a CPU
    eval_planners_every: int | None = None

    def __post_init__(self) -> None:
        check_eval_planners(self.agent, self.eval_planners)
        every = self.eval_planners_every
        if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"eval_planners_every must be a positive number of environment steps or None, got {every!r}.")
        if every is not None and every % self.eval_every:
            raise ValueError(
                f"eval_planners_every={every} is not a multiple of eval_every={self.eval_every}: the planners evaluate "
                "at some of the actor's evaluations, so use a multiple of it."
            )

    def run_task(self) -> TaskSpec:
        """The task as the run's agent runs it (:meth:`TaskSpec.for_agent`): its frames, render size and settings; on a
        DeepMind Control task, under the task's settings, those its algorithm's authors set for the task
        (:data:`ALGORITHM_TASK_SETTINGS`: DrQ-v2's task files)."""
        if self.agent not in AGENTS:
            return self.task
        agent = AGENTS[self.agent]
        task = self.task.for_agent(agent)
        published = ALGORITHM_TASK_SETTINGS.get(agent.algorithm)
        if published is None or task.name == CPU_TASK:
            return task
        return replace(task, model_kwargs={**published(task.name), **task.model_kwargs})

    def identity(self) -> dict[str, Any]:
        """Settings that must match to resume a run (everything but its length, device, deadline and the
        :data:`SPEED_ONLY_MODEL_KWARGS`). The task is :meth:`run_task` without what only other agents use: the task of
        an agent that runs it as it is reads as before these fields existed."""
        task = {key: value for key, value in asdict(self.run_task()).items() if key not in AGENT_DEPENDENT_TASK_FIELDS}
        identity = {
            "task": task,
            "agent": self.agent,
            "agent_spec": asdict(AGENTS[self.agent]) if self.agent in AGENTS else None,
            "seed": self.seed,
            "eval_every": self.eval_every,
            "eval_episodes": self.eval_episodes,
            "buffer_size": self.buffer_size,
            "frame_stacking": FRAME_STACKING,
        }
        model_kwargs = {key: value for key, value in self.model_kwargs.items() if key not in SPEED_ONLY_MODEL_KWARGS}
        if model_kwargs:  # only then: the config.json of runs without extra arguments stays as it was, resumable
            identity["model_kwargs"] = model_kwargs
        return identity

    def resumes(self, stored: Mapping[str, Any]) -> bool:
        """Whether a run directory's ``config.json`` (``stored``) is this run's :meth:`identity`. The agent's
        ``description`` is prose, not a setting: a run resumes across a change of its wording."""

        def settings(identity: Mapping[str, Any]) -> Any:
            settings = json.loads(json.dumps(identity))  # as stored: tuples become lists
            spec = settings.get("agent_spec")
            if isinstance(spec, dict):
                spec.pop("description", None)
                # Fields added since runs were first stored, at their defaults: runs stored before resume.
                for key, default in AGENT_SPEC_DEFAULTS.items():
                    if spec.get(key, default) == default:
                        spec.pop(key, None)
            return settings

        return bool(settings(stored) == settings(self.identity()))


#: ``AgentSpec`` fields added after runs were first stored, and their defaults (left out when comparing identities)
AGENT_SPEC_DEFAULTS: dict[str, Any] = {
    "algorithm": "gaara_sac",
    "render_at_crop_size": False,
    "frame_stack": None,
    "render_size": None,
    "action_repeat": None,
}


def git_commit() -> str:
    """The repository's commit, ``+ local changes`` if tracked files differ from it (``unknown`` outside git)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
        changes = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit.stdout.strip() + (" + local changes" if changes.stdout.strip() else "")


def run_directory(out: str | os.PathLike, task: str, agent: str, seed: int | None = None) -> Path:
    """``<out>/runs/<task>/<agent>/seed_<seed>`` (``<out>/runs/<task>/random`` for the random baseline)."""
    path = Path(out) / "runs" / task / agent
    return path if seed is None else path / f"seed_{seed}"


def make_train_env(task: TaskSpec, seed: int, eval_env: bool = False, render_size: int | None = None) -> VecEnv:
    """The task's env as the RL Zoo builds it from the packaged hyper-parameters: ``make_vec_env`` (with ``Monitor``)
    of the env with ``frame_stack=task.frame_stack``, which stacks as the papers' code does (oldest frame first, the
    first frame repeated at reset; every task of the package, ``dmc-*`` and ``PixelReach-v0``, takes that keyword).

    The evaluation env is a separate instance seeded ``seed + 10_000``. ``render_size``: render the frames at this
    size instead of the task's (DrQ's 84 px renders). A run builds the envs of its :meth:`RunConfig.run_task`, whose
    ``frame_stack`` and ``env_kwargs`` are the agent's (SLAC: single 64 px frames; Dreamer: also at action repeat 2).
    """
    # A spawned worker starts with gymnasium's registry only: register the ids (entry-point strings, cheap).
    register_pixel_reach()
    register_dmc_envs()
    env_kwargs = {**task.env_kwargs, "frame_stack": task.frame_stack}
    if render_size is not None:
        env_kwargs.update(render_size_kwargs(task, render_size))
    return make_eval_env(task.env_id, env_kwargs, seed=seed + 10_000 if eval_env else seed)


def describe_device(device: Any) -> str:
    """``"cuda (NVIDIA H100 80GB HBM3)"`` or ``"cpu (16 cores)"``: what a reader needs to judge a run's speed."""
    device = th.device(device)
    if device.type == "cuda":
        return f"{device} ({th.cuda.get_device_name(device)})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return f"{device} ({format_count(cores, 'core')})"


def check_device(device: str) -> None:
    """Fail before any run starts if ``device`` cannot be used, rather than in every worker after minutes of setup."""
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
            f"{format_count(count, 'CUDA device')} (built for CUDA {th.version.cuda}). Run on a machine with an NVIDIA "
            "GPU and a CUDA build of torch, or pass --device cpu (or --device auto) to run the same grid on the CPU."
        )


# ----------------------------------------------------------------------------------------------------
# The random-policy baseline.


class _RandomPolicy:
    """Uniform random actions, with ``predict``'s signature so that SB3's ``evaluate_policy`` can run it."""

    def __init__(self, action_space: Any, seed: int) -> None:
        self.action_space = action_space
        self.action_space.seed(seed)

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False) -> Any:
        return np.stack([self.action_space.sample() for _ in range(len(observation))]), None


def evaluate_random_policy(task: TaskSpec, n_episodes: int, seed: int = 0) -> tuple[float, float]:
    """Mean and std of the return of a uniform random policy over ``n_episodes`` on the task's eval env."""
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
    done = read_json(path)
    if done is not None and done.get("episodes", 0) >= n_episodes:
        return "skipped"
    run_dir.mkdir(parents=True, exist_ok=True)
    mean, std = evaluate_random_policy(task, n_episodes)
    write_json(path, {"env": task.name, "agent": RANDOM_LABEL, "mean": mean, "std": std, "episodes": n_episodes})
    return "done"


# ----------------------------------------------------------------------------------------------------
# Callbacks of a run.


class StudyCheckpointCallback(BaseCallback):
    """Checkpoint every ``every`` environment steps; checkpoint and stop when ``stop`` is set (SIGTERM,
    Ctrl-C), and stop at the deadline (there without the checkpoint if not ``save_at_deadline``: a one-shot
    job could not use it). Reports the run's progress through ``report`` every few seconds.

    Checkpoints are written at the start of a rollout, not in ``_on_step``: SB3 calls ``on_step`` after the
    env stepped and before the transition is stored, when the model, the replay buffer and the envs disagree by
    one step. At the start of a rollout the last transition is stored and trained on and the next is not
    collected yet, so a run resumed from there goes on exactly as the run that did not stop. A stop therefore
    takes effect one agent step after it is asked for.

    :param save: writes a checkpoint
    :param action_repeat: simulator steps per agent step
    :param every: checkpoint every this many environment steps
    :param deadline: ``time.time()`` at which the run stops (``None``: none)
    :param save_at_deadline: whether to checkpoint when stopping at the deadline
    :param stop: the stop request of the run's process (``None``: only the deadline stops the run)
    :param report: called with no argument at most every :data:`PROGRESS_EVERY_S` seconds (``None``: nothing)
    """

    def __init__(
        self,
        save: Callable[[], None],
        action_repeat: int,
        every: int,
        deadline: float | None,
        save_at_deadline: bool = True,
        stop: StopRequest | None = None,
        report: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.save = save
        self.action_repeat = action_repeat
        self.every = every
        self.deadline = deadline
        self.save_at_deadline = save_at_deadline
        self.stop = stop
        self.report = report
        self.next_save = 0
        self.last_report = 0.0
        #: a checkpoint is due at the next rollout start
        self.save_due = False
        #: the run stops at the next step, after the checkpoint of the rollout start
        self.stop_due = False
        self.stopped = False
        self.saved_at_stop = False

    def _on_training_start(self) -> None:
        self.next_save = (env_steps(self.num_timesteps, self.action_repeat) // self.every + 1) * self.every
        self.last_report = time.time()

    def _on_rollout_start(self) -> None:
        if self.save_due:
            self.save()
            self.save_due = False
            self.saved_at_stop = self.stop_due

    def _on_step(self) -> bool:
        if self.stop_due and not self.save_due:  # the checkpoint of the stop is written
            self.stopped = True
            return False
        now = time.time()
        stop_requested = self.stop is not None and self.stop.is_set()
        out_of_time = self.deadline is not None and now >= self.deadline
        if (stop_requested or out_of_time) and not self.stop_due:
            if not (stop_requested or self.save_at_deadline):
                self.stopped = True
                return False
            self.save_due = self.stop_due = True
        steps = env_steps(self.num_timesteps, self.action_repeat)
        if steps >= self.next_save:
            self.save_due = True
            self.next_save = (steps // self.every + 1) * self.every
        if self.report is not None and now - self.last_report >= PROGRESS_EVERY_S:
            self.report()
            self.last_report = now
        return True

    def may_act_on_step(self, num_timesteps: int) -> bool:
        """Whether ``on_step`` at the coming agent step may stop training: the step after a stop's checkpoint.

        A deadline without a checkpoint (``save_at_deadline=False``) also stops at once, at a step nothing can foretell;
        the run then keeps no state past its last checkpoint, so an update begun early at that step
        (``overlap_env_step``) is never seen. Checkpoints are written at rollout starts, between two agent steps.
        """
        return self.stop_due and not self.save_due


class _AfterEvaluation(BaseCallback):
    """Calls ``action`` after each evaluation (an evaluation callback's ``callback_after_eval``)."""

    def __init__(self, action: Callable[[], None]) -> None:
        super().__init__()
        self.action = action

    def _on_step(self) -> bool:
        self.action()
        return True


def evaluate_planner(
    config: RunConfig, model: OffPolicyAlgorithm, planner: str, settings: Mapping[str, Any]
) -> tuple[float, float]:
    """Mean and standard deviation of the returns of ``config.eval_episodes`` episodes of ``model`` (a Dreamer trained
    by its actor) acting by ``planner`` with ``settings``, the actor switched back afterwards
    (:func:`~sb3_gaara.dreamer.evaluate_planners`).

    The actor's run goes on as if this evaluation had not happened, and the result depends on the model alone:

    * the episodes run on an evaluation env of their own, built for each evaluation and seeded as the run's (so each
      evaluation starts from the episodes the actor's first evaluation started from); the actor's evaluation env,
      which a checkpoint keeps mid-stream, is not stepped;
    * the planners' candidates are drawn from torch's global generator (as when a planner acts), forked for the
      evaluation (``torch.random.fork_rng``: its state, and CUDA's where initialised, saved, seeded with the evaluation
      env's seed, and restored afterwards); numpy's and Python's global states are saved and restored too.

    So turning :attr:`RunConfig.eval_planners` on or off leaves the run's own curve and parameters bit for bit as they
    were, and a run resumed from a checkpoint records the planners' evaluations it would have recorded unstopped.
    """
    from sb3_gaara.dreamer.dreamer import Dreamer, evaluate_planners

    assert isinstance(model, Dreamer), type(model)
    eval_seed = config.seed + 10_000
    env = make_train_env(config.run_task(), config.seed, eval_env=True, render_size=_render_size(config))
    numpy_state, python_state = np.random.get_state(), random.getstate()
    devices = list(range(th.cuda.device_count())) if th.cuda.is_available() and th.cuda.is_initialized() else []
    try:
        with th.random.fork_rng(devices=devices):
            th.default_generator.manual_seed(eval_seed)
            if devices:
                th.cuda.manual_seed_all(eval_seed)
            results = evaluate_planners(
                model, env, (planner,), n_eval_episodes=config.eval_episodes, planner_kwargs={planner: dict(settings)}
            )
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        env.close()
    return results[planner]


# ----------------------------------------------------------------------------------------------------
# A run, step by step.


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[str | None]:
    """Hold :data:`LOCK_FILE` of ``run_dir`` exclusively while inside; yield ``None`` when this process holds it, or
    who holds it (``host pid N``) when another process does.

    Two processes resuming one checkpoint would each append to its replay buffer and overwrite the other's
    checkpoints and curve. The lock is the operating system's (``flock``; ``msvcrt.locking`` on Windows), so it is
    released when its process ends, however it ends: a run killed mid-training is free for the next command, and no
    stale lock is left to delete by hand. On a shared file system it needs one whose locks span machines (NFSv4 does).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+") as handle:
        try:
            if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
                import msvcrt

                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            yield handle.read().strip() or "another process"
            return
        handle.seek(0)
        handle.truncate()
        handle.write(f"{socket.gethostname()} pid {os.getpid()}")
        handle.flush()
        yield None  # the lock goes with the file's closing


def run_training(config: RunConfig, stop: StopRequest | None = None) -> str:
    """Train and evaluate one run, resuming from its checkpoint; return ``"done"``, ``"skipped"``, ``"stopped"`` or
    ``"busy"``.

    ``"stopped"``: the deadline passed or ``stop`` was set; the run saved a checkpoint and resumes when
    called again. Without ``config.checkpoint_at_deadline``, a run stopped by the deadline saves only its
    curve and ``stopped.json`` (steps, wall time, device), and starts again from its last checkpoint, if
    any, or from scratch. ``"busy"``: another process trains the run now (:func:`run_lock`); this one left it alone.
    """
    run_dir = Path(config.run_dir)
    status = _run_status(config, run_dir)
    if status is not None:
        return status
    with run_lock(run_dir) as holder:
        if holder is not None:
            warnings.warn(f"{run_dir} is being trained by {holder}; this process leaves it to that one.", stacklevel=2)
            return "busy"
        return _train(config, run_dir, stop)


def _train(config: RunConfig, run_dir: Path, stop: StopRequest | None) -> str:
    """:func:`run_training` once this process holds the run."""
    status, pointer = _open_run_dir(config, run_dir)
    if status is not None:
        return status
    if config.threads is not None:
        th.set_num_threads(config.threads)
    th.backends.cudnn.benchmark = config.cudnn_benchmark
    th.backends.cuda.matmul.allow_tf32 = config.tf32
    state = read_checkpoint_state(run_dir / pointer["dir"]) if pointer is not None else None
    restored = _restore_envs(state, run_dir) if state is not None else None
    # Exact: a new run, or one whose checkpoint kept its envs.
    exact = pointer is None or restored is not None
    if restored is None:
        task, render_size = config.run_task(), _render_size(config)
        restored = (
            make_train_env(task, config.seed, render_size=render_size),
            make_train_env(task, config.seed, eval_env=True, render_size=render_size),
        )
    env, eval_env = restored
    action_repeat = get_action_repeat(env)
    agent_steps = math.ceil(config.env_steps / action_repeat)
    if pointer is not None:
        model, history, wall_time = _resume_model(config, env, pointer, keep_last_obs=exact)
        if state is not None:
            restore_random_state(model, state["rng"])
    else:
        model, history, wall_time = _new_model(config, env, agent_steps), [], 0.0
    files = _RunFiles(config, model, eval_env, action_repeat, wall_time)
    if pointer is not None:
        files.other_curves = {
            label: curve
            for label, curve in curve_histories(run_dir / "curve.csv", pointer["env_steps"]).items()
            if label != AGENTS[config.agent].label
        }
    files.record_session(pointer, exact)
    _set_logger(model, run_dir, config.verbose)
    eval_callback, checkpoint_callback = _callbacks(config, files, eval_env, history, stop)
    files.start_clock()
    try:
        remaining = agent_steps - model.num_timesteps
        if remaining > 0:
            callbacks = CallbackList([eval_callback, checkpoint_callback])
            model.learn(total_timesteps=remaining, callback=callbacks, reset_num_timesteps=pointer is None)
        if checkpoint_callback.stopped:
            if not checkpoint_callback.saved_at_stop:
                files.record_stop()
            return "stopped"
        if not eval_callback.history or eval_callback.history[-1].env_steps < config.env_steps:
            # The last agent step may fall short of the next evaluation (env_steps not a multiple of eval_every).
            eval_callback.evaluate(during_rollout=False)
            eval_callback.finish_evaluation()
    finally:
        env.close()
        eval_callback.close()  # the evaluation env, after the last evaluation, which steps it (where it lives)
    files.finish()
    return "done"


def _run_status(config: RunConfig, run_dir: Path) -> str | None:
    """``"skipped"`` for a finished run, ``"stopped"`` past the deadline, else ``None``; reads, writes nothing."""
    done = read_json(run_dir / "done.json")
    if done is not None and done["env_steps"] >= config.env_steps:
        return "skipped"
    if done is not None and read_json(run_dir / "checkpoint.json") is None:
        raise ValueError(
            f"{run_dir} finished at {done['env_steps']} environment steps and kept no replay buffer, so it cannot be "
            f"extended to {config.env_steps}. Use another --out directory, or delete the run directory to start it again."
        )
    if config.deadline is not None and time.time() >= config.deadline:
        return "stopped"
    return None


def _open_run_dir(config: RunConfig, run_dir: Path) -> tuple[str | None, dict[str, Any] | None]:
    """``(status, None)`` for a finished or late run (:func:`_run_status`); otherwise the run directory, made and
    checked against the run's identity (``config.json``), and ``(None, the pointer to its checkpoint or None)``."""
    status = _run_status(config, run_dir)
    if status is not None:
        return status, None
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "stopped.json").unlink(missing_ok=True)  # the timing of an earlier session, no longer the latest
    identity = config.identity()
    stored = read_json(run_dir / "config.json")
    if stored is not None and not config.resumes(stored):
        raise ValueError(
            f"{run_dir} holds a run with other settings ({stored}); it cannot be resumed with {identity}. "
            "Use another --out directory, or delete the run directory to start it again."
        )
    write_json(run_dir / "config.json", identity)
    return None, read_json(run_dir / "checkpoint.json")


def _resume_model(
    config: RunConfig, env: VecEnv, pointer: Mapping[str, Any], keep_last_obs: bool
) -> tuple[OffPolicyAlgorithm, list[Evaluation], float]:
    """The model and replay buffer of the checkpoint ``pointer`` names, the evaluations made up to it, and
    the wall time of the sessions before.

    ``keep_last_obs``: ``env`` is the checkpoint's own env, in the state it was saved in, so the model goes on
    from its saved last observation; otherwise SB3 resets the fresh ``env`` before training (its ``force_reset``).
    """
    run_dir = Path(config.run_dir)
    checkpoint = run_dir / pointer["dir"]
    algorithm = BY_ZOO_NAME[AGENTS[config.agent].algorithm]
    assert issubclass(algorithm, CheckedTraining)
    speed_kwargs = algorithm.speed_options_for(config.model_kwargs)
    # Loaded without the env, then given it: ``load`` would seed the env (SB3 seeds ``model.env`` while it sets the
    # model up), which must keep the state it was saved in.
    model = algorithm.load(checkpoint / "model.zip", device=config.device, **speed_kwargs)
    model.set_env(env, force_reset=not keep_last_obs)
    model.load_replay_buffer(checkpoint / "replay_buffer.pkl")
    curves = curve_histories(run_dir / "curve.csv", pointer["env_steps"])
    return model, curves.get(AGENTS[config.agent].label, []), float(pointer["wall_time_s"])


def curve_histories(path: Path, up_to: int) -> dict[str, list[Evaluation]]:
    """The evaluations in a run's ``curve.csv`` up to ``up_to`` environment steps, by label: the run's own and those
    of its model by Dreamer's planners (:attr:`RunConfig.eval_planners`)."""
    curves: dict[str, list[Evaluation]] = {}
    for row in read_run_curve(path):
        if row["step"] <= up_to:
            evaluation = Evaluation(row["step"], row["episode_reward"], float(row.get("std", 0.0)), row["episode"])
            curves.setdefault(row["agent"], []).append(evaluation)
    return curves


# ----------------------------------------------------------------------------------------------------
# What a checkpoint keeps beside the model and the replay buffer: random-number generators and envs.


def random_state(model: OffPolicyAlgorithm) -> dict[str, Any]:
    """The states of every random-number generator a run draws from: torch's (and CUDA's, where initialised),
    numpy's and Python's global ones, which SB3 seeds once per run, and the model's action space (its random
    exploration before ``learning_starts``)."""
    return {
        "torch": th.get_rng_state(),
        "cuda": th.cuda.get_rng_state_all() if th.cuda.is_available() and th.cuda.is_initialized() else None,
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "action_space": model.action_space.np_random.bit_generator.state,
    }


def restore_random_state(model: OffPolicyAlgorithm, state: Mapping[str, Any]) -> None:
    """Put back what :func:`random_state` took (after ``load``, which seeds them all again)."""
    th.set_rng_state(state["torch"])
    if state["cuda"] is not None and th.cuda.is_available() and th.cuda.device_count() == len(state["cuda"]):
        th.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    model.action_space.np_random.bit_generator.state = state["action_space"]


def write_checkpoint_state(path: Path, model: OffPolicyAlgorithm, eval_env: VecEnv) -> bool:
    """Write :data:`STATE_FILE`: :func:`random_state` and the training and evaluation envs (pickled as they are,
    mid-episode); whether the envs could be pickled (if not, the file keeps the generators only)."""
    try:
        envs: bytes | None = cloudpickle.dumps((model.get_env(), eval_env))
    except Exception as error:  # an env holding something that does not pickle (a renderer, a socket)
        warnings.warn(
            f"The run's envs cannot be pickled ({type(error).__name__}: {error}); its checkpoints keep the model, the "
            "replay buffer and the random generators, and a resumed run restarts its current episode.",
            stacklevel=2,
        )
        envs = None
    with atomic_file(path) as file:
        cloudpickle.dump({"rng": random_state(model), "envs": envs}, file)
    return envs is not None


def read_checkpoint_state(checkpoint: Path) -> dict[str, Any] | None:
    """The :data:`STATE_FILE` of a checkpoint directory (``None`` for checkpoints written before it existed)."""
    path = checkpoint / STATE_FILE
    if not path.exists():
        return None
    with path.open("rb") as file:
        state: dict[str, Any] = pickle.load(file)
    return state


def _restore_envs(state: Mapping[str, Any], run_dir: Path) -> tuple[VecEnv, VecEnv] | None:
    """The checkpoint's training and evaluation envs, or ``None`` (not kept, or no longer unpickling: the code of
    the env changed since), in which case the run rebuilds them and restarts its current episode."""
    if state.get("envs") is None:
        return None
    try:
        train_env, eval_env = pickle.loads(state["envs"])
    except Exception as error:
        warnings.warn(
            f"{run_dir}: the checkpoint's envs do not unpickle ({type(error).__name__}: {error}); the run rebuilds "
            "them and restarts its current episode.",
            stacklevel=2,
        )
        return None
    return train_env, eval_env


def _model_kwargs(config: RunConfig) -> dict[str, Any]:
    """The run's model arguments: the task's settings for the agent's algorithm (:meth:`RunConfig.run_task`), then the
    agent's, then the study's (``config.model_kwargs``).

    Deep copies: SB3 edits ``policy_kwargs`` in place, which would change the task's settings for later runs.
    """
    algorithm = BY_ZOO_NAME[AGENTS[config.agent].algorithm]
    merged = {**config.run_task().model_kwargs, **AGENTS[config.agent].kwargs, **config.model_kwargs}
    assert issubclass(algorithm, CheckedTraining)
    speed_options = {key: value for key, value in merged.items() if key in SPEED_ONLY_MODEL_KWARGS}
    kept = {key: value for key, value in merged.items() if key not in SPEED_ONLY_MODEL_KWARGS}
    return copy.deepcopy({**kept, **algorithm.speed_options_for(speed_options)})


def _render_size(config: RunConfig) -> int | None:
    """The render size of an agent that observes whole renders at its input size (DrQ), else ``None`` (the run task's
    frames: those of an agent with a render size of its own, SLAC's and Dreamer's, are rendered at it there)."""
    agent = AGENTS[config.agent]
    if not agent.render_at_crop_size:
        return None
    default = inspect.signature(BY_ZOO_NAME[agent.algorithm]).parameters["image_size"].default
    return int(_model_kwargs(config).get("image_size", default))


def _new_model(config: RunConfig, env: VecEnv, agent_steps: int) -> OffPolicyAlgorithm:
    """A fresh model of the agent's algorithm with :func:`_model_kwargs`."""
    agent = AGENTS[config.agent]
    model_kwargs = _model_kwargs(config)
    if config.buffer_size is not None:
        model_kwargs["buffer_size"] = config.buffer_size
    # A buffer longer than the run only costs memory (and checkpoint size: SB3 pickles it whole).
    algorithm = BY_ZOO_NAME[agent.algorithm]
    default_buffer = inspect.signature(algorithm).parameters["buffer_size"].default
    model_kwargs["buffer_size"] = min(model_kwargs.get("buffer_size", default_buffer), agent_steps)
    if agent.variant is not None:
        model_kwargs["variant"] = agent.variant
    return algorithm("CnnPolicy", env, seed=config.seed, device=config.device, **model_kwargs)


def _set_logger(model: OffPolicyAlgorithm, run_dir: Path, verbose: int) -> None:
    """SB3's logs of this session in ``logs/session_<k>`` (CSV, and stdout if ``verbose``)."""
    logs = run_dir / "logs"
    session = len(list(logs.glob("session_*"))) if logs.exists() else 0
    formats = ["csv", "stdout"] if verbose >= 1 else ["csv"]
    model.set_logger(configure(str(logs / f"session_{session}"), formats))


def _callbacks(
    config: RunConfig, files: _RunFiles, eval_env: VecEnv, history: list[Evaluation], stop: StopRequest | None
) -> tuple[EnvStepEvalCallback, StudyCheckpointCallback]:
    """The run's evaluation callback (which writes the curve after each evaluation) and checkpoint callback."""
    eval_callback = EnvStepEvalCallback(
        eval_env,
        eval_freq_env_steps=config.eval_every,
        n_eval_episodes=config.eval_episodes,
        action_repeat=files.action_repeat,
        history=history,
        callback_after_eval=_AfterEvaluation(files.after_evaluation),
        verbose=config.verbose,
        # Where evaluating elsewhere would change the results (a planner that draws while it acts), the run evaluates
        # here: the same results either way, the study's promise for --async-eval. Evaluations of the planners too
        # run here, after the actor's, on the model of its step.
        asynchronous=config.async_eval
        and not config.eval_planners
        and EnvStepEvalCallback.evaluated_here_because(files.model) is None,
    )
    files.evaluations = eval_callback
    checkpoint_callback = StudyCheckpointCallback(
        files.save_checkpoint,
        files.action_repeat,
        config.checkpoint_every,
        config.deadline,
        config.checkpoint_at_deadline,
        stop,
        report=files.report_progress,
    )
    return eval_callback, checkpoint_callback


class _RunFiles:
    """What a run writes while it trains: its curve, its checkpoints, its sessions and progress, and where it got
    in its json files.

    :param eval_env: the evaluation env, kept in the checkpoints with the training env
    :param wall_time: seconds the run took in its earlier sessions
    """

    def __init__(
        self, config: RunConfig, model: OffPolicyAlgorithm, eval_env: VecEnv, action_repeat: int, wall_time: float
    ) -> None:
        self.run_dir = Path(config.run_dir)
        self.config = config
        self.model = model
        self.eval_env = eval_env
        self.action_repeat = action_repeat
        self.wall_time = wall_time
        self.device = describe_device(model.device)
        #: the evaluation callback, whose history is the curve
        self.evaluations: EnvStepEvalCallback | None = None
        #: further curves of the run, by label: its model's evaluations by Dreamer's planners
        self.other_curves: dict[str, list[Evaluation]] = {}
        self.started = time.time()
        #: environment steps where this session started
        self.start_env_steps = self.env_steps()

    def start_clock(self) -> None:
        self.started = time.time()
        self.start_env_steps = self.env_steps()

    def env_steps(self) -> int:
        return env_steps(self.model.num_timesteps, self.action_repeat)

    def timing(self) -> dict[str, Any]:
        """Where the run is and how long it took (over all its sessions), for the run's json files."""
        return {
            "env_steps": self.env_steps(),
            "num_timesteps": self.model.num_timesteps,
            "wall_time_s": self.wall_time + time.time() - self.started,
            "device": self.device,
        }

    def write_curve(self) -> None:
        history = self.evaluations.history if self.evaluations is not None else []
        label = AGENTS[self.config.agent].label
        task, seed = self.config.task.name, self.config.seed
        write_run_curve(self.run_dir / "curve.csv", history, task, seed, label, self.other_curves)

    def after_evaluation(self) -> None:
        """After each evaluation of the run's policy: the planners of :attr:`RunConfig.eval_planners` on the same model
        (:func:`evaluate_planner`, at the evaluation's step, every :attr:`RunConfig.eval_planners_every` environment
        steps), then the curve."""
        assert self.evaluations is not None and self.evaluations.history
        latest = self.evaluations.history[-1]
        label = AGENTS[self.config.agent].label
        every = self.config.eval_planners_every
        planners = self.config.eval_planners if every is None or latest.env_steps % every == 0 else {}
        for planner, settings in planners.items():
            mean, std = evaluate_planner(self.config, self.model, planner, settings)
            curve = self.other_curves.setdefault(planner_eval_label(label, planner), [])
            curve[:] = [evaluation for evaluation in curve if evaluation.env_steps < latest.env_steps]
            curve.append(Evaluation(latest.env_steps, mean, std, latest.training_episodes))
            if self.config.verbose >= 1:
                print(f"Eval env_steps={latest.env_steps} {planner}: episode_reward={mean:.2f} +/- {std:.2f}")
        self.write_curve()

    def save_checkpoint(self) -> None:
        """Model, replay buffer and :data:`STATE_FILE` into ``ckpt_<env steps>`` (written under a temporary name,
        then renamed), the curve, and ``checkpoint.json`` pointing at it; earlier checkpoints are deleted."""
        # The evaluation env as it is now: with evaluations in a process of their own, after the one under way, there.
        eval_env = self.evaluations.current_eval_env() if self.evaluations is not None else self.eval_env
        name = f"ckpt_{self.env_steps():09d}"
        tmp = self.run_dir / (name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        self.model.save(tmp / "model.zip")
        self.model.save_replay_buffer(tmp / "replay_buffer.pkl")
        exact = write_checkpoint_state(tmp / STATE_FILE, self.model, eval_env)
        shutil.rmtree(self.run_dir / name, ignore_errors=True)
        os.replace(tmp, self.run_dir / name)
        self.write_curve()
        write_json(self.run_dir / "checkpoint.json", {"dir": name, "exact": exact, **self.timing()})
        for old in self.run_dir.glob("ckpt_*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        self.report_progress()

    def record_session(self, pointer: Mapping[str, Any] | None, exact: bool) -> None:
        """Append this session's start to :data:`SESSIONS_FILE`: the environment steps it starts from, the
        checkpoint it resumed (``None``: a new run), whether it goes on exactly, the code's commit (:func:`git_commit`:
        a run resumed under other code is not the run of one commit), and the host and process running it (a scheduler
        that retries a run after a crash shows as a second line starting where the checkpoint was)."""
        record = {
            "started_at": time.time(),
            "env_steps": self.start_env_steps,
            "resumed_from": None if pointer is None else pointer["dir"],
            "exact": exact,
            "commit": git_commit(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        with (self.run_dir / SESSIONS_FILE).open("a") as file:
            file.write(json.dumps(record, sort_keys=True) + "\n")
        self.report_progress()

    def report_progress(self) -> None:
        """Rewrite :data:`PROGRESS_FILE`: where the session is and its speed, for the study's progress lines."""
        elapsed = time.time() - self.started
        steps = self.env_steps() - self.start_env_steps
        write_json(
            self.run_dir / PROGRESS_FILE,
            {
                **self.timing(),
                "env_steps_per_s": steps / elapsed if elapsed > 0 else 0.0,
                "updated_at": time.time(),
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
        )

    def record_stop(self) -> None:
        """A run stopped without a checkpoint: its curve and ``stopped.json``."""
        self.write_curve()  # every evaluation is written already; this covers a stop before the first one
        write_json(self.run_dir / "stopped.json", self.timing())

    def finish(self) -> None:
        """The curve, ``final_model.zip`` and ``done.json``; the checkpoints go."""
        self.write_curve()
        self.model.save(self.run_dir / "final_model.zip")
        write_json(self.run_dir / "done.json", self.timing())
        # The replay buffer is only needed to resume; a finished run keeps its final model and curve.
        (self.run_dir / "checkpoint.json").unlink(missing_ok=True)
        for old in self.run_dir.glob("ckpt_*"):
            shutil.rmtree(old, ignore_errors=True)

"""``python -m sb3_gaara.study --campaign NAME --budget SECONDS``: one job's share of a campaign.

The job reads the campaign's ledger (:mod:`~sb3_gaara.study.ledger`), takes the next cells not finished yet, decides
how many to run at once from the speeds earlier jobs recorded (:func:`plan_cells`), runs them with the study's
machinery (:func:`~sb3_gaara.study.scheduling.run_jobs`, one process per run, stopped at the budget without a
checkpoint) and writes each run back, finished or partial, with its provenance, into the ledger and as one bundle
for the repository (``--bundle DIR``).

A job on a fresh machine has no run directories: the ledger alone says what is done, so a finished cell is never run
again. A partial cell starts again from scratch: its checkpoint (model and a replay buffer of hundreds of MB) cannot
come back from a GPU job.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch as th

from sb3_gaara.study.catalogue import AGENTS, CAMPAIGNS, RUNTIME_DEFAULTS, SPEED_ONLY_MODEL_KWARGS, CampaignSpec, resolve_task
from sb3_gaara.study.ledger import (
    FINISHED,
    PARTIAL,
    Cell,
    CellRecord,
    Ledger,
    LedgerError,
    default_ledger,
    merge_bundle,
    write_bundle,
    write_campaign_report,
)
from sb3_gaara.study.report import default_reference_path, format_count, format_steps, read_json
from sb3_gaara.study.run import RunConfig, check_device, describe_device, git_commit, run_directory
from sb3_gaara.study.scheduling import Job, log_progress, run_jobs

#: Environment steps/s of one run alone, by device type, where no job measured the agent on such a device: about what
#: GAARA made alone on an H100 and an H200 (192-249, evaluations included); DrQ and the latent-model agents may be slower
DEFAULT_ENV_STEPS_PER_S = {"cuda": 200.0, "cpu": 20.0}
#: How much a run slows for each other run beside it, ``s`` in ``rate(n) = rate(1) / (1 + s (n - 1))``, by device type and
#: whether NVIDIA's MPS lets the processes share the GPU. Measured: two runs on an H200 made 131 env steps/s each taking
#: turns against ~195 alone (s = 0.49), and 171-192 each under MPS (s ~ 0.1); on a CPU each run has cores of its own.
SHARING = {("cuda", True): 0.15, ("cuda", False): 0.5, ("cpu", True): 0.0, ("cpu", False): 0.0}
#: Seconds from a run's start to its first environment step (spawn, imports, envs, model; CUDA graphs are captured later)
STARTUP_S = 30.0
#: Seconds of the budget kept for the runs to stop (an evaluation under way at the deadline runs to its end), the
#: ledger and the bundle
END_MARGIN_S = 20.0
#: Most runs at once (a run uses a core for itself, one for its evaluations and rendering)
MAX_RUNS = 8


# ----------------------------------------------------------------------------------------------------
# Speeds and the plan.


@dataclass(frozen=True)
class RateRecord:
    """One run's speed as a job measured it: environment steps over its wall time, evaluations included."""

    agent: str
    device: str
    mps: bool
    runs_at_once: int
    env_steps_per_s: float


def recorded_rates(jobs: Mapping[str, Mapping[str, Any]]) -> list[RateRecord]:
    """The speeds of every run that ran (finished or stopped) in the ledger's jobs, oldest job first."""
    records = []
    for _, job in sorted(jobs.items()):
        for run in job.get("runs", []):
            if run.get("status") in (FINISHED, PARTIAL) and float(run.get("env_steps_per_s", 0.0)) > 0:
                records.append(
                    RateRecord(
                        run["agent"],
                        job["device"],
                        bool(job.get("mps")),
                        int(job["runs_at_once"]),
                        float(run["env_steps_per_s"]),
                    )
                )
    return records


def device_type(device: str) -> str:
    """``"cuda"`` of ``"cuda (NVIDIA H100 80GB HBM3)"`` or ``"cuda:0"``, ``"cpu"`` of ``"cpu (16 cores)"``."""
    return device.split(" ", 1)[0].split(":", 1)[0]


def estimate_rate(agent: str, device: str, mps: bool, runs: int, records: Sequence[RateRecord]) -> tuple[float, bool]:
    """Environment steps/s of one run of ``agent`` among ``runs`` at once on ``device``, and whether it comes from a
    measurement. The measurement of the same agent on the same device (else the same kind of device) taken with the
    nearest number of runs at once (the latest of equals), moved to ``runs`` by :data:`SHARING`'s model; without one,
    :data:`DEFAULT_ENV_STEPS_PER_S` moved the same way."""
    kind = device_type(device)
    sharing = SHARING.get((kind, mps), 0.5)

    def moved(rate: float, measured_at: int) -> float:
        return rate * (1 + sharing * (measured_at - 1)) / (1 + sharing * (runs - 1))

    for same in (lambda r: r.device == device and r.mps == mps, lambda r: device_type(r.device) == kind):
        candidates = [(abs(r.runs_at_once - runs), -i, r) for i, r in enumerate(records) if r.agent == agent and same(r)]
        if candidates:
            record = min(candidates, key=lambda c: c[:2])[2]
            return moved(record.env_steps_per_s, record.runs_at_once), True
    return moved(DEFAULT_ENV_STEPS_PER_S.get(kind, DEFAULT_ENV_STEPS_PER_S["cpu"]), 1), False


@dataclass(frozen=True)
class Plan:
    """The cells one job runs, how many at once, and when each is expected to end (seconds from the start)."""

    runs: int
    cells: tuple[Cell, ...]
    expected_end_s: Mapping[Cell, float] = field(default_factory=dict)
    #: why the plan is what it is, for the log
    note: str = ""


def _schedule(
    cells: Sequence[Cell], env_steps: int, rate: Callable[[str, int], float], seconds: float, runs: int, startup_s: float
) -> dict[Cell, float]:
    """Cells in order onto ``runs`` slots, each cell to the slot free first, as :func:`run_jobs` starts them, up to the
    first cell that would not end within ``seconds``: the cells keep their order (the main comparison first), and a
    later, faster cell does not jump the queue. Every run is taken at the speed of ``runs`` at once (slower than the
    last runs of a job go)."""
    free = [0.0] * runs
    ends: dict[Cell, float] = {}
    for cell in cells:
        slot = min(range(runs), key=free.__getitem__)
        end = free[slot] + startup_s + env_steps / rate(cell[1], runs)
        if end > seconds:
            break
        free[slot] = end
        ends[cell] = end
    return ends


def plan_cells(
    cells: Sequence[Cell],
    env_steps: int,
    rate: Callable[[str, int], tuple[float, bool]],
    seconds: float,
    max_runs: int,
    startup_s: float = STARTUP_S,
) -> Plan:
    """How many runs at once, and which cells, finish the most cells within ``seconds``.

    ``rate(agent, runs)``: environment steps/s of one run of ``agent`` among ``runs`` at once, and whether measured
    (:func:`estimate_rate`). Cells that cannot finish within ``seconds`` even alone wait for a longer budget; for each
    number of runs at once up to ``max_runs``, :func:`_schedule` the others in order; take the number that is expected
    to finish the most cells, of equals the one that ends its last cell first (the widest margin against a wrong
    estimate). Only cells expected to finish start: a run cut off by the deadline is lost to the next job, which starts
    it again.

    If no cell can finish, the first cell of each agent that no job has measured on this kind of device runs (as many at
    once as ``max_runs`` allows), to measure them all in one job (they end partial unless the guess was too slow); if
    every agent is measured, nothing runs.
    """
    possible = [cell for cell in cells if startup_s + env_steps / rate(cell[1], 1)[0] <= seconds]
    waiting = (
        f"; {format_count(len(cells) - len(possible), 'cell')} cannot finish alone within it"
        if len(possible) < len(cells)
        else ""
    )
    best: tuple[int, float, int, dict[Cell, float]] | None = None
    for runs in range(1, max(1, max_runs) + 1):
        ends = _schedule(possible, env_steps, lambda agent, n: rate(agent, n)[0], seconds, runs, startup_s)
        key = (len(ends), -max(ends.values(), default=0.0), -runs)
        if ends and (best is None or key > best[:3]):
            best = (*key, ends)
    if best is not None:
        ends = best[3]
        runs = min(-best[2], len(ends))
        note = f"{format_count(len(ends), 'cell')} expected to finish within {seconds:.0f} s, {runs} at once{waiting}"
        return Plan(runs, tuple(ends), ends, note)
    unmeasured: dict[str, Cell] = {}
    for cell in cells:
        if cell[1] not in unmeasured and not rate(cell[1], 1)[1]:
            unmeasured[cell[1]] = cell
    measuring = list(unmeasured.values())[: max(1, max_runs)]
    if measuring:
        runs = len(measuring)
        ends = {cell: startup_s + env_steps / rate(cell[1], runs)[0] for cell in measuring}
        return Plan(
            runs,
            tuple(measuring),
            ends,
            f"no cell is expected to finish within {seconds:.0f} s; {', '.join(unmeasured)} ha"
            f"{'s' if len(unmeasured) == 1 else 've'} no measured speed on this device, so the first cell of "
            f"{format_count(runs, 'agent')} runs, {runs} at once, to measure {'it' if runs == 1 else 'them'} (it ends "
            "partial unless the guess was too slow)",
        )
    return Plan(
        0,
        (),
        {},
        f"no cell is expected to finish within {seconds:.0f} s at the measured speeds, and every agent is measured: "
        "give a longer --budget (a cell cannot resume across jobs)",
    )


def _find(settings: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in nested dicts and lists (``None`` if absent)."""
    if isinstance(settings, Mapping):
        if key in settings:
            return settings[key]
        settings = list(settings.values())
    if isinstance(settings, list):
        for value in settings:
            found = _find(value, key)
            if found is not None:
                return found
    return None


def precision_of(identity: Mapping[str, Any], config: RunConfig) -> dict[str, Any]:
    """What decides the run's arithmetic: the convolutions' dtype (``conv_dtype`` where an agent takes one), TF32
    matrix products and ``cudnn.benchmark``'s kernel choice."""
    return {
        "conv_dtype": _find(identity, "conv_dtype") or "float32",
        "tf32_matmul": config.tf32,
        "cudnn_benchmark": config.cudnn_benchmark,
    }


def speed_options_of(config: RunConfig) -> dict[str, Any]:
    """Options that change how fast, not what, a run computes."""
    options = {key: config.model_kwargs[key] for key in sorted(SPEED_ONLY_MODEL_KWARGS) if key in config.model_kwargs}
    return {**options, "async_eval": config.async_eval, "threads": config.threads}


def cell_record(campaign: str, config: RunConfig, job: Mapping[str, Any]) -> CellRecord | None:
    """The ledger's record of a run directory after a job: finished (``done.json``), partial (stopped), or ``None``
    (the run left nothing: it failed before its first session, or never started)."""
    run_dir = Path(config.run_dir)
    done = read_json(run_dir / "done.json")
    timing = done if done is not None else read_json(run_dir / "stopped.json") or read_json(run_dir / "checkpoint.json")
    identity = read_json(run_dir / "config.json")
    curve = run_dir / "curve.csv"
    if timing is None or identity is None or not curve.exists():
        return None
    wall = float(timing["wall_time_s"])
    provenance = {
        "campaign": campaign,
        "task": config.task.name,
        "agent": config.agent,
        "label": AGENTS[config.agent].label,
        "seed": config.seed,
        "status": FINISHED if done is not None else PARTIAL,
        "env_steps": int(timing["env_steps"]),
        "planned_env_steps": config.env_steps,
        "eval_every": config.eval_every,
        "eval_episodes": config.eval_episodes,
        "wall_time_s": round(wall, 2),
        "env_steps_per_s": round(int(timing["env_steps"]) / wall, 2) if wall > 0 else 0.0,
        "device": timing.get("device"),
        "commit": job["commit"],
        "job": job["job"],
        "mps": job["mps"],
        "runs_at_once": job["runs_at_once"],
        "precision": precision_of(identity, config),
        "speed_options": speed_options_of(config),
        "settings": identity,
        "versions": job["versions"],
    }
    return CellRecord(config.task.name, config.agent, config.seed, provenance, curve.read_text())


# ----------------------------------------------------------------------------------------------------
# One job.


@dataclass
class CampaignOutcome:
    """What a campaign job did: its plan, the runs' outcomes and the bundle it wrote."""

    plan: Plan
    counts: dict[str, int]
    records: list[CellRecord]
    bundle: Path | None
    remaining: int


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_campaign(
    spec: CampaignSpec,
    budget: float,
    out: str | Path,
    ledger_root: str | Path | None = None,
    bundle_dir: str | Path | None = None,
    seeds: Sequence[int] | None = None,
    device: str = "auto",
    max_runs: int | None = None,
    threads: int | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    runtime: Mapping[str, Any] | None = None,
    progress_every: float = 60.0,
    verbose: int = 0,
    log: Callable[[str], None] = log_progress,
) -> CampaignOutcome:
    """Run the next cells of ``spec`` not finished in its ledger within ``budget`` seconds (this call's whole time), then
    write every run into the ledger (finished or partial) and, with ``bundle_dir``, the job's bundle there.

    :param out: where the run directories go (a run already finished there is taken as it is, not run again)
    :param max_runs: most runs at once (default: half the cores, at most :data:`MAX_RUNS`)
    :param threads: torch threads per run (default: the cores shared out, ``cores // runs``)
    :param model_kwargs: arguments of every run's algorithm (default: the campaign's speed options); those not in
        :data:`SPEED_ONLY_MODEL_KWARGS` become part of every cell's identity
    :param runtime: ``cudnn_benchmark``, ``tf32``, ``async_eval`` (default: the campaign's, else the study's defaults)
    """
    started = time.time()
    root = Path(ledger_root) if ledger_root is not None else default_ledger(spec.name)
    ledger = Ledger.read(root)
    planned = spec.cells(None if seeds is None else list(seeds))
    pending = [cell for cell in planned if cell not in ledger.finished]
    settings = {key: RUNTIME_DEFAULTS[key] for key in ("cudnn_benchmark", "tf32", "async_eval")}
    settings.update({key: value for key, value in spec.runtime.items() if key in settings})
    settings.update(runtime or {})
    model_kwargs = dict(spec.runtime.get("model_kwargs", {}) if model_kwargs is None else model_kwargs)
    check_device(device)
    resolved = device if device != "auto" else "cuda" if th.cuda.is_available() else "cpu"
    device_name = describe_device(resolved)
    mps = device_type(resolved) == "cuda" and bool(os.environ.get("CUDA_MPS_PIPE_DIRECTORY"))
    cores = _cores()
    limit = max_runs if max_runs is not None else max(1, min(MAX_RUNS, cores // 2))
    records = recorded_rates(ledger.jobs)
    seconds = budget - END_MARGIN_S - (time.time() - started)
    plan = (
        plan_cells(
            pending, spec.env_steps, lambda agent, runs: estimate_rate(agent, device_name, mps, runs, records), seconds, limit
        )
        if pending
        else Plan(0, (), {}, "every cell is finished")
    )
    log(
        f"[campaign] {spec.name}: {len(planned) - len(pending)} of {format_count(len(planned), 'cell')} finished in "
        f"{root}; {device_name}{' with MPS' if mps else ''}, {format_count(cores, 'core')}, budget {budget:.0f} s; "
        f"{plan.note}"
    )
    for cell in plan.cells:
        log(f"[campaign]   {'/'.join(map(str, cell))}: expected to end after {plan.expected_end_s[cell]:.0f} s")
    job_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + "-" + secrets.token_hex(2)
    job: dict[str, Any] = {
        "job": job_id,
        "campaign": spec.name,
        "commit": git_commit(),
        "device": device_name,
        "mps": mps,
        "cores": cores,
        "budget_s": budget,
        "runs_at_once": plan.runs,
        "threads_per_run": threads if threads is not None else max(1, cores // max(plan.runs, 1)),
        "settings": {**settings, "model_kwargs": model_kwargs},
        "plan": {"/".join(map(str, cell)): round(end, 1) for cell, end in plan.expected_end_s.items()},
        "versions": {"python": platform.python_version(), "torch": th.__version__},
    }
    if not plan.cells:
        return CampaignOutcome(plan, {}, [], None, len(pending))
    deadline = started + budget - END_MARGIN_S
    configs = [
        RunConfig(
            task=resolve_task(task),
            agent=agent,
            seed=seed,
            env_steps=spec.env_steps,
            eval_every=spec.eval_every,
            eval_episodes=spec.eval_episodes,
            # No checkpoint: none could leave the machine.
            checkpoint_every=10 * spec.env_steps,
            run_dir=str(run_directory(out, task, agent, seed)),
            device=device,
            deadline=deadline,
            threads=job["threads_per_run"],
            verbose=verbose,
            model_kwargs=model_kwargs,
            checkpoint_at_deadline=False,
            cudnn_benchmark=settings["cudnn_benchmark"],
            tf32=settings["tf32"],
            async_eval=settings["async_eval"],
        )
        for task, agent, seed in plan.cells
    ]
    jobs: list[Job] = [("train", config) for config in configs]
    runs_started = time.time()
    counts = run_jobs(jobs, str(out), plan.runs, log=log, progress_every=progress_every)
    runs_seconds = time.time() - runs_started
    cells = [record for config in configs if (record := cell_record(spec.name, config, job)) is not None]
    job["runs"] = [
        {
            "task": record.task,
            "agent": record.agent,
            "seed": record.seed,
            "status": record.status,
            "env_steps": record.env_steps,
            "wall_time_s": record.provenance["wall_time_s"],
            "env_steps_per_s": record.provenance["env_steps_per_s"],
        }
        for record in cells
    ]
    job["counts"] = dict(counts)
    job["runs_wall_time_s"] = round(runs_seconds, 1)
    job["aggregate_env_steps_per_s"] = round(sum(r.env_steps for r in cells) / runs_seconds, 2) if runs_seconds > 0 else 0.0
    bundle_path = Path(bundle_dir if bundle_dir is not None else Path(out)) / f"{spec.name}-{job_id}.tar.gz"
    write_bundle(bundle_path, spec.name, job_id, cells, job)
    _, summary = merge_bundle(bundle_path, root)
    finished_now = sum(record.status == FINISHED for record in cells)
    log(
        f"[campaign] {finished_now} finished, {len(cells) - finished_now} partial in {runs_seconds:.0f} s, "
        f"{job['aggregate_env_steps_per_s']:.0f} env steps/s over all runs; ledger {root}: {summary.line()}; "
        f"bundle {bundle_path} ({bundle_path.stat().st_size / 1024:.0f} KiB)"
    )
    remaining = len([cell for cell in planned if cell not in Ledger.read(root).finished])
    return CampaignOutcome(plan, dict(counts), cells, bundle_path, remaining)


# ----------------------------------------------------------------------------------------------------
# The command line (from :func:`sb3_gaara.study.cli.main`).

#: Flags of a study grid, which a campaign defines itself
_GRID_FLAGS = (
    "preset",
    "cpu_scale",
    "tasks",
    "agents",
    "env_steps",
    "eval_every",
    "eval_episodes",
    "milestones",
    "checkpoint_every",
    "buffer_size",
    "time_limit",
    "checkpoint_at_deadline",
    "ray_address",
)


def main_campaign(args: argparse.Namespace) -> int:
    """``--campaign NAME``: run one job of it (``--budget``), or with ``--report-only`` rewrite its reports from the
    ledger. Exit code 0: every cell of the campaign is finished; 3: cells remain; 1: a run failed."""
    spec = CAMPAIGNS.get(args.campaign)
    if spec is None:
        raise SystemExit(f"Unknown campaign {args.campaign!r}; choose from {', '.join(sorted(CAMPAIGNS))}.")
    given = [name for name in _GRID_FLAGS if getattr(args, name, None) not in (None, False, [])]
    if given or args.curves:
        flags = ", ".join("--" + name.replace("_", "-") for name in [*given, *(["curves"] if args.curves else [])])
        raise SystemExit(
            f"--campaign {spec.name} defines its grid, its length and its stopping (at --budget, without checkpoints); "
            f"drop {flags}."
        )
    root = Path(args.ledger) if args.ledger else default_ledger(spec.name)
    reference = args.reference or default_reference_path()
    if not args.report_only:
        if args.budget is None or args.budget <= 0:
            raise SystemExit("--campaign needs --budget SECONDS (the job's time left), or --report-only.")
        model_kwargs = {**spec.runtime.get("model_kwargs", {}), **(args.hyperparams or {})}
        for key in sorted(SPEED_ONLY_MODEL_KWARGS):
            if getattr(args, key) is not None:
                model_kwargs[key] = getattr(args, key)
        runtime = {
            key: getattr(args, key) for key in ("cudnn_benchmark", "tf32", "async_eval") if getattr(args, key) is not None
        }
        try:
            outcome = run_campaign(
                spec,
                args.budget,
                args.out,
                ledger_root=root,
                bundle_dir=args.bundle,
                seeds=args.seeds,
                device=args.device or spec.runtime.get("device", "auto"),
                max_runs=args.workers,
                threads=args.threads,
                model_kwargs=model_kwargs,
                runtime=runtime,
                progress_every=args.progress_every,
                verbose=args.verbose,
            )
        except LedgerError as error:
            raise SystemExit(str(error)) from None
    written = write_campaign_report(spec, root, reference, args.seeds)
    print("[campaign] wrote " + ", ".join(str(path) for path in written.values()))
    if args.report_only:
        return 0
    failed = sum(n for status, n in outcome.counts.items() if status.startswith("failed"))
    if outcome.remaining:
        print(
            f"[campaign] {outcome.remaining} cell(s) to run: run the same command on the next job "
            f"(next: {format_steps(spec.env_steps)} env steps each)."
        )
    return 1 if failed else 3 if outcome.remaining else 0

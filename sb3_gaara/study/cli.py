"""The command line of the study: ``python -m sb3_gaara.study``. Arguments, the grid they ask for, and
``main``, which runs the grid's jobs and writes the reports."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sb3_gaara.study.catalogue import (
    ABLATION_AGENTS,
    AD_AGENTS,
    AGENTS,
    AUGMENTATION_AGENTS,
    CPU_TASK,
    MAIN_AGENTS,
    PAPER_MILESTONES,
    PAPER_TASKS,
    PRESETS,
    RANDOM_AGENT,
    RUNTIME_DEFAULTS,
    TaskSpec,
    resolve_task,
)
from sb3_gaara.study.report import (
    STUDY_FILE,
    default_reference_path,
    describe_settings,
    format_count,
    format_steps,
    write_json,
    write_reports,
)
from sb3_gaara.study.run import RunConfig, check_device, run_directory
from sb3_gaara.study.scheduling import Job, log_progress, run_jobs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The study's command-line arguments (``sys.argv[1:]`` if ``argv`` is None)."""
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
        help=f"agents: {', '.join(AGENTS)}; 'main' = {' '.join(MAIN_AGENTS)}, 'ablations', 'augmentation', 'ad', 'all'",
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
    parser.add_argument(
        "--cudnn-benchmark",
        action=argparse.BooleanOptionalAction,
        help="torch.backends.cudnn.benchmark in every run: cuDNN picks its fastest convolution kernels on a GPU "
        "(default: off)",
    )
    parser.add_argument("--reference", help="reference curves CSV (DrQ's dmc_planet_bench.csv); default: found nearby")
    parser.add_argument("--out", default="study", help="output directory (default: ./study)")
    parser.add_argument("--report-only", action="store_true", help="only rewrite curves.csv, PNGs and results.md")
    parser.add_argument("--verbose", type=int, default=0)
    return parser.parse_args(argv)


def _expand_agents(names: Sequence[str]) -> list[str]:
    agents: list[str] = []
    for name in names:
        groups = {
            "main": MAIN_AGENTS,
            "ablations": ABLATION_AGENTS,
            "augmentation": AUGMENTATION_AGENTS,
            "ad": AD_AGENTS,
            "all": tuple(AGENTS),
        }
        group = groups.get(name, (name,))
        for agent in group:
            if agent not in AGENTS:
                choices = ", ".join([*AGENTS, *groups])
                raise SystemExit(f"Unknown agent {agent!r}; choose from {choices}.")
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study the arguments ask for and write its reports. Exit code 0: every run finished; 3: runs
    remain (rerun the command to resume them); 1: a run failed."""
    args = parse_args(argv)
    pairs, settings = build_grid(args)
    # The limit counts from here: the whole command, setup and reports included, has to fit a job's slot.
    started = time.time()
    deadline = started + settings["time_limit"] if settings["time_limit"] else None
    if not args.report_only:
        check_device(settings["device"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {name: resolve_task(name) for name in dict.fromkeys(task for task, _ in pairs)}
    counts: dict[str, int] = {}
    if not args.report_only:
        jobs = plan_jobs(args, pairs, settings, tasks, out, deadline)
        _log_plan(jobs, pairs, settings, args.threads, out)
        # For results.md, also when --report-only rewrites it later with other (or no) flags.
        write_json(out / STUDY_FILE, {"settings": settings})
        counts = run_jobs(jobs, str(out), settings["workers"])
    written = write_reports(
        out,
        settings["milestones"],
        settings["eval_every"],
        reference_path=args.reference or default_reference_path(),
        agents=list(dict.fromkeys(AGENTS[agent].label for _, agent in pairs)),
        n_seeds=len(settings["seeds"]),
        max_step=settings["env_steps"],
        eval_episodes=settings["eval_episodes"],
    )
    print(f"[study] {dict(counts)} in {time.time() - started:.0f} s; wrote " + ", ".join(str(p) for p in written.values()))
    return _exit_code(counts, settings)


def plan_jobs(
    args: argparse.Namespace,
    pairs: Sequence[tuple[str, str]],
    settings: Mapping[str, Any],
    tasks: Mapping[str, TaskSpec],
    out: Path,
    deadline: float | None,
) -> list[Job]:
    """The random baselines (one per task), then every ``(task, agent)`` pair for each seed."""
    jobs: list[Job] = []
    if args.random_episodes > 0:
        jobs += [(RANDOM_AGENT, (task, args.random_episodes)) for task in tasks.values()]
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
                threads=args.threads,
                verbose=args.verbose,
                model_kwargs=settings["model_kwargs"],
                checkpoint_at_deadline=settings["checkpoint_at_deadline"],
                cudnn_benchmark=settings["cudnn_benchmark"],
            )
            jobs.append(("train", config))
    return jobs


def _log_plan(
    jobs: Sequence[Job], pairs: Sequence[tuple[str, str]], settings: Mapping[str, Any], threads: int, out: Path
) -> None:
    n_baselines = sum(kind == RANDOM_AGENT for kind, _ in jobs)
    tasks = dict.fromkeys(task for task, _ in pairs)
    log_progress(
        f"[study] {len(jobs) - n_baselines} runs ({len(pairs)} task x agent pairs x {len(settings['seeds'])} seeds) "
        f"+ {n_baselines} random baselines, {threads} torch thread(s) per run, out={out}"
    )
    log_progress(
        f"[study] tasks {' '.join(tasks)}; agents {' '.join(dict.fromkeys(agent for _, agent in pairs))}; "
        f"seeds {' '.join(map(str, settings['seeds']))}; {format_steps(settings['env_steps'])} env steps, "
        f"evaluated every {format_steps(settings['eval_every'])} over {format_count(settings['eval_episodes'], 'episode')}; "
        f"milestones {' '.join(format_steps(m) for m in settings['milestones'])}"
    )
    log_progress(f"[study] {describe_settings(settings)}")


def _exit_code(counts: Mapping[str, int], settings: Mapping[str, Any]) -> int:
    """1 if a run failed; 3 if nothing failed but runs remain, so that a driver can repeat the command until
    it returns 0; else 0."""
    unfinished = counts.get("stopped", 0) + counts.get("not started", 0)
    if unfinished:
        note = "" if settings["checkpoint_at_deadline"] else " (those stopped without a checkpoint start over)"
        print(f"[study] {unfinished} run(s) unfinished: run the same command again to resume them{note}.")
    failed = sum(n for status, n in counts.items() if status.startswith("failed"))
    return 1 if failed else 3 if unfinished else 0

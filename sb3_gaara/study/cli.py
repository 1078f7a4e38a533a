"""The command line of the study: ``python -m sb3_gaara.study``. Arguments, the grid they ask for, and
``main``, which runs the grid's jobs and writes the reports."""

from __future__ import annotations

import argparse
import difflib
import inspect
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rl_zoo3.utils import StoreDict

from sb3_gaara.algorithms import BY_ZOO_NAME
from sb3_gaara.study.campaign import main_campaign
from sb3_gaara.study.catalogue import (
    ABLATION_AGENTS,
    AD_AGENTS,
    AGENTS,
    AUGMENTATION_AGENTS,
    CPU_TASK,
    EVAL_PLANNER_NAMES,
    MAIN_AGENTS,
    PAPER_MILESTONES,
    PAPER_TASKS,
    PRESETS,
    RANDOM_AGENT,
    RUNTIME_DEFAULTS,
    SPEED_ONLY_MODEL_KWARGS,
    TaskSpec,
    check_eval_planners,
    planner_eval_label,
    resolve_task,
)
from sb3_gaara.study.ray_scheduling import RayOptions, connect, run_jobs_on_ray, runtime_env
from sb3_gaara.study.report import (
    STUDY_FILE,
    CurveConflict,
    default_reference_path,
    describe_settings,
    embed_margin_table,
    format_count,
    format_steps,
    merge_curves,
    write_json,
    write_reports,
)
from sb3_gaara.study.run import RunConfig, check_device, run_directory
from sb3_gaara.study.scheduling import NOT_STARTED, Job, log_progress, run_jobs


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
        "--agents",
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
    parser.add_argument(
        "--hyperparams",
        nargs="+",
        action=StoreDict,
        help="arguments of every run's algorithm, over the task's, the agent's and the preset's, in rl-zoo3's syntax "
        "(e.g. learning_starts:1000 batch_size:256); part of each run's identity",
    )
    parser.add_argument("--buffer-size", type=int, help="replay capacity in agent steps (default: 100k, capped by the run)")
    parser.add_argument("--workers", type=int, help="runs in parallel, one process each (default 1: in this process)")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per run (default 1, fastest for small CPU nets; on Ray: --cpus-per-run, rounded down)",
    )
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
        "--overlap-env-step",
        action=argparse.BooleanOptionalAction,
        help="GAARASAC(overlap_env_step=...): each update begins before the env step it follows, so that a GPU update "
        "runs while the simulator steps and renders; same results (default: off; the gpu-10min preset: on)",
    )
    parser.add_argument(
        "--cudnn-benchmark",
        action=argparse.BooleanOptionalAction,
        help="torch.backends.cudnn.benchmark in every run: cuDNN picks its fastest convolution kernels on a GPU "
        "(default: off)",
    )
    parser.add_argument(
        "--async-eval",
        action=argparse.BooleanOptionalAction,
        help="run the evaluations in a process of their own, on a copy of the policy, while the run trains on: the "
        "same evaluations in less wall-clock time where a core is free (default: off)",
    )
    parser.add_argument(
        "--eval-planners-every",
        type=int,
        default=None,
        metavar="ENV_STEPS",
        help="the planners of --eval-planners evaluate only at the evaluations at multiples of this many environment "
        "steps (default: the preset's, cpu-dmc: 8000; elsewhere every evaluation)",
    )
    parser.add_argument(
        "--eval-planners",
        action=argparse.BooleanOptionalAction,
        help="each evaluation of a Dreamer run acting by its actor (agent dreamer) also evaluates Dreamer's CEM planner "
        "and MPC on the same model, as curves of their own; not part of a run's identity (default: the preset's, "
        "cpu-dmc: on, with its smaller searches; elsewhere off, and on with the planners' defaults)",
    )
    parser.add_argument(
        "--tf32",
        action=argparse.BooleanOptionalAction,
        help="torch.backends.cuda.matmul.allow_tf32 in every run: the Linear layers' products in TF32 on a GPU, faster "
        "and less precise (default: off, torch's default)",
    )
    cluster = parser.add_argument_group(
        "Ray cluster", 'runs as Ray tasks (pip install "sb3-gaara[ray]"); --out must be on a filesystem every node sees'
    )
    cluster.add_argument(
        "--ray-address",
        help="run on Ray: auto (the cluster this machine is part of), HOST:PORT (the head's GCS port), ray://HOST:PORT "
        "(Ray Client), or local (start Ray on this machine); default: no Ray, --workers local processes",
    )
    cluster.add_argument("--cpus-per-run", type=float, default=1.0, help="CPUs a run's task reserves (default 1)")
    cluster.add_argument(
        "--gpus-per-run", type=float, default=0.0, help="GPUs a run's task reserves; 0.25 shares a card among 4 (default 0)"
    )
    cluster.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="times a run whose worker or node died is retried, from its checkpoint (default 3)",
    )
    parser.add_argument(
        "--progress-every",
        type=float,
        default=60.0,
        help="seconds between progress lines (runs done, running, failed; env steps/s); 0: none (default 60)",
    )
    parser.add_argument("--reference", help="reference curves CSV (DrQ's dmc_planet_bench.csv); default: found nearby")
    parser.add_argument("--out", default="study", help="output directory (default: ./study)")
    parser.add_argument(
        "--embed-in",
        metavar="PAGE",
        help="copy results.md's margin-over-random table into PAGE (e.g. README.md) between its two markers",
    )
    parser.add_argument("--report-only", action="store_true", help="only rewrite curves.csv, PNGs and results.md")
    parser.add_argument(
        "--curves",
        nargs="+",
        default=[],
        metavar="CSV",
        help="also report the evaluations in these curves.csv files of other jobs (one slice of the grid each, "
        "e.g. one --variants / --seeds per 10-minute GPU job); the written curves.csv holds them all",
    )
    campaign = parser.add_argument_group(
        "campaign",
        "a campaign (sb3_gaara.study.catalogue.CAMPAIGNS) is a grid filled job by job in a ledger in the repository "
        "(docs/results/<campaign>); each job runs the next cells not finished there",
    )
    campaign.add_argument("--campaign", help="run the next cells of this campaign (planet100k) within --budget")
    campaign.add_argument("--budget", type=float, help="seconds this job has for the campaign, reports included")
    campaign.add_argument("--ledger", help="the campaign's ledger folder (default: docs/results/<campaign>)")
    campaign.add_argument("--bundle", help="folder for the job's bundle (one .tar.gz of its ledger entries; default: --out)")
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
    settings["scale"] = preset.get("scale")
    settings["band"] = preset.get("band", "std")
    for key, default in RUNTIME_DEFAULTS.items():
        value = getattr(args, key)  # None: not given (0 is a value: --time-limit 0 lifts a preset's limit)
        settings[key] = value if value is not None else preset.get(key, default)
    hyperparams = args.hyperparams or {}
    _check_hyperparams(hyperparams, {agent for _, agent in pairs})
    model_kwargs = {**preset.get("model_kwargs", {}), **hyperparams}
    for key in sorted(SPEED_ONLY_MODEL_KWARGS):  # --cuda-graphs, --overlap-env-step
        if getattr(args, key) is not None:
            model_kwargs[key] = getattr(args, key)
    settings["model_kwargs"] = model_kwargs
    settings["eval_planners"] = _eval_planners(args.eval_planners, preset.get("eval_planners", {}), pairs)
    every = args.eval_planners_every if args.eval_planners_every is not None else preset.get("eval_planners_every")
    if every is not None and (every < 1 or every % settings["eval_every"]):
        raise SystemExit(
            f"--eval-planners-every must be a positive multiple of --eval-every ({settings['eval_every']}), got {every}."
        )
    settings["eval_planners_every"] = every
    if args.milestones:
        milestones = args.milestones
    else:
        # The preset's (or the papers') milestones that the runs reach, and the runs' end.
        reached = [m for m in preset.get("milestones", PAPER_MILESTONES) if m <= settings["env_steps"]]
        milestones = sorted({*reached, settings["env_steps"]})
    settings["milestones"] = sorted(milestones)
    _cluster_settings(args, settings)
    for key in ("env_steps", "eval_every", "eval_episodes", "checkpoint_every"):
        if settings[key] < 1:
            raise SystemExit(f"--{key.replace('_', '-')} must be positive, got {settings[key]}.")
    if settings["time_limit"] is not None and settings["time_limit"] < 0:
        raise SystemExit(f"--time-limit must be positive (0: no limit), got {settings['time_limit']}.")
    return pairs, settings


def _eval_planners(
    flag: bool | None, preset: Mapping[str, Mapping[str, Mapping[str, Any]]], pairs: Sequence[tuple[str, str]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """By agent key, the planners each evaluation of its runs also evaluates (:attr:`RunConfig.eval_planners`): the
    preset's for the grid's agents, none with ``--no-eval-planners``, and with ``--eval-planners`` both of Dreamer's
    planners, at the preset's settings or their defaults, for every Dreamer agent of the grid acting by its actor."""
    agents = list(dict.fromkeys(agent for _, agent in pairs))
    if flag is False:
        return {}
    chosen = {agent: {p: dict(s) for p, s in preset[agent].items()} for agent in agents if agent in preset}
    if flag:
        for agent in agents:
            spec = AGENTS[agent]
            if agent not in chosen and spec.algorithm == "dreamer" and "planner" not in spec.kwargs:
                chosen[agent] = {planner: {} for planner in EVAL_PLANNER_NAMES}
        if not chosen:
            raise SystemExit(
                "--eval-planners evaluates Dreamer's planners on the model of a Dreamer run acting by its actor, and the "
                f"grid has none ({', '.join(agents)}): add --agents dreamer, or drop --eval-planners."
            )
    for agent, planners in chosen.items():
        try:
            check_eval_planners(agent, planners)
        except ValueError as error:
            raise SystemExit(str(error)) from None
    return chosen


def report_labels(pairs: Sequence[tuple[str, str]], eval_planners: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The curve labels of the grid's agents in column order, each followed by those of its planners' evaluations."""
    labels: list[str] = []
    for _, agent in pairs:
        label = AGENTS[agent].label
        labels += [label, *(planner_eval_label(label, planner) for planner in eval_planners.get(agent, {}))]
    return list(dict.fromkeys(labels))


def _check_hyperparams(hyperparams: Mapping[str, Any], agents: set[str]) -> None:
    """Stop before any run starts if an agent's algorithm takes no argument of ``--hyperparams``'s name."""
    for agent in sorted(agents):
        algorithm = BY_ZOO_NAME[AGENTS[agent].algorithm]
        parameters = inspect.signature(algorithm).parameters
        for key in hyperparams:
            if key not in parameters:
                close = difflib.get_close_matches(key, list(parameters), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise SystemExit(
                    f"--hyperparams {key}: {algorithm.__name__} (agent {agent}) takes no argument {key!r}{hint}. "
                    f"Its arguments: {', '.join(name for name in parameters if name not in ('policy', 'env'))}."
                )


def _cluster_settings(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """``ray`` (a :class:`RayOptions` or ``None``) and the torch ``threads`` of a run, checked."""
    address, cpus, gpus, retries = args.ray_address, args.cpus_per_run, args.gpus_per_run, args.max_retries
    if cpus <= 0 or gpus < 0 or retries < 0:
        raise SystemExit(
            f"--cpus-per-run must be positive, --gpus-per-run and --max-retries at least 0; got {cpus:g}, {gpus:g}, {retries}."
        )
    if address is not None:
        if args.workers not in (None, 1):
            raise SystemExit(
                f"--workers {args.workers} runs local processes; with --ray-address the cluster's size and "
                "--cpus-per-run / --gpus-per-run decide how many runs run at once. Drop --workers."
            )
        settings["ray"] = RayOptions(address, cpus_per_run=float(cpus), gpus_per_run=float(gpus), max_retries=int(retries))
        settings["ray_address"] = address
    else:
        settings["ray"] = None
    settings["threads"] = args.threads if args.threads is not None else max(1, int(cpus)) if address is not None else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study the arguments ask for and write its reports. Exit code 0: every run finished; 3: runs
    remain (rerun the command to resume them); 1: a run failed."""
    args = parse_args(argv)
    if args.campaign is not None:
        return main_campaign(args)
    pairs, settings = build_grid(args)
    try:  # a missing, foreign or clashing --curves file stops the command before any run starts
        merge_curves([], args.curves)
    except (OSError, ValueError) as error:
        raise SystemExit(str(error)) from None
    # The limit counts from here: the whole command, setup and reports included, has to fit a job's slot.
    started = time.time()
    deadline = started + settings["time_limit"] if settings["time_limit"] else None
    ray_options: RayOptions | None = settings.pop("ray")
    if not args.report_only and ray_options is None:
        check_device(settings["device"])  # on Ray, the nodes' devices count, not this machine's
    # Absolute: on a cluster every node finds the run directories at the same path (a shared filesystem).
    out = Path(args.out).resolve() if ray_options is not None else Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = {name: resolve_task(name, settings["scale"]) for name in dict.fromkeys(task for task, _ in pairs)}
    counts: dict[str, int] = {}
    if not args.report_only:
        jobs = plan_jobs(args, pairs, settings, tasks, out, deadline)
        if ray_options is not None:
            connect(ray_options.address, runtime_env())
        _log_plan(jobs, pairs, settings, settings["threads"], out)
        # For results.md, also when --report-only rewrites it later with other (or no) flags.
        write_json(out / STUDY_FILE, {"settings": settings})
        if ray_options is not None:
            counts = run_jobs_on_ray(jobs, str(out), ray_options, progress_every=args.progress_every)
        else:
            counts = run_jobs(jobs, str(out), settings["workers"], progress_every=args.progress_every)
    try:
        written = write_reports(
            out,
            settings["milestones"],
            settings["eval_every"],
            reference_path=args.reference or default_reference_path(),
            agents=report_labels(pairs, settings["eval_planners"]),
            n_seeds=len(settings["seeds"]),
            max_step=settings["env_steps"],
            eval_episodes=settings["eval_episodes"],
            curves=args.curves,
            band=settings["band"],
        )
    except CurveConflict as error:  # a run directory and a --curves file disagree
        raise SystemExit(str(error)) from None
    if args.embed_in:
        try:
            embed_margin_table(written["results"], args.embed_in)
        except (OSError, ValueError) as error:
            raise SystemExit(f"--embed-in {args.embed_in}: {error}") from None
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
                threads=settings["threads"],
                verbose=args.verbose,
                model_kwargs=settings["model_kwargs"],
                checkpoint_at_deadline=settings["checkpoint_at_deadline"],
                cudnn_benchmark=settings["cudnn_benchmark"],
                tf32=settings["tf32"],
                async_eval=settings["async_eval"],
                eval_planners=settings["eval_planners"].get(agent, {}),
                eval_planners_every=settings["eval_planners_every"],
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
    for note in speed_option_notes(pairs, settings["model_kwargs"]):
        log_progress(f"[study] {note}")


def speed_option_notes(pairs: Sequence[tuple[str, str]], model_kwargs: Mapping[str, Any]) -> list[str]:
    """One line per speed-only option turned on that some of the grid's algorithms run without (their update is not
    written for it: ``speed_options``), naming them: the results are the same, only the speed differs."""
    notes = []
    algorithms = list(dict.fromkeys(BY_ZOO_NAME[AGENTS[agent].algorithm] for _, agent in pairs))
    for option in sorted(SPEED_ONLY_MODEL_KWARGS):
        if not model_kwargs.get(option):
            continue
        without = [a.__name__ for a in algorithms if option not in getattr(a, "speed_options", ())]
        if without:
            notes.append(
                f"{option}={model_kwargs[option]!r} applies where the update is written for it; {', '.join(without)} "
                "run without it (the same results, at their usual speed)"
            )
    return notes


def _exit_code(counts: Mapping[str, int], settings: Mapping[str, Any]) -> int:
    """1 if a run failed; 3 if nothing failed but runs remain (stopped, not started, or busy in another process), so
    that a driver can repeat the command until it returns 0; else 0."""
    unfinished = counts.get("stopped", 0) + counts.get(NOT_STARTED, 0)
    if unfinished:
        note = "" if settings["checkpoint_at_deadline"] else " (those stopped without a checkpoint start over)"
        print(f"[study] {unfinished} run(s) unfinished: run the same command again to resume them{note}.")
    if counts.get("busy"):
        print(
            f"[study] {counts['busy']} run(s) left alone: another process is training them (its host and pid are in "
            "each run's run.lock); run the same command again once it has stopped."
        )
    unfinished += counts.get("busy", 0)
    failed = sum(n for status, n in counts.items() if status.startswith("failed"))
    return 1 if failed else 3 if unfinished else 0

"""The study's files and reports: curve CSVs, run files, aggregation over seeds, milestone scores,
``results.md`` (with the aggregates over tasks and seeds of :mod:`~sb3_gaara.study.aggregates`) and one PNG per task.

Every file is written through :func:`sb3_gaara.common.durability.write_text_atomic` (a temporary file,
flushed and renamed), so that a kill never leaves half a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sb3_gaara.common.durability import write_text_atomic
from sb3_gaara.study.aggregates import DEFAULT_REPS, DEFAULT_SEED, aggregates_markdown
from sb3_gaara.study.catalogue import AGENTS, PUBLISHED_AGENTS, PUBLISHED_SCORES, RANDOM_AGENT, RANDOM_LABEL

#: Columns of ``curves.csv`` (those of DrQ's ``dmc_planet_bench.csv``).
CURVE_COLUMNS = ("step", "episode", "episode_reward", "env", "seed", "agent")

#: The settings of the last command that ran runs under ``--out`` (:func:`describe_settings` in ``results.md``).
STUDY_FILE = "study.json"

#: A run's files that hold its timing, latest state first.
_TIMING_FILES = ("done.json", "stopped.json", "checkpoint.json")

#: The performance profiles of ``results.md``'s aggregates, beside it.
PROFILES_FILE = "performance_profiles.png"

#: Table cell of a score that does not exist (an en dash, as in the published tables).
_MISSING = "\u2013"

# ----------------------------------------------------------------------------------------------------
# Files: JSON and curve CSVs.


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, key-sorted JSON (written then renamed)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, ``None`` if the file is missing."""
    return json.loads(path.read_text()) if path.exists() else None


def write_curve_csv(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows with :data:`CURVE_COLUMNS` (written then renamed)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(Path(path), text.getvalue())


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


def write_run_curve(
    path: Path,
    history: Sequence[Any],
    task: str,
    seed: int,
    label: str,
    others: Mapping[str, Sequence[Any]] | None = None,
) -> None:
    """Curve rows of a run (plus a ``std`` column over its evaluation episodes, which ``curves.csv`` drops), then those
    of ``others``: by label, further curves of the same run (its model evaluated by Dreamer's planners), which the
    reports read as agents of their own."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow([*CURVE_COLUMNS, "std"])
    for curve_label, curve in [(label, history), *(others or {}).items()]:
        for evaluation in curve:
            row = [evaluation.env_steps, evaluation.training_episodes, evaluation.mean_reward, task, seed, curve_label]
            writer.writerow([*row, evaluation.std_reward])
    write_text_atomic(path, text.getvalue())


def read_run_curve(path: Path) -> list[dict[str, Any]]:
    """A run's ``curve.csv`` as :func:`read_curve_csv` reads it, with each row's ``std`` (0 where absent)."""
    rows = read_curve_csv(path)
    if rows:
        with path.open(newline="") as file:
            for row, raw in zip(rows, csv.DictReader(file), strict=True):
                row["std"] = float(raw.get("std") or 0.0)
    return rows


# ----------------------------------------------------------------------------------------------------
# Collected from the run directories.


def collect_curves(out: str | os.PathLike) -> list[dict[str, Any]]:
    """Every run's curve under ``<out>/runs``, sorted by env, agent, seed and step."""
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(out).glob("runs/*/*/seed_*/curve.csv")):
        rows.extend(read_curve_csv(path))
    return sorted(rows, key=lambda row: (row["env"], row["agent"], row["seed"], row["step"]))


class CurveConflict(ValueError):
    """One evaluation (task, agent, seed, step) with two different returns in the curves :func:`merge_curves` joins."""


def merge_curves(rows: Iterable[Mapping[str, Any]], paths: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """``rows`` and the evaluations of other jobs' ``curves.csv`` files (``--curves``), as one sorted curve.

    A machine that keeps nothing runs one slice of a grid per job and returns its ``curves.csv``; this puts the
    slices back together. An evaluation found twice with the same return counts once; with another return it
    is an error naming both places, since two runs of one seed would otherwise be averaged as two seeds.
    """
    merged: dict[tuple[str, str, int, int], dict[str, Any]] = {}
    where: dict[tuple[str, str, int, int], str] = {}
    sources: list[tuple[str, Iterable[Mapping[str, Any]]]] = [("the run directories", rows)]
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"--curves {path}: no such file (give the curves.csv that a study wrote).")
        sources.append((str(path), read_curve_csv(path)))
    for source, source_rows in sources:
        for row in source_rows:
            key = (row["env"], row["agent"], row["seed"], row["step"])
            if key in merged and merged[key]["episode_reward"] != row["episode_reward"]:
                raise CurveConflict(
                    f"{row['env']}/{row['agent']} seed {row['seed']} at {row['step']} env steps has two returns, "
                    f"{merged[key]['episode_reward']} in {where[key]} and {row['episode_reward']} in {source}: "
                    "the same run was trained twice. Keep one of the two files (or one run directory)."
                )
            merged.setdefault(key, dict(row))
            where.setdefault(key, source)
    return [merged[key] for key in sorted(merged)]


def collect_random_baselines(out: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """``{task: (mean, std)}`` of the random-policy baselines under ``<out>/runs``."""
    baselines = {}
    for path in sorted(Path(out).glob(f"runs/*/{RANDOM_AGENT}/baseline.json")):
        data = json.loads(path.read_text())
        baselines[data["env"]] = (float(data["mean"]), float(data["std"]))
    return baselines


def collect_random_episodes(out: str | os.PathLike) -> dict[str, int]:
    """``{task: episodes}`` the random-policy baselines under ``<out>/runs`` averaged (for their standard error)."""
    return {
        data["env"]: int(data["episodes"])
        for data in (json.loads(path.read_text()) for path in sorted(Path(out).glob(f"runs/*/{RANDOM_AGENT}/baseline.json")))
    }


def collect_run_timings(out: str | os.PathLike) -> dict[tuple[str, str, int], dict[str, Any]]:
    """``{(env, agent label, seed): {"env_steps", "wall_time_s", "device", ...}}`` of the runs under ``<out>/runs``.

    From the run's latest state: ``done.json`` (finished), ``stopped.json`` (stopped by the deadline without
    a checkpoint) or ``checkpoint.json`` (stopped or interrupted after a checkpoint).
    """
    timings = {}
    for run_dir in sorted(Path(out).glob("runs/*/*/seed_*")):
        data = next((d for d in map(read_json, (run_dir / n for n in _TIMING_FILES)) if d is not None), None)
        if data is None or "wall_time_s" not in data:
            continue
        agent = AGENTS[run_dir.parent.name].label if run_dir.parent.name in AGENTS else run_dir.parent.name
        timings[(run_dir.parent.parent.name, agent, int(run_dir.name.removeprefix("seed_")))] = data
    return timings


# ----------------------------------------------------------------------------------------------------
# Scores.


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


def format_count(n: int, noun: str) -> str:
    """``"1 seed"``, ``"2 seeds"``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def format_steps(steps: int) -> str:
    """``"100k"``, ``"1M"``, ``"2.5k"``, ``"80"``: environment steps as the tables and logs write them."""
    if steps and steps % 1_000_000 == 0:
        return f"{steps // 1_000_000}M"
    if steps >= 1000 and steps % 100 == 0:
        return f"{steps / 1000:g}k"
    return str(steps)


def describe_settings(settings: Mapping[str, Any]) -> str:
    """One line of the settings that explain a study's speed and what its runs keep; printed and in ``results.md``."""
    limit = settings.get("time_limit")
    at_deadline = "checkpoint" if settings.get("checkpoint_at_deadline", True) else "no checkpoint"
    parts = [
        f"device {settings.get('device', 'auto')}",
        f"Ray at {settings['ray_address']}"
        if settings.get("ray_address")
        else f"{format_count(settings.get('workers', 1), 'worker')}",
        f"time limit {limit:g} s ({at_deadline} at the limit)" if limit else "no time limit",
        f"checkpoints every {format_steps(settings['checkpoint_every'])} env steps",
    ]
    if settings.get("cudnn_benchmark"):
        parts.append("cudnn.benchmark on")
    if settings.get("tf32"):
        parts.append("TF32 matrix products")
    if settings.get("async_eval"):
        parts.append("evaluations in the background")
    for agent, planners in (settings.get("eval_planners") or {}).items():
        searches = "; ".join(
            f"{planner} ({', '.join(f'{key}={value}' for key, value in search.items()) or 'its defaults'})"
            for planner, search in planners.items()
        )
        parts.append(f"each evaluation of {agent} also evaluates on its model {searches}")
    if settings.get("model_kwargs"):
        parts.append("GAARASAC " + ", ".join(f"{key}={value!r}" for key, value in settings["model_kwargs"].items()))
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------------------
# results.md.


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
    improvement_pairs: Sequence[tuple[str, str]] | None = None,
    bootstrap_reps: int = DEFAULT_REPS,
    bootstrap_seed: int = DEFAULT_SEED,
    profile_path: str | os.PathLike | None = None,
    random_episodes: Mapping[str, int] | None = None,
) -> str:
    """Markdown tables of our scores (mean±std over seeds) at each milestone next to the published ones, the
    aggregates over tasks and seeds (:func:`~sb3_gaara.study.aggregates.aggregates_markdown`), then where each
    run got (:func:`last_evaluation_markdown`).

    :param agents: our agent labels, in column order (default: as found in ``rows``)
    :param n_seeds: seeds per run; a cell averaging fewer shows ``(n=k)``
    :param timings: :func:`collect_run_timings`; ``max_step``: the runs' planned length; ``settings_line``:
        :func:`describe_settings` of the study
    :param improvement_pairs: ``(x, y)`` agent pairs whose probability of improvement P(X > Y) to give (default:
        the first agent against each other); ``bootstrap_reps``, ``bootstrap_seed``: of the confidence intervals;
        ``profile_path``: where to draw the performance profiles (none without it)
    """
    agents = list(agents) if agents is not None else sorted({row["agent"] for row in rows})
    tasks = sorted({row["env"] for row in rows} | set(random_baselines or {}))
    scores = milestone_scores(rows, milestones, eval_every)
    lines = [
        "# Results",
        "",
        "Return after the given number of *environment* steps (simulator steps after action repeat), "
        f"mean of {eval_episodes} evaluation episodes of the deterministic policy (on the center crop for the agents "
        "that crop); "
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
        lines.append(f"| {format_steps(milestone)} env steps | " + " | ".join(columns) + " |")
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
    if random_baselines and random_episodes:
        lines += margin_markdown(scores, agents, random_baselines, random_episodes)
    lines += aggregates_markdown(
        scores,
        agents,
        random_baselines=random_baselines,
        improvement_pairs=improvement_pairs,
        reps=bootstrap_reps,
        seed=bootstrap_seed,
        profile_path=None if profile_path is None else Path(profile_path),
        milestone_name=format_steps,
    )
    lines += last_evaluation_markdown(rows, agents, timings or {}, max_step, settings_line)
    return "\n".join(lines)


#: markers around the margin table in ``results.md``, so that another page (the README) can embed it verbatim
MARGIN_TABLE_BEGIN = "<!-- margin-over-random:begin -->"
MARGIN_TABLE_END = "<!-- margin-over-random:end -->"


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of ``values``: sample standard deviation (``ddof=1``) over ``sqrt(n)``; 0 for one
    value (a single seed has no spread to estimate)."""
    if len(values) < 2:
        return 0.0
    return float(np.std(values, ddof=1) / np.sqrt(len(values)))


def margin_over_random(values: Sequence[float], random_mean: float, random_std: float, random_episodes: int) -> float:
    """How many standard errors ``values``' mean lies above the random policy's: ``(mean - random mean) /
    sqrt(SE^2 + SE_random^2)``, with the seeds' SE (:func:`standard_error`) and the random policy's over its episodes
    (``std / sqrt(episodes)``). ``inf`` (or ``-inf``) when both errors are 0."""
    random_se = random_std / np.sqrt(random_episodes) if random_episodes > 0 else 0.0
    error = float(np.hypot(standard_error(values), random_se))
    difference = float(np.mean(values)) - random_mean
    if error == 0.0:
        return float("inf") if difference > 0 else float("-inf") if difference < 0 else 0.0
    return difference / error


def margin_markdown(
    scores: Mapping[int, Mapping[str, Mapping[str, Sequence[float]]]],
    agents: Sequence[str],
    random_baselines: Mapping[str, tuple[float, float]],
    random_episodes: Mapping[str, int],
) -> list[str]:
    """Lines of ``results.md``: per task, each agent's return at each milestone as mean ± standard error over seeds
    (``n`` seeds) and its margin over the random policy in standard errors (:func:`margin_over_random`), between
    :data:`MARGIN_TABLE_BEGIN` and :data:`MARGIN_TABLE_END`. Empty without a random baseline."""
    milestones = sorted(scores)
    tasks = sorted(task for task in random_baselines if any(task in scores[m] for m in milestones))
    if not tasks or not milestones:
        return []
    lines = [
        "## Margin over the random policy",
        "",
        "Mean ± standard error over seeds (n: seeds), and in brackets how many standard errors the mean lies above the "
        "random policy's (its error over its episodes included; with one seed there is no spread over seeds to count, so "
        "that margin counts the random policy's error alone).",
        "",
        MARGIN_TABLE_BEGIN,
    ]
    for task in tasks:
        mean, std = random_baselines[task]
        episodes = random_episodes.get(task, 0)
        lines += [
            f"| {task} | " + " | ".join(f"{format_steps(m)} env steps" for m in milestones) + " |",
            "|---" * (len(milestones) + 1) + "|",
        ]
        for agent in agents:
            cells = []
            for milestone in milestones:
                values = scores[milestone].get(task, {}).get(agent, [])
                if not values:
                    cells.append(_MISSING)
                    continue
                margin = margin_over_random(values, mean, std, episodes)
                cells.append(
                    f"{format_score(float(np.mean(values)), standard_error(values))} (n={len(values)}) [{margin:+.1f} SE]"
                )
            lines.append(f"| {agent} | " + " | ".join(cells) + " |")
        random_se = std / np.sqrt(episodes) if episodes else 0.0
        lines.append(
            f"| {RANDOM_LABEL} ({episodes} episodes) | " + " | ".join(format_score(mean, random_se) for _ in milestones) + " |"
        )
        lines.append("")
    lines += [MARGIN_TABLE_END, ""]
    return lines


def embed_margin_table(results: str | os.PathLike, page: str | os.PathLike) -> None:
    """Replace the margin table between :data:`MARGIN_TABLE_BEGIN` and :data:`MARGIN_TABLE_END` in ``page`` (the
    README) with the one of ``results`` (a ``results.md``), so that the page shows what the committed curves give.

    :raise ValueError: when either file lacks the markers (the page must hold them once, in that order)
    """

    def block(text: str, where: str) -> tuple[int, int]:
        begin, end = text.find(MARGIN_TABLE_BEGIN), text.find(MARGIN_TABLE_END)
        if begin < 0 or end < begin:
            raise ValueError(
                f"{where} has no margin table between {MARGIN_TABLE_BEGIN} and {MARGIN_TABLE_END}: "
                + ("write the report with a random baseline." if where == str(results) else "add the two markers.")
            )
        return begin, end + len(MARGIN_TABLE_END)

    source = Path(results).read_text()
    begin, end = block(source, str(results))
    target = Path(page).read_text()
    target_begin, target_end = block(target, str(page))
    write_text_atomic(Path(page), target[:target_begin] + source[begin:end] + target[target_end:])


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
    planned = f" (planned: {format_steps(max_step)})" if max_step else ""
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
            ", ".join(format_steps(row["step"]) for row in last),
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


# ----------------------------------------------------------------------------------------------------
# Plots and the reports of a study.


def load_reference(path: str | os.PathLike | None) -> list[dict[str, Any]]:
    """Rows of a reference curve file (DrQ's ``dmc_planet_bench.csv``); ``[]`` without a path."""
    return read_curve_csv(path) if path is not None else []


def default_reference_path() -> Path | None:
    """``../shared/reference/drq_planet_bench.csv`` or ``shared/reference/...`` seen from the working directory, if present."""
    for candidate in (Path("../shared/reference/drq_planet_bench.csv"), Path("shared/reference/drq_planet_bench.csv")):
        if candidate.exists():
            return candidate
    return None


#: Colours of agents by label; the same name (ours or published) gets the same colour, and every agent of the
#: catalogue has its own, so that a plot of any grid tells its curves apart.
_AGENT_COLORS = {
    "GAARA": "tab:blue",
    "SAC+AE": "tab:orange",
    "Contrastive": "tab:green",
    "CURL": "tab:olive",
    "DrQ": "black",
    "SLAC": "tab:purple",
    "PlaNet": "tab:brown",
    "Dreamer": "crimson",
    "Dreamer+CEM": "sienna",
    "Dreamer+MPC": "mediumvioletred",
    "SAC from state": "tab:gray",
    "GAARA+shift": "deepskyblue",
    "SAC:pixel": "tan",
    "GAARA (c=1)": "tab:cyan",
    "GAARA (c=0.5)": "limegreen",
    "GAARA-joint": "gold",
    "GAARA-random-anchor": "darkslategray",
    "GAARA-decoder-disc": "magenta",
    "AD(0,0)": "goldenrod",
    "AD(0,1)": "teal",
    "AD(1,0)": "tab:pink",
    "AD(1,1)": "navy",
}
#: Colours for labels without one of their own, none of them an agent's
_SPARE_COLORS = ("dodgerblue", "olivedrab", "orchid", "peru", "slategray", "yellowgreen", "darkred", "cadetblue")


def agent_colors(labels: Iterable[str]) -> dict[str, str]:
    """A colour for each of ``labels``, no two alike: the label's own (:data:`_AGENT_COLORS`); for a planner evaluated on
    another agent's model (``"Dreamer+CEM (actor's data)"``) its planner agent's, unless that agent is in the plot too;
    else the next spare one."""
    labels = list(labels)
    colors: dict[str, str] = {}
    spare = iter(_SPARE_COLORS)
    for label in dict.fromkeys(labels):
        stem = label.split(" (")[0]  # "Dreamer+CEM (actor's data)": the planner agent Dreamer+CEM
        wanted = _AGENT_COLORS.get(label) or (_AGENT_COLORS.get(stem) if stem not in labels else None)
        if wanted is None or wanted in colors.values():
            wanted = next((color for color in spare if color not in colors.values()), "tab:gray")
        colors[label] = wanted
    return colors


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
    band: str = "std",
) -> None:
    """Learning curves of one task: our agents (solid, mean ± std over seeds, or ± standard error with
    ``band="se"``), reference curves (dashed,
    mean ± std over their seeds), published scores (markers with ± std bars beside their milestone) and
    the random policy (dotted)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    horizon = max_step or max((points[-1][0] for points in ours.values() if points), default=0)
    # Published scores sit at their milestone, spread sideways so that their error bars do not overlap.
    visible = {m: scores for m, scores in (published or {}).items() if not horizon or m <= horizon}
    shown = [agent for agent in PUBLISHED_AGENTS if any(agent in scores for scores in visible.values())]
    colors = agent_colors([*ours, *(reference or {}), *shown])
    # Beyond 6 entries the legend goes beside the axes, where it hides no curve.
    beside = len(ours) + len(reference or {}) + len(shown) > 6
    figure = Figure(figsize=(11, 5) if beside else (8, 5), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for agent, points in ours.items():
        steps, means, stds, counts = (np.array(values) for values in zip(*points, strict=True))
        if band == "se":  # aggregate_curves' std is the population's: the sample's over sqrt(n) is std / sqrt(n - 1)
            stds = np.where(counts > 1, stds / np.sqrt(np.maximum(counts - 1, 1)), 0.0)
        label = f"{agent} (ours, {format_count(int(counts.max()), 'seed')}{', ± SE' if band == 'se' else ''})"
        marker = "o" if len(steps) == 1 else None  # a single evaluation is still visible
        axes.plot(steps, means, color=colors[agent], label=label, linewidth=2, marker=marker)
        axes.fill_between(steps, means - stds, means + stds, color=colors[agent], alpha=0.2)
    for agent, points in (reference or {}).items():
        kept = [point for point in points if not horizon or point[0] <= horizon]
        if not kept:
            continue
        steps, means, stds, counts = (np.array(values) for values in zip(*kept, strict=True))
        label = f"{agent} (reference curves, {format_count(int(counts.max()), 'seed')})"
        marker = "o" if len(steps) == 1 else None
        axes.plot(steps, means, color=colors[agent], linestyle="--", linewidth=1.2, label=label, marker=marker)
        axes.fill_between(steps, means - stds, means + stds, color=colors[agent], alpha=0.07)
    spread = 0.012 * (horizon or 1)
    for i, agent in enumerate(shown):
        marks = [(m, scores[agent]) for m, scores in visible.items() if agent in scores]
        offset = (i - (len(shown) - 1) / 2) * spread
        axes.errorbar(
            [m + offset for m, _ in marks],
            [score[0] for _, score in marks],
            yerr=[score[1] for _, score in marks],
            fmt=_PUBLISHED_MARKERS[agent],
            color=colors[agent],
            capsize=2,
            markersize=5,
            elinewidth=1,
            alpha=0.85,
            label=f"{agent} (published)",
        )
    if random_baseline is not None:
        axes.axhline(random_baseline[0], color="gray", linestyle=":", label=RANDOM_LABEL)
    axes.set_title(f"{task}: evaluation return ({format_count(eval_episodes, 'episode')}, deterministic policy)")
    axes.set_xlabel("environment steps (after action repeat)")
    axes.set_ylabel("return")
    if horizon:
        axes.set_xlim(0, horizon + max(0.02 * horizon, (len(shown) / 2 + 1) * spread))
    axes.grid(alpha=0.3)
    if beside:
        axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    else:
        axes.legend(fontsize=7, loc="upper left")
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
    curves: Sequence[str | os.PathLike] = (),
    improvement_pairs: Sequence[tuple[str, str]] | None = None,
    bootstrap_reps: int = DEFAULT_REPS,
    bootstrap_seed: int = DEFAULT_SEED,
    band: str = "std",
) -> dict[str, Path]:
    """Write ``curves.csv``, ``<task>.png``, ``results.md`` and, where it has aggregates,
    ``performance_profiles.png`` from the run directories under ``out`` (and the settings of the last command that
    ran them, ``study.json``), with the evaluations of the ``curves`` files of other jobs (:func:`merge_curves`).
    ``improvement_pairs``, ``bootstrap_reps``, ``bootstrap_seed``: as :func:`results_markdown` takes them; ``band``:
    the plots' band around our curves (:func:`plot_task`)."""
    out = Path(out)
    rows = merge_curves(collect_curves(out), curves)
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
        plot_task(task, task_curves, path, task_reference, published, baselines.get(task), max_step, eval_episodes, band=band)
        written[task] = path
    timings = collect_run_timings(out)
    study = read_json(out / STUDY_FILE)
    settings_line = describe_settings(study["settings"]) if study is not None else None
    profiles = out / PROFILES_FILE
    profiles.unlink(missing_ok=True)  # a profile of earlier runs must not stand beside results.md without them
    results = results_markdown(
        rows,
        milestones,
        eval_every,
        labels,
        baselines,
        n_seeds,
        eval_episodes,
        timings,
        max_step,
        settings_line,
        improvement_pairs=improvement_pairs,
        bootstrap_reps=bootstrap_reps,
        bootstrap_seed=bootstrap_seed,
        profile_path=profiles,
        random_episodes=collect_random_episodes(out),
    )
    write_text_atomic(out / "results.md", results)
    written["results"] = out / "results.md"
    if profiles.exists():
        written["profiles"] = profiles
    return written

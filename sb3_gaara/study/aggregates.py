"""Aggregates over tasks and seeds as Agarwal et al. (2021, "Deep RL at the Edge of the Statistical Precipice") ask
for them, computed with their library, ``rliable``.

A few seeds per task make per-task means noisy; the paper's remedy is to pool every run of every task after
normalising each task's returns, and to report

* the interquartile mean (IQM: the mean of the middle 50% of all runs x tasks, robust to outlier runs yet using
  half of the data, where the median uses one point),
* the optimality gap (how far the runs fall short of a normalised score of 1 on average; scores above 1 count as 1),
* the probability of improvement P(X > Y) (the chance that a run of X beats a run of Y on a task, averaged over tasks),
* performance profiles (the fraction of runs above each normalised score),

each with a 95% confidence interval from the *stratified* bootstrap: runs are resampled within each task, so
every resample keeps every task.

Normalisation (:func:`normalizer`): DeepMind Control returns lie in [0, 1000] (at most 1 reward per step over
1000 steps), so they are divided by 1000 and the optimality gap's threshold 1 is a return of 1000. PixelReach's
returns are negative distances: 0 is its random policy's return (measured per task by the study), 1 the return 0
of a mass that starts on the goal, the best any policy can score (the study measures no scripted policy). Without
a measured random baseline PixelReach is left out of the aggregates, and the report says so.

``rliable`` is imported only here, when the aggregates are computed: its import (pandas, arch, seaborn) is slow,
and a study must still write its other reports where it is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from sb3_gaara.study.catalogue import CPU_TASK

#: A DeepMind Control task's highest return (reward in [0, 1] for 1000 environment steps): its normaliser.
DMC_MAX_RETURN = 1000.0

#: Bootstrap resamples of the reports (the paper's figures use 2000 for performance profiles).
DEFAULT_REPS = 2000

#: Seed of the bootstrap, so that a report written twice from the same curves says the same.
DEFAULT_SEED = 0

#: Coverage of the confidence intervals.
CONFIDENCE = 0.95

#: What the pip install must give when rliable cannot be imported.
INSTALL_HINT = "pip install 'rliable>=1.2' 'pandas>=2,<3' (both are dependencies of sb3-gaara)"


def import_rliable() -> tuple[Any, Any]:
    """``(rliable.library, rliable.metrics)``, or an :class:`ImportError` that says what to install.

    rliable 1.2 requires ``arch<8``, and arch 7 fails at import under pandas 3 (``deprecate_kwarg`` changed its
    signature): the error is a ``TypeError`` from arch, not an ``ImportError``, hence the broad ``except``.
    """
    try:
        from rliable import library, metrics
    except Exception as error:
        raise ImportError(f"rliable cannot be imported ({type(error).__name__}: {error}); {INSTALL_HINT}.") from error
    return library, metrics


@contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """Seed numpy's global generator for the block, then restore its state.

    rliable's stratified bootstrap draws its indices with ``np.random.choice`` whatever ``random_state`` it is
    given, so only the global generator makes it reproducible; restoring it leaves the caller's random stream
    as it was.
    """
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def normalizer(task: str, random_baselines: Mapping[str, tuple[float, float]]) -> tuple[float, float] | None:
    """``(zero, one)``: the returns of ``task`` that score 0 and 1 (see the module docstring), ``None`` for
    PixelReach without a measured random baseline.

    :param random_baselines: ``{task: (mean, std)}`` of the random policy (only PixelReach needs it)
    """
    if task != CPU_TASK:
        return 0.0, DMC_MAX_RETURN
    baseline = random_baselines.get(task)
    return (baseline[0], 0.0) if baseline is not None and baseline[0] < 0 else None


def normalize_returns(returns: Sequence[float], zero: float, one: float) -> np.ndarray:
    """``returns`` mapped linearly so that ``zero`` scores 0 and ``one`` scores 1."""
    return (np.asarray(returns, dtype=float) - zero) / (one - zero)


def score_matrices(
    task_scores: Mapping[str, Mapping[str, Sequence[float]]],
    agents: Sequence[str],
    random_baselines: Mapping[str, tuple[float, float]],
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """``({agent: normalised scores, runs x tasks}, tasks, notes)`` from ``{task: {agent: [score of each seed]}}``.

    Agents are compared on the same tasks: those that every agent with a score has reached (an agent with no
    score is left out). The stratified bootstrap needs as many runs on each task, so an agent keeps its first
    ``n`` seeds of each task, ``n`` its fewest on any of them. ``notes`` say what was left out, and why.
    """
    notes = []
    bounds = {}
    for task in sorted(task_scores):
        bound = normalizer(task, random_baselines)
        if bound is None:
            notes.append(f"{task} (normalised by the random policy's return, which was not measured)")
        else:
            bounds[task] = bound
    present = [agent for agent in agents if any(task_scores[task].get(agent) for task in bounds)]
    tasks = [task for task in bounds if all(task_scores[task].get(agent) for agent in present)]
    skipped = sorted(set(bounds) - set(tasks))
    if skipped and tasks:
        notes.append(f"{', '.join(skipped)} (not every agent has a score there)")
    matrices = {}
    for agent in present if tasks else []:
        runs = min(len(task_scores[task][agent]) for task in tasks)
        columns = [normalize_returns(task_scores[task][agent][:runs], *bounds[task]) for task in tasks]
        matrices[agent] = np.stack(columns, axis=1)
        dropped = sum(len(task_scores[task][agent]) for task in tasks) - runs * len(tasks)
        if dropped:
            notes.append(f"{dropped} run(s) of {agent} beyond its {runs} per task")
    return matrices, tasks, notes


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """P(X > Y) averaged over tasks, ties counting one half: rliable's ``metrics.probability_of_improvement``
    (the Mann-Whitney U statistic over ``n_x * n_y``), computed over all pairs of runs at once: rliable's version
    calls scipy's test for each task of each of the thousands of bootstrap resamples (about 100 times slower)."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def interval_estimates(
    matrices: Mapping[str, np.ndarray], reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """``{agent: {"IQM" | "Optimality gap": (point, lower, upper)}}`` with stratified-bootstrap 95% intervals."""
    library, metrics = import_rliable()

    def iqm_and_gap(scores: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_optimality_gap(scores, gamma=1.0)])

    with seeded_global_numpy(seed):
        points, intervals = library.get_interval_estimates(
            dict(matrices), iqm_and_gap, reps=_check_reps(reps), confidence_interval_size=CONFIDENCE
        )
    return {
        agent: {
            name: (float(points[agent][i]), float(intervals[agent][0, i]), float(intervals[agent][1, i]))
            for i, name in enumerate(("IQM", "Optimality gap"))
        }
        for agent in matrices
    }


def improvement_estimates(
    matrices: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
) -> dict[tuple[str, str], tuple[float, float, float]]:
    """``{(x, y): (P(X > Y), lower, upper)}``, each agent's runs resampled independently within each task."""
    library, _ = import_rliable()
    for x, y in pairs:
        if x not in matrices or y not in matrices:
            raise ValueError(f"No scores for the pair ({x!r}, {y!r}): choose agents among {sorted(matrices)}.")
    with seeded_global_numpy(seed):
        points, intervals = library.get_interval_estimates(
            {(x, y): [matrices[x], matrices[y]] for x, y in pairs},
            probability_of_improvement,
            reps=_check_reps(reps),
            confidence_interval_size=CONFIDENCE,
        )
    bounds = {pair: np.ravel(intervals[pair]) for pair in pairs}  # (2, 1): the lower and upper bound
    return {pair: (float(points[pair]), float(bounds[pair][0]), float(bounds[pair][1])) for pair in pairs}


def performance_profiles(
    matrices: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = DEFAULT_REPS, seed: int = DEFAULT_SEED
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(profiles, intervals)``: for each agent the fraction of its runs (all tasks) scoring above each ``tau``,
    and the ``(2, len(taus))`` bounds of its 95% interval (rliable's score distributions, computed at once over
    all ``taus`` rather than by ``np.vectorize``)."""
    library, _ = import_rliable()

    def fraction_above(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
        return np.mean(scores.reshape(-1, 1) > taus, axis=0)

    with seeded_global_numpy(seed):
        return library.create_performance_profile(
            dict(matrices), taus, custom_profile_func=fraction_above, reps=_check_reps(reps)
        )


def plot_performance_profiles(
    profiles_by_title: Mapping[str, tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray], np.ndarray]],
    path: str | Path,
) -> None:
    """One panel per title (a milestone) of :func:`performance_profiles`' ``(profiles, intervals, taus)``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from rliable import plot_utils

    figure = Figure(figsize=(5 * len(profiles_by_title), 4), dpi=110)
    FigureCanvasAgg(figure)
    for i, (title, (profiles, intervals, taus)) in enumerate(profiles_by_title.items()):
        axes = figure.add_subplot(1, len(profiles_by_title), i + 1)
        plot_utils.plot_performance_profiles(
            profiles, taus, performance_profile_cis=intervals, ax=axes, xlabel=r"normalised score $\tau$", labelsize=10
        )
        axes.set_title(title)
        axes.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    figure.savefig(path)


def aggregates_markdown(
    scores: Mapping[int, Mapping[str, Mapping[str, Sequence[float]]]],
    agents: Sequence[str],
    random_baselines: Mapping[str, tuple[float, float]] | None = None,
    improvement_pairs: Sequence[tuple[str, str]] | None = None,
    reps: int = DEFAULT_REPS,
    seed: int = DEFAULT_SEED,
    profile_path: str | Path | None = None,
    milestone_name: Callable[[int], str] = str,
) -> list[str]:
    """The "Aggregates" section of ``results.md``: IQM and optimality gap per agent, probabilities of improvement
    and (with ``profile_path``) a PNG of performance profiles, at each milestone where there are at least 2 seeds
    or 2 tasks; otherwise a line that says why there are none.

    :param scores: :func:`~sb3_gaara.study.report.milestone_scores` (raw returns)
    :param improvement_pairs: ``(x, y)`` pairs whose P(X > Y) to give; default: the first agent against each other
    :param milestone_name: how a milestone reads (``format_steps``)
    """
    unknown = sorted({agent for pair in improvement_pairs or () for agent in pair} - set(agents))
    if unknown:
        raise ValueError(f"improvement_pairs name {unknown}, which are not among the agents {list(agents)}.")
    baselines = random_baselines or {}
    lines = [
        "## Aggregates",
        "",
        "Over all runs of all tasks (Agarwal et al., 2021, computed with rliable). Scores normalised per task: "
        f"DeepMind Control returns / {DMC_MAX_RETURN:.0f} (1 = a return of {DMC_MAX_RETURN:.0f}); "
        f"{CPU_TASK}: (return - random policy's) / (0 - random policy's), 0 = random, 1 = the best possible return 0. "
        "IQM: mean of the middle 50% of the scores; optimality gap: mean shortfall below 1 (lower is better); "
        "P(X > Y): chance that a run of X beats a run of Y on a task, averaged over tasks (0.5: no difference). "
        f"[95% confidence intervals]: stratified bootstrap over the runs of each task ({reps} resamples, seed {seed}); "
        "with one seed per task they have zero width.",
        "",
    ]
    try:
        import_rliable()
    except ImportError as error:
        return [*lines, f"Not computed: {error}", ""]
    profiles: dict[str, tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray], np.ndarray]] = {}
    for milestone, task_scores in scores.items():
        name = f"{milestone_name(milestone)} env steps"
        matrices, tasks, notes = score_matrices(task_scores, agents, baselines)
        left_out = f" Left out: {'; '.join(notes)}." if notes else ""
        if not matrices:
            lines += [f"{name}: no scores to aggregate.{left_out}", ""]
            continue
        if max(matrix.shape[0] for matrix in matrices.values()) < 2 and len(tasks) < 2:
            lines += [f"{name}: one seed of one task, nothing to aggregate (needs at least 2 seeds or 2 tasks).", ""]
            continue
        estimates = interval_estimates(matrices, reps, seed)
        lines += [
            f"| {name} | runs x tasks | IQM [95% CI] | optimality gap [95% CI] |",
            "|---|---|---|---|",
            *(
                f"| {agent} | {m.shape[0]} x {m.shape[1]} | "
                + " | ".join(_format_interval(*estimates[agent][key]) for key in ("IQM", "Optimality gap"))
                + " |"
                for agent, m in matrices.items()
            ),
            "",
            f"Tasks: {', '.join(tasks)}.{left_out}",
            "",
        ]
        present = list(matrices)
        pairs = improvement_pairs if improvement_pairs is not None else [(present[0], y) for y in present[1:]]
        pairs = [pair for pair in pairs if pair[0] in matrices and pair[1] in matrices]
        if pairs:
            improvements = improvement_estimates(matrices, pairs, reps, seed)
            lines += [f"| {name} | P(X > Y) [95% CI] |", "|---|---|"]
            lines += [f"| {x} > {y} | {_format_interval(*improvements[(x, y)])} |" for x, y in pairs]
            lines.append("")
        if profile_path is not None:
            everything = np.concatenate([matrix.ravel() for matrix in matrices.values()])
            taus = np.linspace(min(0.0, everything.min()), max(1.0, everything.max()), 101)
            profiles[name] = (*performance_profiles(matrices, taus, reps, seed), taus)
    if profiles and profile_path is not None:
        plot_performance_profiles(profiles, profile_path)
        lines += [f"![Performance profiles]({Path(profile_path).name})", ""]
    return lines


def _check_reps(reps: int) -> int:
    if isinstance(reps, bool) or not isinstance(reps, (int, np.integer)) or reps < 1:
        raise ValueError(f"reps must be a positive number of bootstrap resamples (e.g. {DEFAULT_REPS}), got {reps!r}.")
    return int(reps)


def _format_interval(point: float, lower: float, upper: float) -> str:
    return f"{point:.2f} [{lower:.2f}, {upper:.2f}]"

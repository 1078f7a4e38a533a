"""The aggregates over tasks and seeds (IQM, optimality gap, probability of improvement, performance profiles with
stratified-bootstrap intervals) on hand-made scores whose values are known."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from sb3_gaara.study import write_curve_csv, write_reports
from sb3_gaara.study.aggregates import (
    aggregates_markdown,
    improvement_estimates,
    interval_estimates,
    normalize_returns,
    normalizer,
    performance_profiles,
    probability_of_improvement,
    score_matrices,
)

REPS = 200  # the reports use 2000; enough here for intervals whose bounds are the extreme resamples


def _row(step: int, reward: float, seed: int, env: str, agent: str) -> dict:
    return {"step": step, "episode": 0, "episode_reward": reward, "env": env, "seed": seed, "agent": agent}


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    scores = np.arange(1.0, 9.0).reshape(8, 1)  # one task, 8 runs
    iqm, lower, upper = interval_estimates({"A": scores}, reps=REPS)["A"]["IQM"]
    assert iqm == pytest.approx(np.mean([3, 4, 5, 6])) == scipy.stats.trim_mean(scores, 0.25, axis=None) == 4.5
    assert 1 < lower < iqm < upper < 8
    # The trimming pools all runs of all tasks: 2 runs x 4 tasks of 1..8 give the same IQM.
    assert interval_estimates({"A": scores.reshape(2, 4)}, reps=REPS)["A"]["IQM"][0] == pytest.approx(4.5)


def test_interval_of_two_runs_spans_both() -> None:
    # Resamples of runs (0, 1) have means 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4: the 95% interval is [0, 1].
    assert interval_estimates({"A": np.array([[0.0], [1.0]])}, reps=REPS)["A"]["IQM"] == pytest.approx((0.5, 0.0, 1.0))


def test_optimality_gap_and_constant_scores() -> None:
    estimates = interval_estimates({"above": np.full((3, 2), 1.5), "half": np.full((3, 2), 0.5)}, reps=REPS)
    assert estimates["above"]["Optimality gap"] == (0.0, 0.0, 0.0)  # scores above 1 count as 1
    assert estimates["half"]["Optimality gap"] == pytest.approx((0.5, 0.5, 0.5))
    assert estimates["half"]["IQM"] == pytest.approx((0.5, 0.5, 0.5))  # constant scores: an interval of zero width
    # Mixed: gamma - mean(min(scores, 1)) = 1 - (0.2 + 1 + 0.6 + 1) / 4.
    gap = interval_estimates({"A": np.array([[0.2, 3.0], [0.6, 1.0]])}, reps=REPS)["A"]["Optimality gap"][0]
    assert gap == pytest.approx(0.3)


def test_probability_of_improvement() -> None:
    ones, zeros = np.ones((3, 1)), np.zeros((3, 1))
    assert probability_of_improvement(ones, zeros) == 1.0
    assert probability_of_improvement(zeros, ones) == 0.0
    assert probability_of_improvement(ones, ones) == 0.5
    # Equal to rliable's Mann-Whitney form, ties included, with different numbers of runs.
    from rliable import metrics

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, size=(5, 3)).astype(float), rng.integers(0, 4, size=(4, 3)).astype(float)
    assert probability_of_improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
    estimates = improvement_estimates({"A": ones, "B": zeros, "C": zeros}, [("A", "B"), ("B", "C")], reps=REPS)
    assert estimates == {("A", "B"): (1.0, 1.0, 1.0), ("B", "C"): (0.5, 0.5, 0.5)}
    with pytest.raises(ValueError, match=r"No scores for the pair \('A', 'D'\)"):
        improvement_estimates({"A": ones}, [("A", "D")], reps=REPS)
    # A chosen pair instead of the first agent against each other; a pair naming no agent of the study is an error.
    scores = {1000: {"cheetah_run": {"A": [100.0, 300.0], "B": [200.0, 200.0]}}}
    assert "| B > A | 0.50 [0.00, 1.00] |" in aggregates_markdown(
        scores, ["A", "B"], improvement_pairs=[("B", "A")], reps=REPS
    )
    with pytest.raises(ValueError, match=r"improvement_pairs name \['Z'\], which are not among the agents \['A', 'B'\]"):
        aggregates_markdown(scores, ["A", "B"], improvement_pairs=[("A", "Z")], reps=REPS)


def test_performance_profile_is_the_fraction_of_runs_above_each_score() -> None:
    scores = np.array([[0.1, 0.9], [0.5, 0.5]])
    profiles, intervals = performance_profiles({"A": scores}, np.array([0.0, 0.5, 1.0]), reps=REPS)
    np.testing.assert_allclose(profiles["A"], [1.0, 0.25, 0.0])
    assert intervals["A"].shape == (2, 3) and intervals["A"][0, 0] == intervals["A"][1, 0] == 1.0


def test_bootstrap_is_seeded_and_leaves_the_global_generator_alone() -> None:
    scores = {"A": np.arange(12.0).reshape(6, 2)}
    np.random.seed(123)
    state = np.random.get_state()
    first = interval_estimates(scores, reps=REPS, seed=1)
    assert interval_estimates(scores, reps=REPS, seed=1) == first
    assert interval_estimates(scores, reps=REPS, seed=2) != first
    after = np.random.get_state()
    assert after[0] == state[0] and np.array_equal(after[1], state[1]) and after[2:] == state[2:]
    with pytest.raises(ValueError, match="reps must be a positive number"):
        interval_estimates(scores, reps=0)


def test_normalisation() -> None:
    assert normalizer("cheetah_run", {}) == (0.0, 1000.0)
    np.testing.assert_allclose(normalize_returns([0.0, 500.0, 1000.0], *normalizer("walker_walk", {})), [0, 0.5, 1])
    # PixelReach: the random policy's return scores 0, the best possible return (0) scores 1.
    bounds = normalizer("pixel_reach", {"pixel_reach": (-50.0, 3.0)})
    np.testing.assert_allclose(normalize_returns([-50.0, -5.0, 0.0], *bounds), [0.0, 0.9, 1.0])
    assert normalizer("pixel_reach", {}) is None


def test_score_matrices_keep_the_tasks_and_runs_every_agent_has() -> None:
    task_scores = {
        "cheetah_run": {"A": [100.0, 200.0, 300.0], "B": [400.0]},
        "walker_walk": {"A": [500.0, 600.0], "B": [700.0]},
        "finger_spin": {"A": [800.0]},  # B never got there
        "pixel_reach": {"A": [-10.0], "B": [-20.0]},  # no random baseline
    }
    matrices, tasks, notes = score_matrices(task_scores, ["A", "B", "C"], {})
    assert tasks == ["cheetah_run", "walker_walk"] and list(matrices) == ["A", "B"]  # C has no score
    np.testing.assert_allclose(matrices["A"], [[0.1, 0.5], [0.2, 0.6]])  # A's third cheetah seed dropped
    np.testing.assert_allclose(matrices["B"], [[0.4, 0.7]])
    assert notes == [
        "pixel_reach (normalised by the random policy's return, which was not measured)",
        "finger_spin (not every agent has a score there)",
        "1 run(s) of A beyond its 2 per task",
    ]


def test_section_says_why_it_is_absent() -> None:
    lines = aggregates_markdown({100_000: {"cheetah_run": {"A": [300.0], "B": [200.0]}}}, ["A", "B"], reps=REPS)
    assert lines[0] == "## Aggregates"
    assert "100000 env steps: one seed of one task, nothing to aggregate (needs at least 2 seeds or 2 tasks)." in lines
    lines = aggregates_markdown({5000: {"pixel_reach": {"A": [-20.0, -30.0]}}}, ["A"], reps=REPS)
    assert (
        "5000 env steps: no scores to aggregate. Left out: pixel_reach (normalised by the random policy's return, "
        "which was not measured)." in lines
    )


def test_results_md_gets_the_aggregates_and_the_profiles(tmp_path) -> None:
    # 2 tasks x 2 agents x 2 seeds at 10k env steps, without training: a curves.csv given as another job's.
    returns = {("cheetah_run", "A"): (100.0, 300.0), ("walker_walk", "A"): (500.0, 700.0)}
    returns |= {("cheetah_run", "B"): (200.0, 200.0), ("walker_walk", "B"): (400.0, 400.0)}
    rows = [
        _row(10_000, value, seed, env, agent) for (env, agent), values in returns.items() for seed, value in enumerate(values)
    ]
    write_curve_csv(tmp_path / "job.csv", rows)
    written = write_reports(
        tmp_path / "out", [10_000], 1000, agents=["A", "B"], curves=[tmp_path / "job.csv"], bootstrap_reps=REPS
    )
    table = written["results"].read_text().split("## Aggregates\n", 1)[1].split("## Last evaluation", 1)[0]
    # A: scores 0.1, 0.3, 0.5, 0.7: the IQM keeps 0.3 and 0.5; the gap is 1 - 0.4. B: 0.2, 0.2, 0.4, 0.4.
    assert "| A | 2 x 2 | 0.40 [" in table and "] | 0.60 [" in table
    assert "| B | 2 x 2 | 0.30 [0.30, 0.30] | 0.70 [0.70, 0.70] |" in table  # B's runs agree within each task
    # P(A > B): cheetah_run 1/2 (100 < 200 < 300), walker_walk 1 (500, 700 > 400).
    assert "| A > B | 0.75 [" in table
    assert "Tasks: cheetah_run, walker_walk." in table and "![Performance profiles](performance_profiles.png)" in table
    assert written["profiles"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

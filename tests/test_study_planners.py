"""A Dreamer run's evaluations that also evaluate its planners on the same model (``RunConfig.eval_planners``): curves
of their own, the run itself unchanged, resumable, reported, and refused where they mean nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch as th

from sb3_gaara import Dreamer, study
from sb3_gaara.dreamer import evaluate_planners
from sb3_gaara.study import RunConfig, StopRequest, build_grid, catalogue, read_curve_csv, resolve_task, run_training
from sb3_gaara.study import run as study_run
from sb3_gaara.study.report import describe_settings

#: Dreamer's world model on sequences of 4 frames, one update per agent step from step 10, networks of a few units
TINY_DREAMER = {
    "learning_starts": 10,
    "batch_size": 8,
    "sequence_length": 4,
    "train_freq": 1,
    "gradient_steps": 1,
    "imagination_horizon": 3,
    "policy_kwargs": {"depth": 4, "deter_size": 8, "stoch_size": 4, "hidden_size": 8, "units": 8, "layers": 1},
}
#: the planners' search, small enough for seconds
TINY_SEARCH = {"candidates": 8, "top_k": 2, "iterations": 2, "horizon": 3}
PLANNERS = {"cem": TINY_SEARCH, "dreamer_mpc": TINY_SEARCH}
LABELS = {"cem": "Dreamer+CEM (actor's data)", "dreamer_mpc": "Dreamer+MPC (actor's data)"}


def _config(run_dir: Path, **overrides) -> RunConfig:
    settings = {
        "task": resolve_task("pixel_reach"),
        "agent": "dreamer",
        "seed": 0,
        "env_steps": 60,
        "eval_every": 30,
        "eval_episodes": 1,
        "checkpoint_every": 1_000,
        "run_dir": str(run_dir),
        "device": "cpu",
        "threads": 1,
        "model_kwargs": TINY_DREAMER,
    }
    return RunConfig(**{**settings, **overrides})


def _curves(config: RunConfig) -> dict[str, list[tuple[int, int, float]]]:
    curves: dict[str, list[tuple[int, int, float]]] = {}
    for row in read_curve_csv(Path(config.run_dir) / "curve.csv"):
        curves.setdefault(row["agent"], []).append((row["step"], row["episode"], row["episode_reward"]))
    return curves


def _planner_return(config: RunConfig, model: Dreamer, planner: str) -> float:
    """The reference: the planner's evaluation of ``model`` on a fresh evaluation env, torch seeded as the eval env."""
    env = study_run.make_train_env(config.run_task(), config.seed, eval_env=True)
    th.manual_seed(config.seed + 10_000)
    try:
        mean, _ = evaluate_planners(model, env, (planner,), config.eval_episodes, planner_kwargs={planner: TINY_SEARCH})[
            planner
        ]
    finally:
        env.close()
    return mean


def test_a_dreamer_runs_evaluations_also_evaluate_its_planners_and_leave_the_run_as_it_was(tmp_path) -> None:
    plain = _config(tmp_path / "plain")
    with_planners = _config(tmp_path / "planners", eval_planners=PLANNERS)
    assert plain.identity() == with_planners.identity()  # config.json: the same run
    assert run_training(plain) == run_training(with_planners) == "done"

    curves, reference = _curves(with_planners), _curves(plain)
    assert list(reference) == ["Dreamer"]
    assert list(curves) == ["Dreamer", *LABELS.values()]
    # The actor's curve and the final parameters, bit for bit: the planners drew from a forked generator.
    assert curves["Dreamer"] == reference["Dreamer"]
    assert [step for step, _, _ in reference["Dreamer"]] == [0, 30, 60]
    models = [Dreamer.load(Path(c.run_dir) / "final_model.zip", device="cpu") for c in (plain, with_planners)]
    for (name, a), b in zip(models[0].policy.state_dict().items(), models[1].policy.state_dict().values(), strict=True):
        assert th.equal(a, b), name
    assert models[1].planner == "actor" and models[1].planner_kwargs == {}  # switched back after each evaluation
    # One row per planner at each evaluation step, with the actor's episode count there.
    for label in LABELS.values():
        assert [(step, episode) for step, episode, _ in curves[label]] == [(s, e) for s, e, _ in curves["Dreamer"]]
    # The first rows are the planners' evaluations of the model before training (the final model made one more update
    # after the evaluation at 60, in the same agent step).
    env = study_run.make_train_env(with_planners.run_task(), 0)
    initial = study_run._new_model(with_planners, env, 30)
    env.close()
    assert isinstance(initial, Dreamer)
    for planner, label in LABELS.items():
        assert curves[label][0][2] == pytest.approx(_planner_return(with_planners, initial, planner), abs=1e-5)
    # The two planners act differently from the actor and from each other on some step.
    returns = {label: [r for _, _, r in curve] for label, curve in curves.items()}
    assert len({tuple(r) for r in returns.values()}) == 3


def test_planners_evaluate_only_every_eval_planners_every_steps(tmp_path) -> None:
    config = _config(tmp_path, eval_planners={"cem": TINY_SEARCH}, eval_planners_every=60)
    assert run_training(config) == "done"
    curves = _curves(config)
    assert [step for step, _, _ in curves["Dreamer"]] == [0, 30, 60]
    assert [step for step, _, _ in curves[LABELS["cem"]]] == [0, 60]
    with pytest.raises(ValueError, match="not a multiple of eval_every=30"):
        _config(tmp_path, eval_planners={"cem": TINY_SEARCH}, eval_planners_every=45)


def test_a_run_resumed_with_planner_evaluations_records_them_from_then_on(tmp_path, monkeypatch) -> None:
    whole = _config(tmp_path / "whole", eval_planners=PLANNERS)
    assert run_training(whole) == "done"
    # A run begun without them (as a run started before the option existed), stopped after its evaluation at 30.
    resumed = _config(tmp_path / "resumed")
    stop = StopRequest()
    write_run_curve = study_run.write_run_curve

    def stop_after_30(path, history, *args):
        write_run_curve(path, history, *args)
        if history[-1].env_steps >= 30:
            stop.set()

    monkeypatch.setattr(study_run, "write_run_curve", stop_after_30)
    assert run_training(resumed, stop) == "stopped"
    monkeypatch.setattr(study_run, "write_run_curve", write_run_curve)
    stored = json.loads((Path(resumed.run_dir) / "config.json").read_text())
    resumed = _config(tmp_path / "resumed", eval_planners=PLANNERS)
    assert resumed.resumes(stored)
    np.random.seed(123)
    th.manual_seed(123)
    assert run_training(resumed) == "done"

    curves, reference = _curves(resumed), _curves(whole)
    assert curves["Dreamer"] == reference["Dreamer"]
    for label in LABELS.values():
        assert curves[label] == reference[label][-1:]  # from the resume on: at 60, as the run that had them throughout


def test_the_report_treats_the_planners_curves_as_agents(tmp_path) -> None:
    argv = ["--tasks", "pixel_reach", "--agents", "dreamer", "--device", "cpu", "--env-steps", "30", "--eval-every", "30"]
    argv += ["--eval-episodes", "1", "--random-episodes", "2", "--out", str(tmp_path), "--eval-planners"]
    argv += ["--hyperparams", *(f"{key}:{value}" for key, value in TINY_DREAMER.items())]
    pairs, settings = build_grid(study.parse_args(argv))
    # Without a preset's settings, --eval-planners evaluates both planners at their defaults.
    assert settings["eval_planners"] == {"dreamer": {"cem": {}, "dreamer_mpc": {}}}
    assert study.cli.report_labels(pairs, settings["eval_planners"]) == ["Dreamer", *LABELS.values()]
    assert study.main(argv) == 0
    rows = read_curve_csv(tmp_path / "curves.csv")
    assert sorted((row["agent"], row["step"]) for row in rows) == sorted(
        (label, step) for label in ("Dreamer", *LABELS.values()) for step in (0, 30)
    )
    results = (tmp_path / "results.md").read_text()
    assert "| 30 env steps | Dreamer (ours) | Dreamer+CEM (actor's data) (ours) | Dreamer+MPC (actor's data) (ours) |" in (
        results
    )
    margin = results[results.index(study.report.MARGIN_TABLE_BEGIN) : results.index(study.report.MARGIN_TABLE_END)]
    for label in LABELS.values():
        assert f"| {label} | " in margin and "SE]" in margin.split(f"| {label} | ")[1].splitlines()[0]
    assert "each evaluation of dreamer also evaluates on its model cem (its defaults); dreamer_mpc (its defaults)" in results


def test_the_cpu_dmc_preset_evaluates_the_dreamer_runs_planners_with_a_smaller_search() -> None:
    pairs, settings = build_grid(study.parse_args(["--preset", "cpu-dmc"]))
    assert settings["eval_planners"] == {"dreamer": catalogue.CPU_DMC_EVAL_PLANNERS}
    assert set(catalogue.CPU_DMC_EVAL_PLANNERS) == {"cem", "dreamer_mpc"}
    for search in catalogue.CPU_DMC_EVAL_PLANNERS.values():
        assert search["candidates"] * search["iterations"] <= 300  # PlaNet's 10 x 1000 would take hours on a CPU
    labels = study.cli.report_labels(pairs, settings["eval_planners"])
    assert labels[labels.index("Dreamer") : labels.index("Dreamer") + 3] == ["Dreamer", *LABELS.values()]
    assert "Dreamer+CEM" not in labels  # the planner agents stay out of the preset's grid, as before
    assert "each evaluation of dreamer also evaluates on its model cem (candidates=100" in describe_settings(settings)
    assert settings["eval_planners_every"] == 8_000  # at 0, 8k, 16k, 24k: 4 of the 7 evaluations
    _, settings = build_grid(study.parse_args(["--preset", "cpu-dmc", "--no-eval-planners"]))
    assert settings["eval_planners"] == {}
    with pytest.raises(SystemExit, match="must be a positive multiple of --eval-every"):
        build_grid(study.parse_args(["--preset", "cpu-dmc", "--eval-planners-every", "6000"]))
    # Only the runs of agent dreamer evaluate them; their identity (config.json) is the one they had without.
    task = resolve_task("cartpole_swingup", "cpu")
    config = _config(Path("unused"), task=task, model_kwargs={}, eval_planners=settings.get("eval_planners", {}))
    with_planners = _config(Path("unused"), task=task, model_kwargs={}, eval_planners=catalogue.CPU_DMC_EVAL_PLANNERS)
    assert config.identity() == with_planners.identity()


@pytest.mark.parametrize(
    ("agent", "planners", "message"),
    [
        ("gaara", {"cem": {}}, "Give eval_planners to 'dreamer' only"),
        ("dreamer_cem", {"dreamer_mpc": {}}, "their curve is the planner's already"),
        ("dreamer", {"actor": {}}, "use 'cem' and/or 'dreamer_mpc'"),
        ("dreamer", {"mppi": {}}, "use 'cem' and/or 'dreamer_mpc'"),
        ("dreamer", {"cem": {"init_std": 1.0}}, r"the planner does not take; it takes \['candidates', 'horizon'"),
    ],
)
def test_planner_evaluations_that_mean_nothing_are_refused(tmp_path, agent, planners, message) -> None:
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, agent=agent, eval_planners=planners)


def test_the_flag_on_a_grid_without_a_dreamer_actor_is_refused() -> None:
    with pytest.raises(SystemExit, match="add --agents dreamer"):
        build_grid(study.parse_args(["--tasks", "pixel_reach", "--agents", "gaara", "dreamer_cem", "--eval-planners"]))

"""The study runner (grid, resumable runs, curves.csv / PNG / results.md) and the CPU-scale PixelReach task."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch as th

from sb3_gaara import GAARASAC, study
from sb3_gaara.algorithms import BY_ZOO_NAME
from sb3_gaara.envs.pixel_reach import PIXEL_REACH_ID, PixelReachEnv, register_pixel_reach
from sb3_gaara.study import (
    AGENTS,
    CURVE_COLUMNS,
    PUBLISHED_SCORES,
    RunConfig,
    StopRequest,
    aggregate_curves,
    build_grid,
    collect_run_timings,
    format_score,
    read_curve_csv,
    resolve_task,
    results_markdown,
    run_directory,
    run_jobs,
    run_training,
    score_at,
    write_curve_csv,
)
from sb3_gaara.study import cli as study_cli
from sb3_gaara.study import report as study_report
from sb3_gaara.study import run as study_run
from sb3_gaara.study.scheduling import StudyProgress

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _row(step: int, reward: float, seed: int = 0, env: str = "cheetah_run", agent: str = "GAARA") -> dict:
    return {"step": step, "episode": step // 1000, "episode_reward": reward, "env": env, "seed": seed, "agent": agent}


# ------------------------------------------------------------------------------------------ PixelReach


def test_pixel_reach_spaces_and_rendering() -> None:
    env = PixelReachEnv()
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (3, 40, 40) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (2,)
    # Mass and goal, wherever they are, are drawn inside the 32 px center crop the agent sees.
    for corner in ([-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]):
        env._position = np.array(corner)
        env._goal = -np.array(corner)
        frame = env._render_frame()
        red = (frame[0] > 150) & (frame[1] < 120)
        green = (frame[1] > 150) & (frame[0] < 120)
        assert red.any() and green.any()
        for mask in (red, green):
            rows, cols = np.nonzero(mask)
            assert rows.min() >= 4 and rows.max() < 36 and cols.min() >= 4 and cols.max() < 36


def test_pixel_reach_dynamics_and_action_repeat() -> None:
    env = PixelReachEnv(action_repeat=2, episode_length=6, max_speed=0.1)
    env.reset(seed=1)
    env._position, env._goal = np.array([0.0, 0.0]), np.array([1.0, 0.0])
    _, reward, terminated, truncated, info = env.step(np.array([1.0, 0.0]))
    # Two simulator steps of 0.1, rewards -0.9 and -0.8 summed.
    assert reward == pytest.approx(-1.7)
    assert info["distance"] == pytest.approx(0.8)
    assert not terminated and not truncated
    env.step(np.array([5.0, 0.0]))  # clipped to the unit action
    assert env._position == pytest.approx([0.4, 0.0])
    _, _, terminated, truncated, _ = env.step(np.zeros(2))
    assert truncated and not terminated  # 6 simulator steps = 3 agent steps


def test_pixel_reach_seeding_and_registration() -> None:
    assert register_pixel_reach() == PIXEL_REACH_ID
    assert register_pixel_reach() == PIXEL_REACH_ID  # idempotent
    first, second = gym.make(PIXEL_REACH_ID), gym.make(PIXEL_REACH_ID)
    np.testing.assert_array_equal(first.reset(seed=3)[0], second.reset(seed=3)[0])
    assert not np.array_equal(first.reset(seed=3)[0], first.reset(seed=4)[0])
    env = gym.make(PIXEL_REACH_ID, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), obs.transpose(1, 2, 0))
    with pytest.raises(ValueError, match="margin"):
        PixelReachEnv(size=10, margin=5)


@pytest.mark.parametrize("eval_env", [False, True])
def test_study_envs_stack_frames_as_the_papers_code(eval_env: bool) -> None:
    # Every task stacks the same way: the env's frame_stack keyword, the first frame repeated at reset.
    task = resolve_task("pixel_reach")
    env = study.make_train_env(task, seed=0, eval_env=eval_env)
    assert type(env).__name__ == "DummyVecEnv" and env.get_attr("frame_stack") == [3]
    obs = env.reset()
    assert obs.shape == (1, 9, 40, 40)
    np.testing.assert_array_equal(obs[0, :3], obs[0, 6:])
    np.testing.assert_array_equal(obs[0, 3:6], obs[0, 6:])
    next_obs = env.step(np.zeros((1, 2), dtype=np.float32))[0]
    np.testing.assert_array_equal(next_obs[0, :6], obs[0, 3:])
    # the seeds of the training and the evaluation env differ, as before
    other = study.make_train_env(task, seed=0, eval_env=not eval_env).reset()
    assert not np.array_equal(obs, other)


def test_frame_stacking_is_part_of_a_runs_identity(tmp_path) -> None:
    identity = _config(tmp_path).identity()
    assert identity["frame_stacking"] == "first frame repeated at reset"
    before = {key: value for key, value in identity.items() if key != "frame_stacking"}  # a run of VecFrameStack days
    assert not _config(tmp_path).resumes(json.loads(json.dumps(before)))


# ------------------------------------------------------------------------------------------ curves and tables


def test_curve_csv_has_the_reference_columns(tmp_path) -> None:
    rows = [_row(0, 1.5), _row(10_000, 250.25, seed=1)]
    write_curve_csv(tmp_path / "curves.csv", rows)
    with open(tmp_path / "curves.csv") as file:
        header = next(csv.reader(file))
    assert tuple(header) == CURVE_COLUMNS == ("step", "episode", "episode_reward", "env", "seed", "agent")
    assert read_curve_csv(tmp_path / "curves.csv") == rows
    if (REFERENCE / "drq_planet_bench.csv").exists():
        with open(REFERENCE / "drq_planet_bench.csv") as file:
            assert tuple(next(csv.reader(file))) == CURVE_COLUMNS


def test_published_scores_match_the_reference_readme() -> None:
    readme = REFERENCE / "README.md"
    if not readme.exists():
        pytest.skip("the reference folder is not checked out beside the repository")
    parsed: dict[int, dict[str, dict[str, tuple[float, float]]]] = {}
    milestone = None
    for line in readme.read_text().splitlines():
        header = re.match(r"\| (\d+)k env steps \|(.*)\|$", line)
        if header:
            milestone = int(header.group(1)) * 1000
            agents = [cell.strip() for cell in header.group(2).split("|")]
            parsed[milestone] = {}
        elif milestone is not None and line.startswith("| ") and "±" in line:
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            task = cells[0].replace("-", "_")
            parsed[milestone][task] = {
                agent: tuple(float(x) for x in cell.split("±"))
                for agent, cell in zip(agents, cells[1:], strict=True)
                if "±" in cell
            }
    assert parsed == PUBLISHED_SCORES


def test_score_at_and_aggregation() -> None:
    rows = [_row(0, 10.0), _row(10_004, 20.0), _row(20_004, 30.0), _row(100_004, 300.0), _row(110_000, 310.0)]
    assert score_at(rows, 100_000, eval_every=10_000) == 300.0
    assert score_at(rows, 10_000, eval_every=10_000) == 20.0
    assert score_at(rows, 500_000, eval_every=10_000) is None  # the run never got there
    curves = aggregate_curves([_row(0, 1.0, seed=0), _row(0, 3.0, seed=1), _row(10, 5.0, seed=0)])
    assert curves == {("cheetah_run", "GAARA"): [(0, 2.0, 1.0, 2), (10, 5.0, 0.0, 1)]}


def test_format_score() -> None:
    assert format_score(901.2, 104.4) == "901±104"
    assert format_score(-12.345, 4.56) == "-12.3±4.6"
    assert format_score(95.0, 164.0) == "95±164"


def test_results_markdown() -> None:
    rows = [
        _row(100_000, 300.0, seed=0),
        _row(100_000, 400.0, seed=1),
        _row(100_000, 200.0, seed=0, agent="SAC+AE"),
        _row(500_000, 600.0, seed=0),
    ]
    table = results_markdown(rows, [100_000, 500_000], 10_000, ["GAARA", "SAC+AE"], {"cheetah_run": (-1.0, 0.5)}, n_seeds=2)
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("| 100k env steps"))
    assert header == (
        "| 100k env steps | GAARA (ours) | SAC+AE (ours) | Random | DrQ | CURL | SAC+AE | SLAC | PlaNet | SAC from state |"
    )
    published_100k = "344±67 | 307±48 | 240±38 | 391±47 | 165±123 | 228±95"
    published_500k = "660±96 | 500±91 | 544±50 | 629±74 | 321±104 | 772±60"
    assert f"| cheetah_run | 350±50 | 200±0 (n=1) | -1.0±0.5 | {published_100k} |" in lines
    assert f"| cheetah_run | 600±0 (n=1) | \u2013 | -1.0±0.5 | {published_500k} |" in lines
    # A task without published numbers gets no published columns.
    table = results_markdown([_row(5000, -20.0, env="pixel_reach")], [5000], 500, ["GAARA"])
    assert "| 5k env steps | GAARA (ours) |" in table and "DrQ" not in table.split("\n\n", 2)[-1]


def test_results_markdown_says_where_time_limited_runs_got() -> None:
    rows = [
        *(_row(step, reward, seed=0) for step, reward in [(0, 1.0), (10_000, 120.0), (20_000, 250.0)]),
        *(_row(step, reward, seed=1) for step, reward in [(0, 2.0), (10_000, 150.0)]),
        _row(0, 3.0, seed=0, agent="SAC+AE"),
        _row(100_000, 300.0, seed=0, agent="SAC+AE"),
        _row(0, 4.0, seed=1, agent="SAC+AE"),  # a run without a timing file: killed before it wrote one
    ]
    h100 = "cuda (NVIDIA H100 80GB HBM3)"
    timings = {
        ("cheetah_run", "GAARA", 0): {"env_steps": 20_400, "wall_time_s": 504.4, "device": h100},
        ("cheetah_run", "GAARA", 1): {"env_steps": 12_000, "wall_time_s": 505.6, "device": h100},
        ("cheetah_run", "SAC+AE", 0): {"env_steps": 100_000, "wall_time_s": 400.0, "device": h100},
    }
    table = results_markdown(
        rows, [100_000], 10_000, ["GAARA", "SAC+AE"], None, 2, 10, timings, 100_000, "device cuda; 5 workers"
    )
    published = "344±67 | 307±48 | 240±38 | 391±47 | 165±123 | 228±95"
    assert f"| cheetah_run | \u2013 | 300±0 (n=1) | {published} |" in table.splitlines()  # 100k: GAARA never got there
    assert table.split("## Last evaluation of each run\n", 1)[1] == (
        "\n"
        "Environment steps of each seed's last evaluation (planned: 100k), the return there (mean ± std over seeds), "
        "and each run's wall time (training and evaluations, summed over resumed sessions; env steps/s: mean over seeds).\n"
        "\n"
        "| task | agent | seeds | last evaluation (env steps) | return | wall time (s) | env steps/s |\n"
        "|---|---|---|---|---|---|---|\n"
        "| cheetah_run | GAARA | 0, 1 | 20k, 10k | 200±50 | 504, 506 | 32 |\n"
        "| cheetah_run | SAC+AE | 0, 1 | 100k, 0 | 152±148 | 400, \u2013 | 250 |\n"
        "\n"
        "Device: cuda (NVIDIA H100 80GB HBM3).\n"
        "Study: device cuda; 5 workers.\n"
    )
    # Without timings or settings, the table is still there and the device and study lines are not.
    table = results_markdown(rows[:3], [100_000], 10_000, ["GAARA"])
    assert table.endswith("| cheetah_run | GAARA | 0 | 20k | 250±0 | \u2013 | \u2013 |\n")


def test_curves_of_other_jobs_merge_into_one_report(tmp_path) -> None:
    # Four 10-minute jobs, one run each, come back as four curves.csv files; --curves puts the grid together.
    jobs = {
        ("GAARA", 0): [_row(0, 1.0), _row(100_000, 300.0)],
        ("GAARA", 1): [_row(0, 2.0, seed=1), _row(100_000, 200.0, seed=1)],
        ("SAC+AE", 0): [_row(0, 3.0, agent="SAC+AE"), _row(100_000, 240.0, agent="SAC+AE")],
    }
    paths = []
    for (agent, seed), rows in jobs.items():
        paths.append(tmp_path / f"job_{agent}_{seed}" / "curves.csv")
        paths[-1].parent.mkdir()
        write_curve_csv(paths[-1], rows)
    out = tmp_path / "merged"
    argv = ["--preset", "gpu-10min", "--report-only", "--out", str(out), "--curves", *map(str, paths)]
    assert study.main([*argv, str(paths[0])]) == 0  # a file given twice counts once
    merged = read_curve_csv(out / "curves.csv")
    assert len(merged) == 6 and merged == sorted(merged, key=lambda r: (r["env"], r["agent"], r["seed"], r["step"]))
    table = (out / "results.md").read_text()
    assert "| cheetah_run | 250±50 | 240±0 (n=1) | 344±67 |" in table
    assert (out / "cheetah_run.png").exists()
    # The aggregates on returns / 1000: GAARA's two seeds (0.3, 0.2) span its interval; P(GAARA > SAC+AE at 0.24) = 1/2.
    assert "| GAARA | 2 x 1 | 0.25 [0.20, 0.30] | 0.75 [0.70, 0.80] |" in table
    assert "| GAARA > SAC+AE | 0.50 [0.00, 1.00] |" in table and (out / "performance_profiles.png").exists()
    # The same seed trained twice, with another return: an error naming both files, not a third seed.
    clash = tmp_path / "clash.csv"
    write_curve_csv(clash, [_row(100_000, 310.0)])
    with pytest.raises(SystemExit, match=r"seed 0 at 100000 env steps has two returns, 300.0 in .*job_GAARA_0.* and 310.0"):
        study.main([*argv, str(clash)])
    # The same clash between a run directory and a file, found when the report is written.
    run_curve = tmp_path / "runs_out" / "runs" / "cheetah_run" / "gaara" / "seed_0" / "curve.csv"
    run_curve.parent.mkdir(parents=True)
    write_curve_csv(run_curve, [_row(100_000, 299.0)])
    with pytest.raises(SystemExit, match=r"299.0 in the run directories and 300.0 in .*job_GAARA_0"):
        study.main(["--preset", "gpu-10min", "--report-only", "--out", str(run_curve.parents[4]), "--curves", str(paths[0])])
    with pytest.raises(SystemExit, match=r"--curves .*missing\.csv: no such file"):
        study.main([*argv, str(tmp_path / "missing.csv")])


def test_plot_writes_png(tmp_path) -> None:
    ours = {"GAARA": [(0, 0.0, 0.0, 2), (10_000, 100.0, 10.0, 2)]}
    reference = {"DrQ": [(0, 0.0, 0.0, 10), (8000, 200.0, 20.0, 10), (200_000, 500.0, 20.0, 10)]}
    study.plot_task(
        "cheetah_run", ours, tmp_path / "cheetah_run.png", reference, {100_000: PUBLISHED_SCORES[100_000]["cheetah_run"]}
    )
    assert (tmp_path / "cheetah_run.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------ grid


def test_build_grid_presets_and_flags() -> None:
    pairs, settings = build_grid(study.parse_args(["--cpu-scale"]))
    assert pairs == [("pixel_reach", "gaara"), ("pixel_reach", "sac_ae"), ("pixel_reach", "contrastive")]
    assert settings["milestones"] == [2_500, 5_000] and settings["eval_every"] == 500
    pairs, settings = build_grid(study.parse_args(["--cpu-scale", "--variants", "gaara", "--env-steps", "1200"]))
    assert pairs == [("pixel_reach", "gaara")] and settings["milestones"] == [1200]
    pairs, settings = build_grid(study.parse_args(["--preset", "paper"]))
    assert ("walker_walk", "sac_ae") in pairs and ("cheetah_run", "joint") in pairs
    assert ("walker_walk", "joint") not in pairs
    assert settings["env_steps"] == 100_000 and settings["eval_every"] == 10_000 and settings["eval_episodes"] == 10
    assert settings["milestones"] == [100_000]
    pairs, settings = build_grid(study.parse_args(["--tasks", "cheetah_run", "--algos", "ablations", "--env-steps", "500000"]))
    assert [agent for _, agent in pairs] == list(study.ABLATION_AGENTS)
    assert settings["milestones"] == [100_000, 500_000]
    with pytest.raises(SystemExit):
        build_grid(study.parse_args(["--variants", "planet"]))


def test_gpu_10min_preset_and_flags_over_it() -> None:
    pairs, settings = build_grid(study.parse_args(["--preset", "gpu-10min"]))
    assert pairs == [("cheetah_run", "gaara"), ("cheetah_run", "sac_ae")]
    assert settings["seeds"] == [0, 1] and settings["env_steps"] == 100_000 and settings["milestones"] == [100_000]
    assert settings["eval_every"] == 10_000 and settings["eval_episodes"] == 10
    assert settings["workers"] == 5  # 4 training runs and the random baseline side by side
    assert settings["async_eval"] is True
    assert settings["device"] == "cuda"
    assert settings["model_kwargs"] == {"cuda_graphs": True, "overlap_env_step": True}
    assert settings["time_limit"] == 510 and settings["checkpoint_at_deadline"] is False
    assert settings["checkpoint_every"] > settings["env_steps"]  # no checkpoint during a run
    # Explicit flags win, including those that switch a preset's setting off.
    argv = ["--preset", "gpu-10min", "--device", "cpu", "--workers", "1", "--time-limit", "0", "--checkpoint-at-deadline"]
    argv += ["--no-cuda-graphs", "--no-overlap-env-step", "--no-async-eval", "--checkpoint-every", "500"]
    argv += ["--env-steps", "80"]
    argv += ["--eval-every", "40"]
    pairs, settings = build_grid(study.parse_args(argv))
    assert pairs == [("cheetah_run", "gaara"), ("cheetah_run", "sac_ae")]
    assert (settings["device"], settings["workers"], settings["time_limit"]) == ("cpu", 1, 0)
    assert settings["checkpoint_at_deadline"] is True and settings["async_eval"] is False
    assert settings["model_kwargs"] == {"cuda_graphs": False, "overlap_env_step": False}
    assert (settings["checkpoint_every"], settings["env_steps"], settings["eval_every"]) == (500, 80, 40)
    # The flags did not edit the preset.
    assert study.PRESETS["gpu-10min"]["model_kwargs"] == {"cuda_graphs": True, "overlap_env_step": True}
    # Without a preset: the defaults of before, and --cuda-graphs alone.
    _, settings = build_grid(study.parse_args(["--tasks", "cheetah_run", "--cuda-graphs"]))
    assert (settings["device"], settings["workers"], settings["time_limit"]) == ("auto", 1, None)
    assert settings["checkpoint_at_deadline"] is True and settings["model_kwargs"] == {"cuda_graphs": True}
    _, settings = build_grid(study.parse_args(["--tasks", "cheetah_run"]))
    assert settings["model_kwargs"] == {}
    _, settings = build_grid(study.parse_args(["--tasks", "cheetah_run", "--overlap-env-step"]))
    assert settings["model_kwargs"] == {"overlap_env_step": True}
    with pytest.raises(SystemExit, match="time-limit"):
        build_grid(study.parse_args(["--time-limit", "-5"]))


def test_gpu_10min_preset_runs_its_grid_with_its_settings(tmp_path, monkeypatch, capsys) -> None:
    jobs: list = []

    def fake_run_jobs(planned, out, workers, progress_every):
        jobs.extend(planned)
        assert workers == 5
        return {"done": 1, "stopped": 4}

    monkeypatch.setattr(study_cli, "run_jobs", fake_run_jobs)
    before = time.time()
    assert study.main(["--preset", "gpu-10min", "--device", "cpu", "--out", str(tmp_path)]) == 3
    assert [kind for kind, _ in jobs] == ["random", "train", "train", "train", "train"]
    configs = [config for kind, config in jobs if kind == "train"]
    assert [(c.task.name, c.agent, c.seed) for c in configs] == [
        ("cheetah_run", "gaara", 0),
        ("cheetah_run", "sac_ae", 0),
        ("cheetah_run", "gaara", 1),
        ("cheetah_run", "sac_ae", 1),
    ]
    for config in configs:
        assert config.device == "cpu" and config.model_kwargs == {"cuda_graphs": True, "overlap_env_step": True}
        assert config.async_eval is True
        assert not config.checkpoint_at_deadline and config.checkpoint_every > config.env_steps == 100_000
        assert (config.eval_every, config.eval_episodes) == (10_000, 10)
        assert config.deadline is not None and before + 510 <= config.deadline <= time.time() + 510
    printed = capsys.readouterr().out
    assert "tasks cheetah_run; agents gaara sac_ae; seeds 0 1; 100k env steps, evaluated every 10k over 10 episodes" in printed
    settings = "device cpu; 5 workers; time limit 510 s (no checkpoint at the limit); checkpoints every 1M env steps"
    assert f"[study] {settings}; evaluations in the background; GAARASAC cuda_graphs=True, overlap_env_step=True\n" in printed
    assert "start over" in printed


@pytest.mark.parametrize(
    ("flag", "setting", "described", "torch_flag"),
    [
        ("--cudnn-benchmark", "cudnn_benchmark", "cudnn.benchmark on", ("cudnn", "benchmark")),
        ("--tf32", "tf32", "TF32 matrix products", ("cuda.matmul", "allow_tf32")),
    ],
)
def test_process_wide_gpu_flags_are_run_time_settings_each_run_applies(
    tmp_path, monkeypatch, flag, setting, described, torch_flag
) -> None:
    import operator

    import torch

    from sb3_gaara.study import run as study_run

    _, settings = build_grid(study.parse_args(["--preset", "gpu-10min"]))
    assert settings[setting] is False
    assert described not in study.describe_settings(settings)
    _, settings = build_grid(study.parse_args(["--preset", "gpu-10min", flag]))
    assert settings[setting] is True
    assert f"; {described}; evaluations in the background; GAARASAC cuda_graphs=True" in study.describe_settings(settings)
    # Not part of a run's identity: a run resumes with the flag switched either way.
    assert _config(tmp_path, **{setting: True}).identity() == _config(tmp_path).identity()
    module = operator.attrgetter(torch_flag[0])(torch.backends)
    seen: list[bool] = []

    def stop_at_env(*args, **kwargs):
        seen.append(getattr(module, torch_flag[1]))
        raise RuntimeError("stop here")

    monkeypatch.setattr(study_run, "make_train_env", stop_at_env)
    original = getattr(module, torch_flag[1])  # torch's flag objects refuse monkeypatch's own bookkeeping
    try:
        setattr(module, torch_flag[1], False)
        for value in (True, False):
            with pytest.raises(RuntimeError, match="stop here"):
                study_run.run_training(_config(tmp_path, **{setting: value}))
    finally:
        setattr(module, torch_flag[1], original)
    assert seen == [True, False]


def test_cuda_asked_without_cuda_fails_before_any_run(tmp_path, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(study_cli, "run_jobs", lambda *args: pytest.fail("a run started"))
    out = tmp_path / "study"
    with pytest.raises(SystemExit, match=r"--device cuda was asked .* sees 0 CUDA devices .* pass --device cpu"):
        study.main(["--preset", "gpu-10min", "--out", str(out)])
    with pytest.raises(SystemExit, match="sees 0 CUDA devices"):
        study.main(["--cpu-scale", "--device", "cuda:0", "--out", str(out)])
    assert not out.exists()
    with pytest.raises(SystemExit, match="not a torch device"):
        study.check_device("gpu")
    study.check_device("cpu")
    study.check_device("auto")  # the default: cpu here, SB3 decides


def test_gpu_10min_preset_grid_on_the_cpu(tmp_path) -> None:
    """The preset's settings end to end at CPU scale: PixelReach, tiny budgets, cuda_graphs=True and
    overlap_env_step=True on the CPU."""
    argv = ["--preset", "gpu-10min", "--tasks", "pixel_reach", "--variants", "gaara", "sac_ae", "--device", "cpu"]
    argv += ["--workers", "1", "--env-steps", "80", "--eval-every", "40", "--eval-episodes", "1", "--random-episodes", "1"]
    assert study.main([*argv, "--out", str(tmp_path)]) == 0
    table = (tmp_path / "results.md").read_text()
    score = r"-?[\d.]+±[\d.]+"
    for agent in ("GAARA", "SAC+AE"):
        row = rf"^\| pixel_reach \| {re.escape(agent)} \| 0, 1 \| 80, 80 \| {score} \| \d+, \d+ \| \d+ \|$"
        assert re.search(row, table, re.M)
    assert re.search(r"^Device: cpu \(\d+ cores?\)\.$", table, re.M)
    settings = "device cpu; 1 worker; time limit 510 s (no checkpoint at the limit); checkpoints every 1M env steps"
    kwargs = "evaluations in the background; GAARASAC cuda_graphs=True, overlap_env_step=True"
    assert f"\nStudy: {settings}; {kwargs}.\n" in table
    # --report-only without the flags: results.md still names the settings of the command that ran the runs.
    (tmp_path / "results.md").unlink()
    assert study.main(["--report-only", "--out", str(tmp_path)]) == 0
    assert f"\nStudy: {settings}; {kwargs}.\n" in (tmp_path / "results.md").read_text()
    assert not list(tmp_path.rglob("replay_buffer.pkl"))
    config = json.loads((run_directory(tmp_path, "pixel_reach", "gaara", 0) / "config.json").read_text())
    assert "model_kwargs" not in config  # speed options, not part of the run's identity


def test_agents_are_the_variants_and_the_fixed_weight_ablations() -> None:
    from sb3_gaara import VARIANTS

    assert {key: agent.label for key, agent in AGENTS.items()} == {
        "gaara": "GAARA",
        "sac_ae": "SAC+AE",
        "contrastive": "Contrastive",
        "gaara_c1": "GAARA (c=1)",
        "gaara_c05": "GAARA (c=0.5)",
        "joint": "GAARA-joint",
        "random_anchor": "GAARA-random-anchor",
        "decoder_discriminator": "GAARA-decoder-disc",
        "drq": "DrQ",
        "gaara_shift": "GAARA+shift",
        "pixel_sac": "SAC:pixel",
        "ad00": "AD(0,0)",
        "ad01": "AD(0,1)",
        "ad10": "AD(1,0)",
        "ad11": "AD(1,1)",
        "slac": "SLAC",
        "dreamer": "Dreamer",
        "dreamer_cem": "Dreamer+CEM",
        "dreamer_mpc": "Dreamer+MPC",
    }
    # the order of --variants all
    groups = [*study.MAIN_AGENTS, *study.ABLATION_AGENTS, *study.AUGMENTATION_AGENTS, *study.AD_AGENTS]
    assert list(AGENTS) == [*groups, "slac", "dreamer", "dreamer_cem", "dreamer_mpc"]
    for name, variant in VARIANTS.items():
        assert AGENTS[name] == study.AgentSpec(variant.label, name, {}, variant.source)
    drq, gaara_shift = AGENTS["drq"], AGENTS["gaara_shift"]
    assert (drq.algorithm, drq.variant, drq.render_at_crop_size) == ("drq", "pixel_sac", True)
    assert (gaara_shift.algorithm, gaara_shift.variant, dict(gaara_shift.kwargs)) == (
        "gaara_sac",
        "gaara",
        {"augmentation": "shift"},
    )
    assert not gaara_shift.render_at_crop_size
    assert AGENTS["gaara_c1"].variant == AGENTS["gaara_c05"].variant == "gaara"
    assert AGENTS["gaara_c05"].kwargs["comparison_lambda"] == AGENTS["gaara_c05"].kwargs["comparison_lambda_min"] == 0.5


def test_resolve_task() -> None:
    assert resolve_task("cheetah_run").env_id == "dmc-cheetah-run"
    assert resolve_task("dmc-ball_in_cup-catch").name == "ball_in_cup_catch"
    assert resolve_task("pixel_reach").env_id == PIXEL_REACH_ID
    with pytest.raises(ValueError, match="Unknown task"):
        resolve_task("cheetah_walk")


# ------------------------------------------------------------------------------------------ resumable runs


def _config(tmp_path: Path, **overrides) -> RunConfig:
    settings = {
        "task": resolve_task("pixel_reach"),
        "agent": "gaara",
        "seed": 0,
        "env_steps": 120,
        "eval_every": 40,
        "eval_episodes": 1,
        "checkpoint_every": 1_000,
        "run_dir": str(tmp_path / "run"),
        "device": "cpu",
        "threads": 1,
    }
    return RunConfig(**{**settings, **overrides})


def test_evaluations_in_the_background_write_the_curve_of_synchronous_ones(tmp_path) -> None:
    curves, models = [], []
    for async_eval in (False, True):
        # A checkpoint at 80 env steps: it waits for the evaluation under way (eval_env is saved with it).
        config = _config(tmp_path, run_dir=str(tmp_path / f"async_{async_eval}"), async_eval=async_eval, checkpoint_every=80)
        assert run_training(config) == "done"
        curves.append((Path(config.run_dir) / "curve.csv").read_text())
        models.append(GAARASAC.load(Path(config.run_dir) / "final_model.zip", device="cpu"))
    assert curves[0] == curves[1] and len(curves[0].splitlines()) == 1 + 4  # header, 0, 40, 80 and 120 env steps
    for (name, a), b in zip(models[0].policy.state_dict().items(), models[1].policy.state_dict().values(), strict=True):
        assert th.equal(a, b), name
    assert _config(tmp_path, async_eval=True).identity() == _config(tmp_path).identity()


def test_a_run_that_ends_between_evaluations_is_evaluated_at_its_end_before_its_envs_close(tmp_path, monkeypatch) -> None:
    events: list[str] = []
    make_env = study_run.make_train_env

    def recording_env(task, seed, eval_env=False, render_size=None):
        env = make_env(task, seed, eval_env, render_size)
        close = env.close
        env.close = lambda: (events.append("close eval env" if eval_env else "close train env"), close())[1]
        return env

    monkeypatch.setattr(study_run, "make_train_env", recording_env)
    evaluate = study_run.EnvStepEvalCallback.evaluate

    def recording_evaluate(self, *args, **kwargs):
        events.append(f"evaluate at {self.env_steps}")
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(study_run.EnvStepEvalCallback, "evaluate", recording_evaluate)
    config = _config(tmp_path, env_steps=100)  # evaluations at 0, 40 and 80, then the run's end
    assert run_training(config) == "done"
    assert events[-3:] == ["evaluate at 100", "close train env", "close eval env"]
    assert [row["step"] for row in read_curve_csv(Path(config.run_dir) / "curve.csv")] == [0, 40, 80, 100]


def test_finished_runs_are_skipped(tmp_path) -> None:
    config = _config(tmp_path)
    Path(config.run_dir).mkdir()
    (Path(config.run_dir) / "done.json").write_text(json.dumps({"env_steps": 120}))
    assert run_training(config) == "skipped"
    with pytest.raises(ValueError, match="cannot be extended"):
        run_training(_config(tmp_path, env_steps=240))
    assert run_training(_config(tmp_path / "other", deadline=time.time() - 1)) == "stopped"


_HOLD_THE_RUN = """
import sys, time
from pathlib import Path
from sb3_gaara.study.run import run_lock
with run_lock(Path(sys.argv[1])) as holder:
    print(holder, flush=True)
    time.sleep(120)
"""


def test_a_run_trained_by_another_process_is_left_alone_until_that_process_ends(tmp_path, capsys) -> None:
    config = _config(tmp_path)
    run_dir = Path(config.run_dir)
    other = subprocess.Popen([sys.executable, "-c", _HOLD_THE_RUN, str(run_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "None"  # it holds the run
        with pytest.warns(UserWarning, match=f"is being trained by .* pid {other.pid}; this process leaves it"):
            assert run_training(config) == "busy"
        assert sorted(path.name for path in run_dir.iterdir()) == [study_run.LOCK_FILE]  # nothing read or written
        # The study's reports count it apart and ask for the command again (exit code 3, as for unfinished runs).
        counts = {"done": 1, "busy": 1}
        assert study_cli._exit_code(counts, {"checkpoint_at_deadline": True}) == 3
        assert "1 run(s) left alone: another process is training them" in capsys.readouterr().out
        job = ("train", config)
        progress = StudyProgress([job, job], counts, since=time.time())
        assert "(1 done, 0 failed, 0 stopped or not started, 1 trained by another process)" in progress.line()
    finally:
        other.kill()  # as a crash would: no clean-up of its own
        other.wait()
    with study_run.run_lock(run_dir) as holder:  # the operating system released the lock with the process
        assert holder is None
        assert (run_dir / study_run.LOCK_FILE).read_text() == f"{socket.gethostname()} pid {os.getpid()}"


def test_interrupted_run_resumes_from_its_checkpoint(tmp_path, monkeypatch) -> None:
    # PixelReach's CPU-scale model starts learning after 500 agent steps: these 60 are random actions, which
    # keeps the test fast while the model, replay buffer, curve and counters go through a real checkpoint.
    config = _config(tmp_path)
    run_dir = Path(config.run_dir)
    write_run_curve = study_run.write_run_curve
    stop = StopRequest()

    def stop_after_40(path, history, *args):
        write_run_curve(path, history, *args)
        if history[-1].env_steps >= 40:
            stop.set()  # as SIGTERM would

    monkeypatch.setattr(study_run, "write_run_curve", stop_after_40)
    assert run_training(config, stop) == "stopped"
    pointer = json.loads((run_dir / "checkpoint.json").read_text())
    assert pointer["env_steps"] == 40  # the checkpoint callback runs after the evaluation, in the same step
    assert (run_dir / pointer["dir"] / "replay_buffer.pkl").exists()
    assert [row["step"] for row in read_curve_csv(run_dir / "curve.csv")] == [0, 40]

    monkeypatch.setattr(study_run, "write_run_curve", write_run_curve)
    with pytest.raises(ValueError, match="other settings"):
        run_training(_config(tmp_path, seed=1))
    assert run_training(config) == "done"
    rows = read_curve_csv(run_dir / "curve.csv")
    assert [row["step"] for row in rows] == [0, 40, 80, 120]
    assert {row["agent"] for row in rows} == {"GAARA"} and {row["env"] for row in rows} == {"pixel_reach"}
    done = json.loads((run_dir / "done.json").read_text())
    assert done["env_steps"] == 120 and done["num_timesteps"] == 60
    assert not (run_dir / "checkpoint.json").exists() and not list(run_dir.glob("ckpt_*"))
    assert (run_dir / "final_model.zip").exists()
    assert run_training(config) == "skipped"


#: SLAC's model on batches of 4 sequences, 3 model updates before the first agent update, networks smaller still
_TINY_SLAC = {
    "model_batch_size": 4,
    "model_pretraining_steps": 3,
    "policy_kwargs": {
        "net_arch": [32],
        "features_dim": 16,
        "z1_dim": 4,
        "z2_dim": 8,
        "model_hidden_sizes": [16],
        "base_channels": 4,
    },
}


#: Dreamer's world model on sequences of 4 frames, one update per agent step, imagination over 3 steps, networks
#: smaller still
_TINY_DREAMER = {
    "sequence_length": 4,
    "train_freq": 1,
    "gradient_steps": 1,
    "imagination_horizon": 3,
    "policy_kwargs": {"depth": 4, "deter_size": 8, "stoch_size": 4, "hidden_size": 8, "units": 8, "layers": 1},
}
#: each agent's tiny settings in the tests (over the task's CPU-scale ones)
_TINY = {
    "slac": _TINY_SLAC,
    **{name: _TINY_DREAMER for name in ("dreamer", "dreamer_cem", "dreamer_mpc")},
}
#: the planners' search, smaller still
_TINY_PLANNER = {"planner_kwargs": {"candidates": 8, "top_k": 2, "iterations": 2, "horizon": 3}}


@pytest.mark.parametrize(
    "agent", ["gaara", "gaara+overlap_env_step", "gaara+async_eval", "ad10", "slac", "dreamer", "dreamer_mpc"]
)
def test_a_run_stopped_and_resumed_writes_the_curve_of_a_run_that_never_stopped(tmp_path, monkeypatch, agent) -> None:
    """Learning from step 10 (batch 8), stopped mid-episode at 44 environment steps (a checkpoint at the next rollout
    start, after the transition of step 22 is stored and trained on) and resumed in a fresh process state: curve,
    parameters, optimizer states and replay buffer equal those of the run that never stopped, bit for bit (SLAC: with
    the actor's history of the training env and its model's update count; Dreamer: with the latent state and last
    action of the training env, and with the random draws of its MPC planner). ``+overlap_env_step``: the stopped and
    resumed run begins its updates before the env steps, the other does not. ``+async_eval``: the stopped and resumed
    run evaluates in a process of its own (its evaluation at 40 is recorded, and the stop asked, a few steps later)."""
    agent, _, option = agent.partition("+")
    kwargs = {"learning_starts": 10, "batch_size": 8, **_TINY.get(agent, {})}
    if agent == "dreamer_mpc":
        kwargs.update(_TINY_PLANNER)
    write_run_curve = study_run.write_run_curve
    stop = StopRequest()

    def stop_after_40(path, history, *args):
        write_run_curve(path, history, *args)
        if history[-1].env_steps >= 40:
            stop.set()  # as SIGTERM would, in the evaluation's step (mid-episode: 25 agent steps per episode)

    whole = _config(tmp_path, agent=agent, run_dir=str(tmp_path / "whole"), model_kwargs=kwargs)
    assert run_training(whole) == "done"
    resumed_kwargs = {**kwargs, **({option: True} if option == "overlap_env_step" else {})}
    resumed = _config(
        tmp_path,
        agent=agent,
        run_dir=str(tmp_path / "resumed"),
        model_kwargs=resumed_kwargs,
        async_eval=option == "async_eval",
    )
    monkeypatch.setattr(study_run, "write_run_curve", stop_after_40)
    assert run_training(resumed, stop) == "stopped"
    monkeypatch.setattr(study_run, "write_run_curve", write_run_curve)
    pointer = json.loads((Path(resumed.run_dir) / "checkpoint.json").read_text())
    assert (pointer["env_steps"] == 40 or option == "async_eval") and pointer["exact"] is True
    assert 40 <= pointer["env_steps"] < 80
    # Whatever the process did since (other runs, other seeds) must not matter.
    np.random.seed(123)
    th.manual_seed(123)
    assert run_training(resumed) == "done"

    assert (Path(whole.run_dir) / "curve.csv").read_text() == (Path(resumed.run_dir) / "curve.csv").read_text()
    sessions = [json.loads(line) for line in (Path(resumed.run_dir) / "sessions.jsonl").read_text().splitlines()]
    assert [(s["env_steps"], s["resumed_from"], s["exact"]) for s in sessions] == [
        (0, None, True),
        (pointer["env_steps"], pointer["dir"], True),
    ]
    # Each session names the code it ran: the checkout's commit (this repository's), marked if files were changed.
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout
    assert all(s["commit"].split(" + ")[0] == head.strip() for s in sessions)
    algorithm = BY_ZOO_NAME[AGENTS[agent].algorithm]
    models = [algorithm.load(Path(config.run_dir) / "final_model.zip", device="cpu") for config in (whole, resumed)]
    assert models[0].num_timesteps == models[1].num_timesteps == 60 and models[0]._n_updates == models[1]._n_updates
    if (
        option == "overlap_env_step"
    ):  # most updates began early: all but those at evaluations and at the steps whose batch read the newest
        assert models[0].overlapped_updates == 0 and models[1].overlapped_updates > (60 - 10) // 2
    for (name, a), b in zip(models[0].policy.state_dict().items(), models[1].policy.state_dict().values(), strict=True):
        assert th.equal(a, b), name
    if agent == "slac":
        assert models[0]._n_model_updates == models[1]._n_model_updates == 3 + 60 - 10
        for a, b in zip(models[0]._rollout_history, models[1]._rollout_history, strict=True):
            np.testing.assert_array_equal(a, b)
    if agent.startswith("dreamer"):
        assert models[0]._n_updates == 60 - 10 + 1 and models[0].planner == AGENTS[agent].kwargs.get("planner", "actor")
        assert models[0]._rollout_state is not None and models[1]._rollout_state is not None
        for a, b in zip(models[0]._rollout_state, models[1]._rollout_state, strict=True):
            np.testing.assert_array_equal(a, b)
        for part in ("world_model", "actor", "value"):
            states = [getattr(model, part).optimizer.state_dict()["state"] for model in models]
            for key, value in states[0].items():
                for name, tensor in value.items():
                    assert th.equal(tensor, states[1][key][name]), (part, key, name)


def test_model_kwargs_are_part_of_a_runs_identity_but_speed_options_are_not(tmp_path) -> None:
    config = _config(tmp_path)
    assert _config(tmp_path, model_kwargs={"cuda_graphs": True}).identity() == config.identity()
    assert _config(tmp_path, model_kwargs={"overlap_env_step": True}).identity() == config.identity()
    assert _config(tmp_path, model_kwargs={"batch_size": 16}).identity() == {
        **config.identity(),
        "model_kwargs": {"batch_size": 16},
    }
    Path(config.run_dir).mkdir()
    (Path(config.run_dir) / "config.json").write_text(json.dumps(config.identity()))
    with pytest.raises(ValueError, match="other settings"):
        run_training(_config(tmp_path, model_kwargs={"batch_size": 16, "cuda_graphs": True}))


def test_a_stop_signal_checkpoints_the_run_under_way_and_starts_no_other(tmp_path, monkeypatch) -> None:
    """In this process (workers=1), SIGTERM sets the StopRequest that run_jobs gives its runs: the run under
    way checkpoints (also without checkpoint_at_deadline: a stop is not the time limit) and stops, the next
    job does not start, and the previous signal handler is back afterwards."""
    write_run_curve = study_run.write_run_curve

    def sigterm_after_40(path, history, *args):
        write_run_curve(path, history, *args)
        if history[-1].env_steps >= 40:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(study_run, "write_run_curve", sigterm_after_40)
    first = _config(tmp_path, run_dir=str(tmp_path / "first"), checkpoint_at_deadline=False)
    second = _config(tmp_path, run_dir=str(tmp_path / "second"), seed=1)
    handler = signal.getsignal(signal.SIGTERM)
    logged: list[str] = []
    counts = run_jobs([("train", first), ("train", second)], str(tmp_path), 1, log=logged.append)
    assert counts == {"stopped": 1, "not started": 1}
    assert signal.getsignal(signal.SIGTERM) is handler
    assert len(logged) == 1 and logged[0].startswith("[study] pixel_reach/gaara/seed_0: stopped (")
    pointer = json.loads((tmp_path / "first" / "checkpoint.json").read_text())
    assert pointer["env_steps"] == 40 and (tmp_path / "first" / pointer["dir"] / "replay_buffer.pkl").exists()
    assert not (tmp_path / "first" / "stopped.json").exists() and not (tmp_path / "second").exists()
    # A request made before the jobs: none starts.
    stop = StopRequest()
    stop.set()
    assert run_jobs([("train", second)], str(tmp_path), 1, stop=stop) == {"not started": 1}
    assert not (tmp_path / "second").exists()


def test_a_run_resumes_across_a_new_wording_of_its_agent() -> None:
    """The agents' descriptions now come from the variant table; a run directory of before still resumes."""
    config = _config(Path("unused"))
    stored = json.loads(json.dumps(config.identity()))
    stored["agent_spec"]["description"] = "SAC+GAARA, comparison weight annealed 1 -> 0.5 (default)"
    assert config.resumes(stored)
    assert not _config(Path("unused"), seed=1).resumes(stored)
    stored["agent_spec"]["kwargs"] = {"comparison_lambda": 1.0}
    assert not config.resumes(stored)


@pytest.mark.parametrize("checkpoint_at_deadline", [False, True])
def test_run_stopped_by_the_deadline(tmp_path, monkeypatch, checkpoint_at_deadline) -> None:
    """Without checkpoint_at_deadline, a run stopped by the time limit keeps its curve and timing, no replay buffer."""
    run_dir = run_directory(tmp_path, "pixel_reach", "gaara", 0)
    config = _config(
        tmp_path, run_dir=str(run_dir), deadline=time.time() + 3600, checkpoint_at_deadline=checkpoint_at_deadline
    )
    # The study's clock jumps past the deadline during the evaluation at 40 environment steps.
    offset = [0.0]
    monkeypatch.setattr(study_run, "time", SimpleNamespace(time=lambda: time.time() + offset[0], sleep=time.sleep))
    write_run_curve = study_run.write_run_curve

    def deadline_after_40(path, history, *args):
        write_run_curve(path, history, *args)
        if history[-1].env_steps >= 40:
            offset[0] = 7200.0

    monkeypatch.setattr(study_run, "write_run_curve", deadline_after_40)
    assert run_training(config) == "stopped"
    assert [row["step"] for row in read_curve_csv(run_dir / "curve.csv")] == [0, 40]
    timing = collect_run_timings(tmp_path)[("pixel_reach", "GAARA", 0)]
    assert timing["env_steps"] == 40 and timing["num_timesteps"] == 20 and timing["device"].startswith("cpu (")
    if checkpoint_at_deadline:  # the default: resumable
        assert len(list(run_dir.rglob("replay_buffer.pkl"))) == 1 and (run_dir / "checkpoint.json").exists()
        assert not (run_dir / "stopped.json").exists()
        return
    assert not list(run_dir.rglob("replay_buffer.pkl")) and not list(run_dir.rglob("*.zip"))
    assert not (run_dir / "checkpoint.json").exists() and not list(run_dir.glob("ckpt_*"))
    assert json.loads((run_dir / "stopped.json").read_text()) == timing
    # Run again without a limit: it starts over and finishes; its timing is then done.json's.
    assert run_training(dataclasses.replace(config, deadline=None)) == "done"
    assert not (run_dir / "stopped.json").exists()
    assert [row["step"] for row in read_curve_csv(run_dir / "curve.csv")] == [0, 40, 80, 120]
    assert collect_run_timings(tmp_path)[("pixel_reach", "GAARA", 0)]["env_steps"] == 120


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow
def test_study_cpu_scale_end_to_end(tmp_path, capsys) -> None:
    """The study command in CPU-scale mode, two worker processes: CSV, PNG and table; a rerun skips everything."""
    out = tmp_path / "study"
    argv = ["--cpu-scale", "--variants", "gaara", "sac_ae", "--seeds", "0", "1", "--env-steps", "2000", "--eval-every", "500"]
    argv += ["--workers", "2", "--out", str(out)]
    start = time.time()
    assert study.main(argv) == 0
    elapsed = time.time() - start
    rows = read_curve_csv(out / "curves.csv")
    assert {(row["agent"], row["seed"]) for row in rows} == {("GAARA", 0), ("GAARA", 1), ("SAC+AE", 0), ("SAC+AE", 1)}
    assert sorted({row["step"] for row in rows}) == [0, 500, 1000, 1500, 2000]
    assert (out / "pixel_reach.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (out / "results.md").read_text()
    assert "| 2k env steps | GAARA (ours) | SAC+AE (ours) | Random |" in table
    assert re.search(r"\| pixel_reach \| -?\d+\.\d±\d+\.\d \| -?\d+\.\d±\d+\.\d \| -?\d+\.\d±\d+\.\d \|", table)
    with capsys.disabled():
        print(f"\nCPU-scale study (2 agents x 2 seeds x 2000 env steps, 2 workers): {elapsed:.0f} s\n{table}")
    capsys.readouterr()
    start = time.time()
    assert study.main(argv) == 0
    assert "'skipped': 5" in capsys.readouterr().out
    assert time.time() - start < 60


def test_augmentation_agents_build_their_algorithm_on_their_renders(tmp_path) -> None:
    from sb3_gaara import GAARASAC, DrQ
    from sb3_gaara.study import run as study_run

    drq_config = _config(tmp_path, agent="drq")
    assert study_run._render_size(drq_config) == 32  # the CPU-scale task's image_size: whole 32 px renders
    env = study_run.make_train_env(drq_config.task, 0, render_size=32)
    assert env.observation_space.shape == (9, 32, 32)
    model = study_run._new_model(drq_config, env, agent_steps=60)
    assert type(model) is DrQ and model.variant == "pixel_sac"
    # DrQ's own settings, under the task's CPU-scale ones
    assert (model.image_size, model.batch_size, model.learning_starts) == (32, 32, 500)
    assert (model.augmentation, model.target_augmentations, model.q_augmentations, model.encoder_tau) == ("shift", 2, 2, 0.01)
    assert model.buffer_size == 60
    shift_config = _config(tmp_path, agent="gaara_shift")
    assert study_run._render_size(shift_config) is None  # GAARA crops 32 px out of the task's 40 px frames
    env = study_run.make_train_env(shift_config.task, 0)
    assert env.observation_space.shape == (9, 40, 40)
    model = study_run._new_model(shift_config, env, agent_steps=60)
    assert type(model) is GAARASAC and (model.variant, model.augmentation, model.target_augmentations) == ("gaara", "shift", 1)


def test_runs_stored_before_the_agent_spec_grew_still_resume(tmp_path) -> None:
    config = _config(tmp_path)
    stored = json.loads(json.dumps(config.identity()))
    # The task as stored before TaskSpec said how other agents (SLAC) run it
    assert list(stored["task"]) == ["name", "env_id", "env_kwargs", "frame_stack", "model_kwargs"]
    for key in ("algorithm", "render_at_crop_size", "frame_stack", "render_size", "action_repeat"):
        del stored["agent_spec"][key]  # a config.json written before these fields existed
    assert config.resumes(stored)
    drq = _config(tmp_path, agent="drq")
    stored = json.loads(json.dumps(drq.identity()))
    assert drq.resumes(stored)
    stored["agent_spec"]["algorithm"] = "gaara_sac"
    assert not drq.resumes(stored)


def test_ad_agents_build_drqv2_without_the_speed_options_it_does_not_take(tmp_path) -> None:
    from sb3_gaara import DrQv2
    from sb3_gaara.study import run as study_run

    assert study.AD_AGENTS == ("ad00", "ad01", "ad10", "ad11")
    expected = {"ad00": (None, False), "ad01": (None, True), "ad10": ("shift", False), "ad11": ("shift", True)}
    for name, (augmentation, reconstruction) in expected.items():
        # the GPU preset's cuda_graphs=True is GAARASAC's: a DrQv2 run goes without it
        config = _config(tmp_path, agent=name, model_kwargs={"cuda_graphs": True})
        assert study_run._render_size(config) == 32
        model = study_run._new_model(config, study_run.make_train_env(config.task, 0, render_size=32), agent_steps=60)
        assert type(model) is DrQv2 and (model.augmentation, model.reconstruction) == (augmentation, reconstruction)
        assert (model.image_size, model.batch_size, model.buffer_size) == (32, 32, 60)
        assert AGENTS[name].label == f"AD({int(augmentation is not None)},{int(reconstruction)})"
    pairs, settings = build_grid(study.parse_args(["--preset", "ad-walker-stand"]))
    assert pairs == [("walker_stand", name) for name in expected]
    assert settings["seeds"] == [0, 1, 2] and settings["env_steps"] == 100_000
    pairs, _ = build_grid(study.parse_args(["--cpu-scale", "--variants", "ad"]))
    assert pairs == [("pixel_reach", name) for name in expected]


def test_slac_runs_on_single_frames_at_its_render_size_with_its_own_cpu_scale_settings(tmp_path) -> None:
    from sb3_gaara import SLAC

    slac = AGENTS["slac"]
    assert (slac.label, slac.algorithm, slac.variant, slac.frame_stack, slac.render_size) == ("SLAC", "slac", None, 1, 64)
    assert not slac.render_at_crop_size and "SLAC" in study.PUBLISHED_AGENTS  # "SLAC (ours)" beside the paper's "SLAC"
    # DMC: single 64 px frames and the paper's settings (SLAC's defaults)
    cheetah = resolve_task("cheetah_run")
    task = cheetah.for_agent(slac)
    assert (task.frame_stack, dict(task.env_kwargs), dict(task.model_kwargs)) == (1, {"height": 64, "width": 64}, {})
    assert task.for_agent(slac) == task
    env = study_run.make_train_env(task, 0, eval_env=True)
    assert env.observation_space.shape == (3, 64, 64) and env.reset().shape == (1, 3, 64, 64)
    env.close()
    # PixelReach: single 32 px frames (a multiple of 16 px) and SLAC's CPU-scale settings, not GAARASAC's
    config = _config(tmp_path, agent="slac")
    assert study_run._render_size(config) is None  # no image_size: the run task renders at SLAC's size
    assert config.run_task().env_kwargs == {"size": 32} and config.run_task().frame_stack == 1
    env = study_run.make_train_env(config.run_task(), 0)
    assert env.get_attr("frame_stack") == [1] and env.reset().shape == (1, 3, 32, 32)
    model = study_run._new_model(config, env, agent_steps=60)
    assert type(model) is SLAC
    assert (model.batch_size, model.model_batch_size, model.learning_starts, model.model_pretraining_steps) == (
        32,
        8,
        500,
        500,
    )
    assert (model.sequence_length, model.learning_rate, model.model_learning_rate) == (4, 1e-3, 1e-3)
    assert model.policy.decoder_std == 0.1
    assert model.buffer_size == 60 and model.policy.net_arch == [64, 64]
    assert (model.policy.features_dim, model.policy.z1_dim, model.policy.z2_dim, model.policy.base_channels) == (32, 8, 32, 8)
    assert "use_sde" not in study.CPU_SCALE_ALGORITHM_MODEL_KWARGS["slac"]["policy_kwargs"]  # SB3 edited a copy
    # Every agent but the latent-model ones and DrQ-v2's (action repeat 2 and its task files' settings,
    # tests/test_drqv2_tasks.py) runs the task as it is: same envs, same settings, same identity as before.
    for agent in AGENTS.values():
        if agent.algorithm not in ("slac", "dreamer", "drqv2"):
            assert (
                resolve_task("pixel_reach").for_agent(agent) == resolve_task("pixel_reach")
                and cheetah.for_agent(agent) == cheetah
            )
    # The render size and SLAC's settings are part of its runs' identity.
    stored = json.loads(json.dumps(config.identity()))
    assert stored["task"]["env_kwargs"] == {"size": 32} and stored["task"]["model_kwargs"]["model_batch_size"] == 8
    assert config.resumes(stored)
    stored["task"]["env_kwargs"] = {"size": 64}
    assert not config.resumes(stored)


def test_the_study_command_runs_slac(tmp_path) -> None:
    pairs, _ = build_grid(study.parse_args(["--cpu-scale", "--agents", "slac"]))
    assert pairs == [("pixel_reach", "slac")]
    argv = ["--tasks", "pixel_reach", "--agents", "slac", "--device", "cpu", "--env-steps", "60", "--eval-every", "30"]
    argv += ["--eval-episodes", "1", "--random-episodes", "0", "--out", str(tmp_path), "--hyperparams", "learning_starts:10"]
    argv += ["batch_size:8", *(f"{key}:{value}" for key, value in _TINY_SLAC.items())]
    assert study.main(argv) == 0
    assert [(row["step"], row["agent"]) for row in read_curve_csv(tmp_path / "curves.csv")] == [
        (0, "SLAC"),
        (30, "SLAC"),
        (60, "SLAC"),
    ]
    assert "| 60 env steps | SLAC (ours) |" in (tmp_path / "results.md").read_text()
    stored = json.loads((run_directory(tmp_path, "pixel_reach", "slac", 0) / "config.json").read_text())
    assert (stored["task"]["frame_stack"], stored["task"]["env_kwargs"]) == (1, {"size": 32})


def test_dreamer_agents_run_on_single_frames_at_action_repeat_2_with_their_cpu_scale_settings(tmp_path) -> None:
    from sb3_gaara import Dreamer
    from sb3_gaara.dreamer import PLANNER_DEFAULTS

    planners = {"dreamer": "actor", "dreamer_cem": "cem", "dreamer_mpc": "dreamer_mpc"}
    labels = {"dreamer": "Dreamer", "dreamer_cem": "Dreamer+CEM", "dreamer_mpc": "Dreamer+MPC"}
    for name, planner in planners.items():
        agent = AGENTS[name]
        assert (agent.label, agent.algorithm, agent.variant, agent.frame_stack, agent.render_size, agent.action_repeat) == (
            labels[name],
            "dreamer",
            None,
            1,
            64,
            2,
        )
        assert not agent.render_at_crop_size and dict(agent.kwargs) == ({} if planner == "actor" else {"planner": planner})
        # No published column bears a Dreamer label: the table has no Dreamer, and Dreamer+CEM is not PlaNet.
        assert agent.label not in study.PUBLISHED_AGENTS
        # DMC: single 64 px frames at action repeat 2 on every task, and the paper's settings (Dreamer's defaults,
        # the planners' PlaNet-sized searches)
        cheetah = resolve_task("cheetah_run")
        task = cheetah.for_agent(agent)
        assert (task.frame_stack, dict(task.env_kwargs), dict(task.model_kwargs)) == (
            1,
            {"height": 64, "width": 64, "action_repeat": 2},
            {},
        )
        assert task.for_agent(agent) == task
        # PixelReach: single 32 px frames (as SLAC's), its action repeat 2 said explicitly, Dreamer's CPU-scale
        # settings and, for the planners, their smaller search
        config = _config(tmp_path, agent=name)
        assert study_run._render_size(config) is None
        assert config.run_task().env_kwargs == {"size": 32, "action_repeat": 2} and config.run_task().frame_stack == 1
        expected = dict(study.CPU_SCALE_ALGORITHM_MODEL_KWARGS["dreamer"])
        if planner != "actor":
            expected["planner_kwargs"] = {"candidates": 100, "top_k": 10, "iterations": 3, "horizon": 8}
        assert dict(config.run_task().model_kwargs) == expected
        env = study_run.make_train_env(config.run_task(), 0)
        assert env.get_attr("frame_stack") == [1] and env.get_attr("action_repeat") == [2]
        assert env.reset().shape == (1, 3, 32, 32)
        model = study_run._new_model(config, env, agent_steps=60)
        assert type(model) is Dreamer and model.planner == planner
        assert model.policy.planner_settings == {**PLANNER_DEFAULTS[planner], **expected.get("planner_kwargs", {})}
        assert (model.learning_starts, model.batch_size, model.sequence_length, model.gradient_steps) == (500, 8, 16, 36)
        assert (model.train_freq.frequency, model.imagination_horizon, model.buffer_size) == (25, 15, 60)
        assert (model.learning_rate, model.value_learning_rate, model.model_learning_rate) == (2e-4, 1e-3, 2e-3)
        assert (model.gamma, model.kl_scale, model.kl_balance) == (0.95, 0.2, 0.95)
        policy = model.policy
        assert (policy.depth, policy.deter_size, policy.stoch_size, policy.hidden_size, policy.units, policy.layers) == (
            8,
            64,
            16,
            64,
            64,
            2,
        )
        env.close()
    # Colours of their own in the plots: none a published agent's or a spare one another agent may get
    colors = [study_report._AGENT_COLORS[label] for label in labels.values()]
    assert len(set(colors)) == 3 and not set(colors) & {*study_report._SPARE_COLORS, study_report._AGENT_COLORS["PlaNet"]}
    # SB3 edited copies, not the catalogue's settings
    assert "use_sde" not in study.CPU_SCALE_ALGORITHM_MODEL_KWARGS["dreamer"]["policy_kwargs"]
    assert set(study.CPU_SCALE_ALGORITHM_MODEL_KWARGS["dreamer"]) == {
        "learning_starts",
        "batch_size",
        "sequence_length",
        "train_freq",
        "gradient_steps",
        "imagination_horizon",
        "learning_rate",
        "value_learning_rate",
        "model_learning_rate",
        "gamma",
        "kl_scale",
        "kl_balance",
        "policy_kwargs",
    }
    # The frames, the action repeat and the planner's search are part of the runs' identity.
    config = _config(tmp_path, agent="dreamer_cem")
    stored = json.loads(json.dumps(config.identity()))
    assert stored["task"]["env_kwargs"] == {"size": 32, "action_repeat": 2}
    assert stored["task"]["model_kwargs"]["planner_kwargs"]["candidates"] == 100
    assert stored["agent_spec"]["action_repeat"] == 2 and config.resumes(stored)
    for key, value in (("env_kwargs", {"size": 64, "action_repeat": 2}), ("model_kwargs", {})):
        changed = json.loads(json.dumps(stored))
        changed["task"][key] = value
        assert not config.resumes(changed)


def test_every_curve_of_a_plot_has_a_colour_of_its_own() -> None:
    from sb3_gaara.study.catalogue import EVAL_PLANNER_NAMES, planner_eval_label

    agents = [agent.label for agent in AGENTS.values()]
    evaluated = [planner_eval_label("Dreamer", planner) for planner in EVAL_PLANNER_NAMES]
    everything = [*agents, *evaluated, *study.PUBLISHED_AGENTS, "a user's agent", "another"]
    colors = study_report.agent_colors(everything)
    assert list(colors) == list(dict.fromkeys(everything)) and len(set(colors.values())) == len(colors)
    # Every agent of the catalogue has a colour of its own, whatever else a plot holds: GAARA+shift is not Dreamer's red.
    assert all(colors[label] == study_report._AGENT_COLORS[label] for label in agents)
    assert len(set(study_report._AGENT_COLORS.values())) == len(study_report._AGENT_COLORS)
    assert not set(study_report._SPARE_COLORS) & set(study_report._AGENT_COLORS.values())
    # A planner evaluated on Dreamer's model takes its planner agent's colour, unless that agent is in the plot too.
    cem = planner_eval_label("Dreamer", "cem")
    assert study_report.agent_colors(["Dreamer", cem])[cem] == study_report._AGENT_COLORS["Dreamer+CEM"]
    assert study_report.agent_colors(["Dreamer+CEM", cem])[cem] == study_report._SPARE_COLORS[0]
    # The same name (ours and a reference curve) is one curve's colour.
    assert study_report.agent_colors(["DrQ", "DrQ"]) == {"DrQ": "black"}


def test_the_study_command_runs_dreamer(tmp_path) -> None:
    pairs, _ = build_grid(study.parse_args(["--cpu-scale", "--agents", "dreamer"]))
    assert pairs == [("pixel_reach", "dreamer")]
    pairs, _ = build_grid(study.parse_args(["--tasks", "cheetah_run", "--agents", "dreamer", "dreamer_cem", "dreamer_mpc"]))
    assert pairs == [("cheetah_run", "dreamer"), ("cheetah_run", "dreamer_cem"), ("cheetah_run", "dreamer_mpc")]
    argv = ["--tasks", "pixel_reach", "--agents", "dreamer", "--device", "cpu", "--env-steps", "60", "--eval-every", "30"]
    argv += ["--eval-episodes", "1", "--random-episodes", "0", "--out", str(tmp_path), "--hyperparams", "learning_starts:10"]
    argv += ["batch_size:8", *(f"{key}:{value}" for key, value in _TINY_DREAMER.items())]
    assert study.main(argv) == 0
    assert [(row["step"], row["agent"]) for row in read_curve_csv(tmp_path / "curves.csv")] == [
        (0, "Dreamer"),
        (30, "Dreamer"),
        (60, "Dreamer"),
    ]
    assert "| 60 env steps | Dreamer (ours) |" in (tmp_path / "results.md").read_text()
    stored = json.loads((run_directory(tmp_path, "pixel_reach", "dreamer", 0) / "config.json").read_text())
    assert (stored["task"]["frame_stack"], stored["task"]["env_kwargs"]) == (1, {"size": 32, "action_repeat": 2})
    assert stored["model_kwargs"]["sequence_length"] == 4

"""The README's first command (``make train``: ``examples/first_run.py``) and the examples, end to end."""

from __future__ import annotations

import csv
import os
import pathlib
import subprocess
import sys

import pytest

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def run_example(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    return subprocess.run(
        [sys.executable, *args], cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.slow
def test_quickstart_scripts_write_logs_model_curve_and_reconstructions(tmp_path):
    # examples/train.py made tiny: one training episode (250 agent steps), 10 updates and one evaluation.
    out = tmp_path / "quickstart"
    training = run_example(
        "examples/train.py",
        "--timesteps", "260", "--learning-starts", "250", "--init-gradient-steps", "0", "--batch-size", "8",
        "--eval-every", "250", "--eval-episodes", "1", "--out", str(out),
    )  # fmt: skip
    assert training.returncode == 0, training.stderr[-3000:]
    assert "Last evaluation after 1000 environment steps" in training.stdout
    for name in ("model.zip", "evaluations.npz", "learning_curve.png"):
        assert (out / name).stat().st_size > 0, name
    assert any((out / "tb").rglob("events.out.tfevents.*"))
    with open(out / "0.monitor.csv") as file:  # SB3's Monitor of env 0
        episodes = list(csv.DictReader(line for line in file if not line.startswith("#")))
    assert len(episodes) == 1 and int(episodes[0]["l"]) == 250

    reconstructions = run_example("examples/reconstructions.py", str(out), "--env", "dmc-cheetah-run", "--steps", "20")
    assert reconstructions.returncode == 0, reconstructions.stderr[-3000:]
    assert (out / "reconstructions.png").stat().st_size > 0


@pytest.mark.slow
def test_first_run_shows_learning_reconstructions_and_the_zoo_outputs(tmp_path):
    # `make train` made tiny: PixelReach for 1200 environment steps (the burst and 100 updates), cheetah for 40 agent
    # steps (4 updates) through rl_zoo3.train.
    out = tmp_path / "quickstart"
    run = run_example("examples/first_run.py", "--steps", "40", "--pixel-reach-env-steps", "1200", "--out", str(out))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "standard errors" in run.stdout and "random policy" in run.stdout
    assert "python -m rl_zoo3.train --algo gaara_sac --env dmc-cheetah-run --device cuda" in run.stdout
    for name in ("first_run.png", "reconstructions.png", "study/pixel_reach.png", "study/results.md"):
        assert (out / name).stat().st_size > 0, name
    experiment = out / "zoo" / "gaara_sac" / "dmc-cheetah-run_1"
    for name in ("dmc-cheetah-run.zip", "evaluations.npz", "0.monitor.csv", "dmc-cheetah-run/config.yml"):
        assert (experiment / name).stat().st_size > 0, name
    assert str(experiment) in run.stdout
    config = (experiment / "dmc-cheetah-run" / "config.yml").read_text()
    assert "batch_size" in config and "frame_stack" in config  # the packaged hyper-parameters, made small

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = (out / "tb" / "dmc-cheetah-run").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert "train/reconstructions" in events.Tags()["images"]

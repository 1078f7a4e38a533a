"""The README's training command end to end: ``examples/train.py`` then ``examples/reconstructions.py``."""

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
    # `make train` at a tenth of its length: one training episode (250 agent steps) and one evaluation.
    out = tmp_path / "quickstart"
    training = run_example(
        "examples/train.py",
        "--timesteps", "260", "--learning-starts", "200", "--batch-size", "8",
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

    reconstructions = run_example("examples/reconstructions.py", str(out), "--env", "dmc-cheetah-run")
    assert reconstructions.returncode == 0, reconstructions.stderr[-3000:]
    assert (out / "reconstructions.png").stat().st_size > 0

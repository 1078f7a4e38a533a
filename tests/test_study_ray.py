"""The study on a Ray cluster: options, fast failures, progress lines, and (slow) a real two-node cluster on this
machine's loopback whose worker is killed mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from sb3_gaara import study
from sb3_gaara.study import ray_scheduling
from sb3_gaara.study.cli import build_grid, parse_args
from sb3_gaara.study.ray_scheduling import RayOptions, connect
from sb3_gaara.study.scheduling import StudyProgress

ray = pytest.importorskip("ray", reason='the Ray path needs the extra: pip install "sb3-gaara[ray]"')

#: A grid that learns (updates from step 10, batch 8) in seconds per run on two CPU cores
TINY_GRID = [
    "--tasks", "pixel_reach", "--variants", "gaara", "--seeds", "0", "1", "--env-steps", "400", "--eval-every", "80",
    "--eval-episodes", "1", "--checkpoint-every", "80", "--random-episodes", "2",
    "--hyperparams", "learning_starts:10", "batch_size:8",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_ray_options_come_from_the_flags_and_threads_follow_the_cpus() -> None:
    _, settings = build_grid(parse_args(["--cpu-scale", "--ray-address", "auto", "--cpus-per-run", "2.5"]))
    assert settings["ray"] == RayOptions("auto", cpus_per_run=2.5, gpus_per_run=0.0, max_retries=3)
    assert settings["threads"] == 2 and settings["ray_address"] == "auto"
    _, settings = build_grid(parse_args(["--cpu-scale", "--ray-address", "h:1", "--gpus-per-run", "0.25", "--threads", "1"]))
    assert settings["ray"].gpus_per_run == 0.25 and settings["threads"] == 1
    _, settings = build_grid(parse_args(["--cpu-scale"]))
    assert settings["ray"] is None and settings["threads"] == 1


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "2"], "Drop --workers"),
        (["--cpus-per-run", "0"], "--cpus-per-run must be positive"),
        (["--gpus-per-run", "-1"], "--gpus-per-run and --max-retries at least 0"),
    ],
)
def test_bad_cluster_flags_are_refused(flags, message) -> None:
    with pytest.raises(SystemExit, match=message):
        build_grid(parse_args(["--cpu-scale", "--ray-address", "auto", *flags]))


def test_an_unknown_hyperparameter_stops_the_study_before_any_run() -> None:
    with pytest.raises(SystemExit, match=r"--hyperparams learning_start: GAARASAC .* \(did you mean learning_starts\?\)"):
        build_grid(parse_args(["--cpu-scale", "--hyperparams", "learning_start:10"]))
    _, settings = build_grid(parse_args(["--cpu-scale", "--hyperparams", "learning_starts:10", "batch_size:8"]))
    assert settings["model_kwargs"] == {"learning_starts": 10, "batch_size": 8}


def test_an_unreachable_ray_address_fails_fast_naming_it_and_the_fix(tmp_path) -> None:
    port = _free_port()  # nothing listens there
    start = time.time()
    with pytest.raises(SystemExit) as error:
        study.main(["--cpu-scale", "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp_path)])
    message = str(error.value)
    assert time.time() - start < 15
    assert f"Cannot reach the Ray cluster at --ray-address 127.0.0.1:{port} (ConnectionRefusedError" in message
    assert "ray start --head --port PORT" in message and "--ray-address local" in message
    assert not list(tmp_path.glob("runs/*"))  # no run started
    with pytest.raises(SystemExit, match="'nonsense' is not an address: use auto"):
        connect("nonsense")
    assert "ray start --head" in str(ray_scheduling._unreachable("auto", "no cluster"))


def test_progress_line_counts_outcomes_and_sums_the_speed_of_running_runs(tmp_path) -> None:
    def job(seed: int) -> tuple:
        run_dir = tmp_path / f"seed_{seed}"
        run_dir.mkdir()
        return ("train", type("Config", (), {"run_dir": str(run_dir)})())

    jobs = [job(seed) for seed in range(4)]
    since = time.time() - 1
    now = time.time()
    for seed, speed in ((0, 99.0), (2, 40.0), (3, 2.5)):
        (tmp_path / f"seed_{seed}" / "sessions.jsonl").write_text("{}\n")
        progress = {"env_steps_per_s": speed, "updated_at": now if seed != 3 else now - 1000}
        (tmp_path / f"seed_{seed}" / "progress.json").write_text(json.dumps(progress))
    counts: dict[str, int] = defaultdict(int)
    progress = StudyProgress(jobs, counts, since=since)
    progress.record(jobs[0], "done")  # returned: no longer running, whatever its progress.json says
    progress.record(jobs[1], "failed (WorkerCrashedError: x)")
    # seed 3's progress is stale: running, but not counted in the speed
    assert progress.line().endswith(
        "2/4 jobs finished (1 done, 1 failed, 0 stopped or not started), 2 running, 0 waiting; "
        "40 env steps/s over the running runs"
    )
    assert counts == {"done": 1, "failed (WorkerCrashedError: x)": 1}
    logged: list[str] = []
    with StudyProgress(jobs, counts, since=since, log=logged.append).every(0.05):
        time.sleep(0.3)
    assert len(logged) >= 3 and all(entry.startswith("[study] progress after") for entry in logged)


# ------------------------------------------------------------------------------------------ a real cluster


#: The environment of the cluster's processes and the driver: headless rendering, and a loopback-only cluster without
#: Ray's token authentication (which a token file left in ~/.ray by an earlier ``ray.init`` turns on for the head only)
CLUSTER_ENV = {**os.environ, "MUJOCO_GL": "egl", "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _ray(*args: str) -> None:
    ray_cli = Path(sys.executable).with_name("ray")
    result = subprocess.run([str(ray_cli), *args], capture_output=True, text=True, timeout=120, env=CLUSTER_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def _study(out: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sb3_gaara.study", *TINY_GRID, "--out", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "MUJOCO_GL": "egl"},
    )


def _sessions(run_dir: Path) -> list[dict]:
    path = run_dir / "sessions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(condition, driver: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 300
    while not condition():
        assert driver.poll() is None, f"the driver exited before {what}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_study_on_a_two_node_ray_cluster_survives_a_killed_worker_and_a_killed_driver(tmp_path) -> None:
    """A Ray head and a second node on 127.0.0.1 (one CPU each) run the tiny grid. The worker running seed 0 is killed
    (SIGKILL) after its first checkpoint; once Ray's retry has resumed it, the driver is killed too and the same
    command started again. Every run finishes; each session of seed 0 after the first resumed from its checkpoint
    (the environment-step counter never restarted); and curves.csv equals the one the same grid writes locally."""
    port = _free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "sb3_gaara.study", *TINY_GRID, "--out", str(out)]
    command += ["--ray-address", f"127.0.0.1:{port}", "--progress-every", "2"]
    run_dir = out / "runs" / "pixel_reach" / "gaara" / "seed_0"
    try:
        _ray("start", "--head", "--port", str(port), "--include-dashboard", "false", *common)
        _ray("start", "--address", f"127.0.0.1:{port}", *common)
        driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=CLUSTER_ENV)
        _wait_for(lambda: (run_dir / "checkpoint.json").exists(), driver, "seed 0's first checkpoint")
        killed = json.loads((run_dir / "progress.json").read_text())["pid"]
        os.kill(killed, signal.SIGKILL)
        _wait_for(lambda: len(_sessions(run_dir)) == 2, driver, "Ray's retry of seed 0")
        driver.kill()
        first_output, _ = driver.communicate(timeout=60)
        restarted = subprocess.run(command, capture_output=True, text=True, timeout=400, env=CLUSTER_ENV)
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    finally:
        _ray("stop", "--force")

    assert "[study] progress after" in first_output + restarted.stdout
    assert "failed (" not in restarted.stdout and "[study] pixel_reach/gaara/seed_0: done" in restarted.stdout
    sessions = _sessions(run_dir)
    assert len(sessions) == 3 and sessions[0]["pid"] == killed and len({s["pid"] for s in sessions}) == 3
    assert sessions[0]["env_steps"] == 0 and sessions[0]["resumed_from"] is None
    for session in sessions[1:]:  # resumed, exactly, from a checkpoint past the start
        assert session["resumed_from"] == f"ckpt_{session['env_steps']:09d}" and session["exact"] is True
        assert 0 < session["env_steps"] < 400
    assert json.loads((run_dir / "done.json").read_text())["env_steps"] == 400

    local = _study(tmp_path / "local")
    assert local.returncode == 0, local.stdout + local.stderr
    assert (out / "curves.csv").read_text() == (tmp_path / "local" / "curves.csv").read_text()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_ray_task_stops_at_the_stop_file_with_a_checkpoint_and_starts_no_run_once_it_exists(tmp_path) -> None:
    """The task function alone (no Ray): the driver's stop file makes the run under way checkpoint and stop, and a
    task that finds it on arrival does not start its run."""
    from sb3_gaara.study.catalogue import resolve_task
    from sb3_gaara.study.run import RunConfig

    stop_file = tmp_path / ray_scheduling.STOP_FILE
    config = RunConfig(
        task=resolve_task("pixel_reach"), agent="gaara", seed=0, env_steps=100_000, eval_every=100_000,
        eval_episodes=1, checkpoint_every=100_000, run_dir=str(tmp_path / "run"), device="cpu", threads=1,
    )  # fmt: skip
    stop_file.touch()
    assert ray_scheduling._run_job_task(("train", config), str(tmp_path), str(stop_file)) == "not started"
    assert not (tmp_path / "run").exists()
    stop_file.unlink()
    timer = threading.Timer(3.0, stop_file.touch)
    timer.start()
    try:
        assert ray_scheduling._run_job_task(("train", config), str(tmp_path), str(stop_file)) == "stopped"
    finally:
        timer.cancel()
    pointer = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert 0 < pointer["env_steps"] < 100_000 and pointer["exact"] is True

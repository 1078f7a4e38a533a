"""scripts/gpu_check.sh's decisions, checked on the CPU with stand-ins for the GPU's programs.

The script is what a short GPU job runs, so a mistake in it costs a whole job: here its ``mps`` stage and the
study's flags are driven by stub programs (an ``nvidia-cuda-mps-control`` that records its commands, a Python that
prints its arguments or fails as a CUDA client would), and the log must say what was decided.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(tmp_path: Path, *, mps_binary: bool, cuda_client_starts: bool, stages: str = "mps study") -> tuple[str, Path]:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    calls = tmp_path / "mps_calls.txt"
    if mps_binary:
        # -d starts the daemon; "quit" arrives on stdin when the script stops it.
        _executable(
            stubs / "nvidia-cuda-mps-control",
            f'#!/bin/sh\nif [ "$1" = -d ]; then echo start >>{calls}; else cat >>{calls}; fi\n',
        )
    # A stand-in for python: "-c" is the CUDA client probe, anything else is the study, which prints its flags.
    _executable(
        stubs / "fake_python",
        '#!/bin/sh\nif [ "$1" = -c ]; then exit ' + ("0" if cuda_client_starts else "1") + '; fi\necho "study flags: $*"\n',
    )
    environment = {
        **os.environ,
        "PATH": f"{stubs}:{os.environ['PATH']}",
        "PYTHON": str(stubs / "fake_python"),
        "STAGES": stages,
        "STUDY_DIR": str(tmp_path / "study"),
        "STUDY_ARGS": "--seeds 1",
        "STUDY_ARGS_NO_MPS": "--agents gaara --seeds 1",
    }
    out = tmp_path / "out"
    subprocess.run(["bash", str(SCRIPT), str(out), "400"], env=environment, check=True, capture_output=True, timeout=60)
    return (out / "log.txt").read_text(), calls


@pytest.mark.skipif(
    any((Path(folder) / "nvidia-cuda-mps-control").exists() for folder in os.environ["PATH"].split(os.pathsep)),
    reason="this machine has NVIDIA's MPS",
)
def test_without_mps_the_runs_take_turns_with_the_study_flags_for_that_case(tmp_path):
    log, _ = _run(tmp_path, mps_binary=False, cuda_client_starts=True)
    assert "no nvidia-cuda-mps-control: runs take turns on the GPU" in log
    assert "study flags: -m sb3_gaara.study --preset gpu-10min" in log
    assert log.count("--agents gaara --seeds 1") == 2  # the "study" line and the study's own output


def test_mps_that_starts_a_cuda_client_keeps_the_shared_flags_and_is_stopped_at_the_end(tmp_path):
    log, calls = _run(tmp_path, mps_binary=True, cuda_client_starts=True)
    assert "MPS started: the study's processes share the GPU" in log
    assert "--agents gaara" not in log
    assert "study flags:" in log and "--seeds 1" in log
    assert calls.read_text().split() == ["start", "quit"]


def test_mps_that_cannot_start_a_cuda_client_is_stopped_before_the_study(tmp_path):
    log, calls = _run(tmp_path, mps_binary=True, cuda_client_starts=False)
    assert "MPS did not start a CUDA client: runs take turns on the GPU" in log
    assert log.count("--agents gaara --seeds 1") == 2
    assert calls.read_text().split() == ["start", "quit"]  # stopped once, not again at the exit


def test_the_campaign_stage_extends_the_ledger_within_the_time_left_and_leaves_its_bundle_in_out(tmp_path):
    log, _ = _run(tmp_path, mps_binary=False, cuda_client_starts=True, stages="campaign")
    flags = next(line for line in log.splitlines() if line.startswith("study flags:"))
    out, study = tmp_path / "out", tmp_path / "study"
    budget = int(flags.split("--budget ")[1].split()[0])
    assert 300 < budget <= 400 - 15  # the script's budget less its own margin
    assert flags == f"study flags: -m sb3_gaara.study --campaign planet100k --budget {budget} --out {study} --bundle {out}"
    assert "campaign exit 0" in log and not (out / "campaign.txt").exists()


def _speed_options_module():
    import importlib.util

    path = SCRIPT.parent / "gpu_speed_options.py"
    spec = importlib.util.spec_from_file_location("gpu_speed_options", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_speed_options_report_prints_each_setting_against_sb3_and_each_runs_step_parts():
    options = _speed_options_module()

    def timing(ms: float) -> dict:
        return {"median_s": ms / 1e3, "min_s": ms / 2e3, "repeats": 100}

    run = {
        "train_env_steps_per_s": 220.0,
        "collect_env_steps_per_s": 900.0,
        "train_agent_steps": 1000,
        "train_ms_per_agent_step": {"action": 1.0, "env_step": 4.5, "store": 0.25, "update": 12.0, "rest": 0.5},
    }
    results = {
        "device": "cuda",
        "batch_size": 128,
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "cuda": "13.0", "cudnn": 91900},
        "update": {"float32": timing(13.0), "SAC, cudnn.benchmark off": timing(26.0)},
        "cudnn_benchmark": False,
        "env_steps": {
            "bfloat16": run,
            "bfloat16 + overlap_env_step": {**run, "overlap_env_step": True, "overlapped_updates": 987},
            "float32": {"skipped": "no OpenGL"},
        },
    }
    assert options.report(results).splitlines() == [
        "GAARASAC fast-path update by GPU setting (cuda; batch 128)",
        "GPU NVIDIA H100 80GB HBM3, CUDA 13.0, cuDNN 91900",
        "  float32                            13.00 ms (min 6.50)  0.50x SB3 SAC eager",
        "  SAC, cudnn.benchmark off           26.00 ms (min 13.00)  1.00x SB3 SAC eager",
        "fastest float32 setting: cudnn.benchmark off",
        "end to end, dmc-cheetah-run, one fast-path run each (cudnn.benchmark as chosen), env steps/s",
        "  bfloat16                         training   220.0  (random warm-up 900.0; 1000 agent steps, 1 update each)",
        " " * 37 + "one agent step: 18.2 ms = action 1.0 + env step 4.5 + store 0.2 + update 12.0 + rest 0.5",
        "  bfloat16 + overlap_env_step      training   220.0  (random warm-up 900.0; 1000 agent steps, 1 update each, "
        "987 of them begun before the env step)",
        " " * 37 + "one agent step: 18.2 ms = action 1.0 + env step 4.5 + store 0.2 + update 12.0 + rest 0.5",
        "  float32                          skipped (no OpenGL)",
    ]

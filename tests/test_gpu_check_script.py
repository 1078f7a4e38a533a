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


def _run(tmp_path: Path, *, mps_binary: bool, cuda_client_starts: bool) -> tuple[str, Path]:
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
        "STAGES": "mps study",
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

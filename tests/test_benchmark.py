"""The benchmark command: its figures are computed from what it measures, at a tiny scale here."""

from __future__ import annotations

import json

import pytest
import torch as th

from sb3_gaara import benchmark

CPU = th.device("cpu")


def test_replay_figures_count_one_frame_per_transition_against_sb3_full_stacks():
    replay = benchmark.bench_replay(buffer_size=300, batch_size=8, repeats=2, device=CPU, storage_device=None)
    # SB3: observation and next observation as full 9 x 100 x 100 stacks, 6 float32 actions, reward, done, timeout.
    assert replay["sb3_bytes_per_transition"] == 2 * 9 * 100 * 100 + 6 * 4 + 3 * 4
    assert replay["frame_bytes"] == 3 * 100 * 100
    assert replay["frame_bytes"] < replay["ours_bytes_per_transition"] < 31_000
    for timing in (replay["ours_sample"], replay["sb3_sample_and_crop"]):
        assert 0 < timing["min_s"] <= timing["median_s"]


def test_update_figures_time_both_models_and_divide_their_medians():
    update = benchmark.bench_updates(batch_size=4, steps=3, warmup=1, filled=20, device=CPU)
    ours, sb3 = update["GAARASAC"], update["SAC"]
    assert (ours["policy"], sb3["policy"]) == ("GAARAPolicy", "CnnPolicy")
    assert ours["repeats"] == sb3["repeats"] == 3
    assert update["ratio"] == pytest.approx(ours["median_s"] / sb3["median_s"])
    for figures in (ours, sb3):
        assert 0 < figures["min_s"] <= figures["median_s"]
        assert figures["median_minor_page_faults"] >= 0


def test_report_prints_the_measured_figures():
    timing = {"median_s": 0.002, "min_s": 0.001}
    results = {
        "device": "cpu",
        "machine": {"cpu_count": 2, "torch_threads": 2, "load_average_1min": 0.5},
        "replay": {
            "batch_size": 128,
            "ours_bytes_per_transition": 30_230.0,
            "sb3_bytes_per_transition": 180_036.0,
            "frame_bytes": 30_000,
            "storage_device": "host (numpy)",
            "ours_sample": timing,
            "sb3_sample_and_crop": timing,
        },
        "update": {
            "GAARASAC": {"median_s": 1.0, "min_s": 0.9, "median_minor_page_faults": 1234},
            "SAC": {"median_s": 0.4, "min_s": 0.3, "median_minor_page_faults": 567},
            "ratio": 2.5,
        },
        "env_steps": {"skipped": "no OpenGL"},
    }
    text = benchmark.report(results)
    assert "  GAARASAC('CnnPolicy')              1.000 s  (min 0.900)" in text
    assert "30.2 KB" in text and "180.0 KB  (6.0x ours)" in text
    assert "ratio GAARASAC / SAC                2.50x  (target <= 2.2x" in text
    assert "1234 GAARASAC, 567 SAC" in text
    assert "skipped: no OpenGL" in text
    results["update"]["GAARASAC"]["conv_dtype"] = "bfloat16"
    assert "  GAARASAC('CnnPolicy', conv_dtype='bfloat16')    1.000 s" in benchmark.report(results)


def test_update_figures_of_bfloat16_convolutions():
    update = benchmark.bench_updates(batch_size=4, steps=1, warmup=0, filled=20, device=CPU, conv_dtype="bfloat16")
    assert update["GAARASAC"]["conv_dtype"] == "bfloat16"


@pytest.mark.slow
def test_quick_benchmark_writes_its_figures_as_json(tmp_path, capsys):
    path = tmp_path / "figures.json"
    results = benchmark.main(["--quick", "--json", str(path)])
    assert json.loads(path.read_text()) == json.loads(json.dumps(results))
    assert results["update"]["ratio"] > 0
    assert "env_id" in results["env_steps"], results["env_steps"]
    assert "figures written to" in capsys.readouterr().out

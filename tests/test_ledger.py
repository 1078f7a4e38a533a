"""Campaigns and their ledger: the cells' order, the plan of a job from recorded speeds, finished and partial cells,
bundles and their merge, the reports, and tiny campaigns run end to end on PixelReach."""

from __future__ import annotations

import json
import math
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from sb3_gaara import study
from sb3_gaara.study import campaign as study_campaign
from sb3_gaara.study import ledger as study_ledger
from sb3_gaara.study import run as study_run
from sb3_gaara.study.campaign import RateRecord, estimate_rate, plan_cells, recorded_rates, run_campaign
from sb3_gaara.study.catalogue import CAMPAIGNS, PLANET_TASKS, CampaignSpec
from sb3_gaara.study.ledger import (
    CellRecord,
    Ledger,
    LedgerConflict,
    LedgerError,
    merge_bundle,
    merge_records,
    read_bundle,
    write_bundle,
    write_campaign_report,
)
from sb3_gaara.study.report import read_curve_csv

#: Two tiny cells on PixelReach: 200 environment steps (100 agent steps, before learning starts), evaluated every 100
#: over 2 episodes.
TINY = CampaignSpec(
    name="tiny",
    blocks=((("pixel_reach",), ("gaara", "sac_ae")),),
    seeds=(0,),
    env_steps=200,
    eval_every=100,
    eval_episodes=2,
    milestones=(200,),
)


# ------------------------------------------------------------------------------------------ the campaign's cells


def test_planet100k_runs_the_main_comparison_first_then_every_other_cell_once() -> None:
    spec = CAMPAIGNS["planet100k"]
    cells = spec.cells()
    main = [("cheetah_run", agent, seed) for seed in (0, 1, 2) for agent in ("gaara", "sac_ae", "drq")]
    assert cells[:9] == main
    agents = ("gaara", "sac_ae", "drq", "contrastive", "ad10", "slac", "dreamer")
    assert cells[9:13] == [("cheetah_run", agent, 0) for agent in ("contrastive", "ad10", "slac", "dreamer")]
    assert len(cells) == len(set(cells)) == 6 * 7 * 3
    assert set(cells) == {(task, agent, seed) for task in PLANET_TASKS for agent in agents for seed in (0, 1, 2)}
    assert (spec.env_steps, spec.eval_every, spec.eval_episodes, spec.milestones) == (100_000, 10_000, 10, (100_000,))
    # Ten seeds: the first three's cells keep their order, the seven others follow in the same order.
    extended = spec.cells(list(range(10)))
    assert extended[:126] == cells and len(extended) == len(set(extended)) == 420
    assert extended[126:129] == [("cheetah_run", agent, 3) for agent in ("gaara", "sac_ae", "drq")]


# ------------------------------------------------------------------------------------------ speeds and the plan


def test_estimate_rate_moves_the_nearest_measurement_to_the_number_of_runs() -> None:
    h100 = "cuda (NVIDIA H100 80GB HBM3)"
    records = [
        RateRecord("gaara", h100, True, 1, 190.0),
        RateRecord("gaara", h100, True, 2, 180.0),
        RateRecord("sac_ae", "cuda (NVIDIA H200)", True, 1, 210.0),
    ]
    # Measured at 2 runs under MPS (s = 0.15): alone 180 * 1.15; at 3 runs 180 * 1.15 / 1.3.
    assert estimate_rate("gaara", h100, True, 2, records) == (180.0, True)
    assert estimate_rate("gaara", h100, True, 3, records)[0] == pytest.approx(180 * 1.15 / 1.3)
    assert estimate_rate("gaara", h100, True, 1, records)[0] == pytest.approx(190.0)  # the nearest: the one at 1
    # Another GPU's measurement, where this one has none; the guess where no GPU has one.
    assert estimate_rate("sac_ae", h100, True, 2, records)[0] == pytest.approx(210.0 / 1.15)
    assert estimate_rate("drq", h100, True, 2, records) == (pytest.approx(200.0 / 1.15), False)
    # Without MPS the runs take turns (s = 0.5); on a CPU each has its own cores.
    assert estimate_rate("drq", h100, False, 3, []) == (pytest.approx(100.0), False)
    assert estimate_rate("drq", "cpu (16 cores)", False, 4, []) == (20.0, False)
    # The latest of equally near measurements wins.
    again = [*records, RateRecord("gaara", h100, True, 2, 170.0)]
    assert estimate_rate("gaara", h100, True, 2, again)[0] == 170.0


def test_recorded_rates_come_from_the_runs_that_ran() -> None:
    jobs = {
        "b": {
            "device": "cpu (2 cores)",
            "mps": False,
            "runs_at_once": 2,
            "runs": [{"agent": "drq", "status": "finished", "env_steps_per_s": 9.0}],
        },
        "a": {
            "device": "cpu (2 cores)",
            "runs_at_once": 1,
            "runs": [
                {"agent": "gaara", "status": "partial", "env_steps_per_s": 5.0},
                {"agent": "sac_ae", "status": "partial", "env_steps_per_s": 0.0},
            ],
        },
    }
    assert recorded_rates(jobs) == [
        RateRecord("gaara", "cpu (2 cores)", False, 1, 5.0),
        RateRecord("drq", "cpu (2 cores)", False, 2, 9.0),
    ]


def _rate(agent: str, runs: int) -> tuple[float, bool]:
    """100 env steps/s alone, s = 0.2; the "slow" agent 10, the "quick" one 200; "new" and "fresh" are guesses."""
    speed = {"slow": 10.0, "quick": 200.0}.get(agent, 100.0)
    return speed / (1 + 0.2 * (runs - 1)), agent not in ("new", "fresh")


def test_plan_finishes_the_most_cells_and_of_equals_ends_first() -> None:
    cells = [("t", "a", seed) for seed in range(4)]
    # 1000 env steps: 10 s alone, 12 s each of 2, 14 s each of 3, 16 s each of 4.
    # Within 25 s: 1 at a time finishes 2 (10, 20), 2 at a time 4 (12, 12, 24, 24), 3 at a time 3, 4 at a time 4 by 16 s.
    plan = plan_cells(cells, 1000, _rate, seconds=25, max_runs=4, startup_s=0)
    assert (plan.runs, plan.cells) == (4, tuple(cells))
    assert plan.expected_end_s[cells[0]] == pytest.approx(16.0)
    # Within 15 s only 3 at once (14 s) finish more than one.
    plan = plan_cells(cells, 1000, _rate, seconds=15, max_runs=4, startup_s=0)
    assert (plan.runs, plan.cells) == (3, tuple(cells[:3]))
    # With the start-up time: 1 at a time, 5 + 10 = 15 s each.
    plan = plan_cells(cells, 1000, _rate, seconds=31, max_runs=1, startup_s=5)
    assert (plan.runs, plan.cells) == (1, tuple(cells[:2]))
    # A faster agent's cells do not jump the queue: 3 "quick" cells at once would all end by 7 s, but the first cell
    # comes first. 1 at a time: a (10 s), then quick (5 s) would end at 15; 2 at once: a (12 s), quick (6 s, 12 s).
    cells = [("t", "a", 0), *(("t", "quick", seed) for seed in range(3))]
    plan = plan_cells(cells, 1000, _rate, seconds=12, max_runs=3, startup_s=0)
    assert (plan.runs, plan.cells) == (2, tuple(cells[:3]))
    # Fewer cells than slots: as many runs as cells.
    plan = plan_cells(cells[:1], 1000, _rate, seconds=100, max_runs=4, startup_s=0)
    assert plan.runs == 1


def test_plan_leaves_cells_that_cannot_finish_and_measures_an_unmeasured_agent() -> None:
    cells = [("t", "slow", 0), ("t", "a", 0), ("t", "a", 1)]
    plan = plan_cells(cells, 1000, _rate, seconds=25, max_runs=1, startup_s=0)
    assert plan.cells == (("t", "a", 0), ("t", "a", 1))  # the slow cell (100 s) waits for a longer budget
    # Nothing finishes: the first cell of each agent never measured runs, all at once, to measure them.
    cells = [("t", "slow", 0), ("t", "new", 0), ("t", "new", 1), ("t", "fresh", 0)]
    plan = plan_cells(cells, 1000, _rate, seconds=5, max_runs=4, startup_s=0)
    assert (plan.runs, plan.cells) == (2, (("t", "new", 0), ("t", "fresh", 0))) and "to measure them" in plan.note
    assert plan.expected_end_s[("t", "new", 0)] == pytest.approx(12.0)  # 1000 / (100 / 1.2)
    plan = plan_cells(cells, 1000, _rate, seconds=5, max_runs=1, startup_s=0)
    assert (plan.runs, plan.cells) == (1, (("t", "new", 0),))
    plan = plan_cells(cells[:1], 1000, _rate, seconds=5, max_runs=4, startup_s=0)
    assert (plan.runs, plan.cells) == (0, ()) and "longer --budget" in plan.note


# ------------------------------------------------------------------------------------------ the ledger and its bundles


def _record(
    agent: str, seed: int, status: str, returns: dict[int, float], job: str = "job-a", task: str = "cheetah_run"
) -> CellRecord:
    label = study.AGENTS[agent].label
    curve = "step,episode,episode_reward,env,seed,agent,std\n" + "".join(
        f"{step},{step // 1000},{value},{task},{seed},{label},1.0\n" for step, value in returns.items()
    )
    provenance = {
        "campaign": "planet100k",
        "task": task,
        "agent": agent,
        "label": label,
        "seed": seed,
        "status": status,
        "env_steps": max(returns),
        "job": job,
        "commit": "abc1234",
        "device": "cuda (NVIDIA H100 80GB HBM3)",
    }
    return CellRecord(task, agent, seed, provenance, curve)


def _files(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): path.read_text() for path in sorted(root.rglob("*")) if path.is_file()}


def test_a_bundle_round_trips_and_merging_it_twice_changes_nothing(tmp_path) -> None:
    cells = [
        _record("gaara", 0, "finished", {0: 1.0, 100_000: 300.0}),
        _record("sac_ae", 0, "partial", {0: 2.0, 50_000: 90.0}),
    ]
    job = {"job": "job-a", "device": "cuda (NVIDIA H100 80GB HBM3)", "runs_at_once": 2, "runs": []}
    bundle = write_bundle(tmp_path / "b.tar.gz", "planet100k", "job-a", cells, job)
    manifest, read_cells, read_jobs = read_bundle(bundle)
    assert manifest["campaign"] == "planet100k" and read_cells == cells and read_jobs == {"job-a": job}
    ledger_dir = tmp_path / "ledger"
    campaign, summary = merge_bundle(bundle, ledger_dir)
    assert campaign == "planet100k" and len(summary.added) == 2
    assert sorted(_files(ledger_dir)) == [
        "cells/cheetah_run/gaara/seed_0.csv",
        "cells/cheetah_run/gaara/seed_0.json",
        "cells/cheetah_run/sac_ae/seed_0.partial.csv",
        "cells/cheetah_run/sac_ae/seed_0.partial.json",
        "jobs/job-a.json",
    ]
    ledger = Ledger.read(ledger_dir)
    assert list(ledger.finished) == [("cheetah_run", "gaara", 0)] and list(ledger.partial) == [("cheetah_run", "sac_ae", 0)]
    before = _files(ledger_dir)
    _, summary = merge_bundle(bundle, ledger_dir)
    assert len(summary.unchanged) == 2 and not summary.added and _files(ledger_dir) == before
    assert bundle.stat().st_size < 4096


def test_another_finished_run_of_a_finished_cell_is_refused_and_nothing_is_merged(tmp_path) -> None:
    ledger_dir = tmp_path / "ledger"
    merge_records(ledger_dir, [_record("gaara", 0, "finished", {100_000: 300.0})], {}, "first")
    before = _files(ledger_dir)
    other = _record("gaara", 0, "finished", {100_000: 280.0}, job="job-b")
    new = _record("drq", 0, "finished", {100_000: 340.0}, job="job-b")
    bundle = write_bundle(tmp_path / "b.tar.gz", "planet100k", "job-b", [new, other], {"job": "job-b"})
    with pytest.raises(
        LedgerConflict, match=r"cheetah_run/gaara/seed_0 is finished in the ledger already, from job job-a"
    ) as error:
        merge_bundle(bundle, ledger_dir)
    assert "job: 'job-a' in the ledger, 'job-b' in the bundle" in str(error.value)
    assert _files(ledger_dir) == before  # all or nothing: not even the new DrQ cell
    # The command says the same, as an error message.
    with pytest.raises(SystemExit, match="Nothing was merged"):
        study_ledger.main(["merge", str(bundle), "--ledger", str(ledger_dir), "--no-report"])


def test_partial_cells_never_replace_finished_ones_and_give_way_to_longer_or_finished_runs(tmp_path) -> None:
    ledger_dir = tmp_path / "ledger"
    merge_records(ledger_dir, [_record("gaara", 0, "partial", {0: 1.0, 60_000: 150.0})], {}, "job a")
    # A shorter partial run is not kept; a longer one is.
    summary = merge_records(ledger_dir, [_record("gaara", 0, "partial", {0: 1.0, 40_000: 120.0}, job="b")], {}, "job b")
    assert len(summary.kept) == 1 and Ledger.read(ledger_dir).partial[("cheetah_run", "gaara", 0)].env_steps == 60_000
    summary = merge_records(ledger_dir, [_record("gaara", 0, "partial", {0: 1.0, 80_000: 200.0}, job="c")], {}, "job c")
    assert len(summary.replaced) == 1 and Ledger.read(ledger_dir).partial[("cheetah_run", "gaara", 0)].env_steps == 80_000
    # A finished run takes the partial one's place (its files go).
    summary = merge_records(ledger_dir, [_record("gaara", 0, "finished", {100_000: 300.0}, job="d")], {}, "job d")
    assert len(summary.replaced) == 1
    assert sorted(_files(ledger_dir)) == ["cells/cheetah_run/gaara/seed_0.csv", "cells/cheetah_run/gaara/seed_0.json"]
    # A partial run of a finished cell changes nothing.
    summary = merge_records(ledger_dir, [_record("gaara", 0, "partial", {0: 1.0, 90_000: 1.0}, job="e")], {}, "job e")
    assert len(summary.kept) == 1 and not Ledger.read(ledger_dir).partial


def test_a_partial_cell_cannot_pass_for_a_finished_one(tmp_path) -> None:
    record = _record("gaara", 0, "partial", {50_000: 100.0})
    folder = tmp_path / "cells" / "cheetah_run" / "gaara"
    folder.mkdir(parents=True)
    (folder / "seed_0.json").write_text(json.dumps(dict(record.provenance)))  # named as finished
    (folder / "seed_0.csv").write_text(record.curve)
    with pytest.raises(LedgerError, match="says status 'partial' but its name says 'finished'"):
        Ledger.read(tmp_path)
    # A bundle brings ledger files only, listed in its manifest: nothing lands outside the ledger.
    manifest = tmp_path / "bundle.json"
    manifest.write_text(json.dumps({"campaign": "planet100k", "job": "x", "files": ["../outside.csv"]}))
    bundle = tmp_path / "odd.tar.gz"
    with tarfile.open(bundle, "w:gz") as archive:
        archive.add(folder / "seed_0.csv", arcname="../outside.csv")
        archive.add(manifest, arcname="bundle.json")
    with pytest.raises(LedgerError, match=r"\.\./outside.csv is not a ledger file"):
        read_bundle(bundle)
    with tarfile.open(bundle, "w:gz") as archive:
        archive.add(folder / "seed_0.csv", arcname="cells/cheetah_run/gaara/seed_0.csv")
        archive.add(manifest, arcname="bundle.json")
    with pytest.raises(LedgerError, match="its files and its manifest differ"):
        read_bundle(bundle)


# ------------------------------------------------------------------------------------------ reports


def test_report_shows_finished_cells_as_mean_and_standard_error_beside_the_published_scores(tmp_path) -> None:
    cells = [_record("gaara", seed, "finished", {0: 1.0, 100_000: value}) for seed, value in enumerate((300.0, 320.0, 340.0))]
    cells += [
        _record("sac_ae", 0, "finished", {0: 1.0, 100_000: 250.0}),
        _record("drq", 0, "partial", {0: 1.0, 60_000: 999.0}),
    ]
    job = {
        "job": "job-a",
        "commit": "abc1234",
        "device": "cuda (NVIDIA H100 80GB HBM3)",
        "mps": True,
        "runs_at_once": 3,
        "threads_per_run": 5,
        "aggregate_env_steps_per_s": 512.3,
        "runs": [{"task": "cheetah_run", "agent": "drq", "seed": 0, "status": "partial", "env_steps_per_s": 151.0}],
    }
    merge_records(tmp_path, cells, {"job-a": job}, "test")
    written = write_campaign_report(CAMPAIGNS["planet100k"], tmp_path)
    results = (tmp_path / "results.md").read_text()
    # std (ddof 1) of 300, 320, 340 is 20; its standard error 20 / sqrt(3) = 11.5. One seed has no spread to show.
    assert 20 / math.sqrt(3) == pytest.approx(11.547, abs=1e-3)
    row = next(line for line in results.splitlines() if line.startswith("| cheetah_run |"))
    assert row.startswith("| cheetah_run | 320±12 (n=3) | 250 (n=1) | \u2013 | ")
    assert row.endswith("| 344±67 | 307±48 | 240±38 | 391±47 | 165±123 | 228±95 |")  # DrQ paper, Table 1, at 100k
    assert "999" not in row and "4 of 126 cells finished" in results
    assert "| cheetah_run | DrQ | 0 | 60k | 999.0 | job-a | 0 |" in results  # the partial cell, apart
    assert "| job-a | abc1234 | cuda (NVIDIA H100 80GB HBM3) + MPS | 3 | 5 | 512 | cheetah_run/DrQ/0 partial 151 |" in results
    rows = read_curve_csv(written["curves"])
    assert {(row["agent"], row["seed"]) for row in rows} == {("GAARA", 0), ("GAARA", 1), ("GAARA", 2), ("SAC+AE", 0)}
    assert written["cheetah_run"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "`sb3_gaara.study.catalogue.CAMPAIGNS['planet100k']`" in (tmp_path / "campaign.md").read_text()


# ------------------------------------------------------------------------------------------ end to end on PixelReach


def test_a_campaign_job_fills_the_ledger_and_the_next_job_repeats_no_finished_cell(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(CAMPAIGNS, "tiny", TINY)
    ledger_dir, bundles = tmp_path / "ledger", tmp_path / "bundles"
    argv = ["--campaign", "tiny", "--budget", "600", "--device", "cpu", "--workers", "1", "--progress-every", "0"]
    argv += ["--ledger", str(ledger_dir), "--bundle", str(bundles)]
    assert study.main([*argv, "--out", str(tmp_path / "machine1")]) == 0
    ledger = Ledger.read(ledger_dir)
    assert list(ledger.finished) == [("pixel_reach", "gaara", 0), ("pixel_reach", "sac_ae", 0)] and not ledger.partial
    ((job_id, job),) = ledger.jobs.items()
    cell = ledger.finished[("pixel_reach", "gaara", 0)]
    provenance = cell.provenance
    run_dir = study.run_directory(tmp_path / "machine1", "pixel_reach", "gaara", 0)
    assert provenance["settings"] == json.loads((run_dir / "config.json").read_text())
    assert cell.curve == (run_dir / "curve.csv").read_text()
    assert [row["step"] for row in cell.rows] == [0, 100, 200]
    assert provenance["status"] == "finished" and provenance["env_steps"] == 200 and provenance["job"] == job_id
    assert provenance["device"].startswith("cpu (") and provenance["commit"] and provenance["versions"]["torch"]
    assert provenance["precision"] == {"conv_dtype": "float32", "tf32_matmul": False, "cudnn_benchmark": False}
    assert provenance["speed_options"] == {"async_eval": False, "threads": job["threads_per_run"]}
    assert provenance["wall_time_s"] > 0 and provenance["env_steps_per_s"] == pytest.approx(
        200 / provenance["wall_time_s"], rel=0.05
    )
    assert job["runs_at_once"] == 1 and job["device"] == provenance["device"] and job["aggregate_env_steps_per_s"] > 0
    assert [(run["agent"], run["status"]) for run in job["runs"]] == [("gaara", "finished"), ("sac_ae", "finished")]
    (bundle,) = bundles.glob("tiny-*.tar.gz")
    assert bundle.name == f"tiny-{job_id}.tar.gz"
    assert "| pixel_reach | " in (ledger_dir / "results.md").read_text()
    # The next job, on a fresh machine (no run directories): nothing left to run.
    capsys.readouterr()
    assert study.main([*argv, "--out", str(tmp_path / "machine2")]) == 0
    assert "2 of 2 cells finished" in capsys.readouterr().out
    assert not (tmp_path / "machine2" / "runs").exists() and len(Ledger.read(ledger_dir).jobs) == 1
    # At home: the bundle merged into the repository's (here: an empty) ledger gives the same cells.
    assert study_ledger.main(["merge", str(bundle), "--ledger", str(tmp_path / "home"), "--no-report"]) == 0
    home = Ledger.read(tmp_path / "home")
    assert home.finished == ledger.finished and home.jobs == ledger.jobs


def test_a_run_cut_off_by_the_budget_is_a_partial_cell_that_the_next_job_runs_again(tmp_path, monkeypatch) -> None:
    spec = CampaignSpec("tiny", ((("pixel_reach",), ("gaara",)),), (0,), env_steps=200, eval_every=100, eval_episodes=2)
    # The runs' clock jumps past the deadline at the evaluation at 100 environment steps.
    offset = [0.0]
    monkeypatch.setattr(study_run, "time", SimpleNamespace(time=lambda: time.time() + offset[0], sleep=time.sleep))
    write_run_curve = study_run.write_run_curve

    def deadline_after_100(path, history, *args):
        write_run_curve(path, history, *args)
        if history[-1].env_steps >= 100:
            offset[0] = 600.0  # past the job's deadline, 600 - END_MARGIN_S seconds after its start

    monkeypatch.setattr(study_run, "write_run_curve", deadline_after_100)
    ledger_dir = tmp_path / "ledger"
    kwargs = {"ledger_root": ledger_dir, "device": "cpu", "max_runs": 1, "progress_every": 0.0, "log": lambda line: None}
    outcome = run_campaign(spec, 600, tmp_path / "machine1", **kwargs)
    assert outcome.remaining == 1 and outcome.counts == {"stopped": 1}
    ledger = Ledger.read(ledger_dir)
    assert not ledger.finished and list(ledger.partial) == [("pixel_reach", "gaara", 0)]
    partial = ledger.partial[("pixel_reach", "gaara", 0)]
    assert partial.status == "partial" and partial.env_steps == 100 and [row["step"] for row in partial.rows] == [0, 100]
    assert sorted(p.name for p in (ledger_dir / "cells" / "pixel_reach" / "gaara").iterdir()) == [
        "seed_0.partial.csv",
        "seed_0.partial.json",
    ]
    (job,) = ledger.jobs.values()
    assert job["runs"][0]["status"] == "partial" and job["runs"][0]["env_steps"] == 100
    # The report leaves it out of the table and says where it got.
    write_campaign_report(spec, ledger_dir)
    assert not (ledger_dir / "pixel_reach.png").exists() and read_curve_csv(ledger_dir / "curves.csv") == []
    assert "| pixel_reach | GAARA | 0 | 100 |" in (ledger_dir / "results.md").read_text()
    # The next job, on a fresh machine, runs it again from the start, to the end. (Its budget is long: the partial run's
    # recorded speed counts the ten minutes the clock jumped: 100 env steps in ~600 s, 200 expected in ~1200 s.)
    assert job["runs"][0]["env_steps_per_s"] < 0.2
    monkeypatch.setattr(study_run, "write_run_curve", write_run_curve)
    outcome = run_campaign(spec, 1_500, tmp_path / "machine2", **kwargs)
    assert outcome.remaining == 0 and outcome.counts == {"done": 1}
    ledger = Ledger.read(ledger_dir)
    assert list(ledger.finished) == [("pixel_reach", "gaara", 0)] and not ledger.partial and len(ledger.jobs) == 2
    assert sorted(p.name for p in (ledger_dir / "cells" / "pixel_reach" / "gaara").iterdir()) == ["seed_0.csv", "seed_0.json"]


def test_a_campaign_defines_its_grid_and_needs_a_budget(tmp_path) -> None:
    with pytest.raises(SystemExit, match="drop --tasks, --env-steps"):
        study.main(["--campaign", "planet100k", "--budget", "60", "--tasks", "cheetah_run", "--env-steps", "10"])
    with pytest.raises(SystemExit, match="needs --budget"):
        study.main(["--campaign", "planet100k", "--ledger", str(tmp_path)])
    with pytest.raises(SystemExit, match="Unknown campaign"):
        study.main(["--campaign", "planet1M", "--budget", "60"])
    # --report-only rewrites the reports of the ledger, runs nothing.
    assert study.main(["--campaign", "planet100k", "--report-only", "--ledger", str(tmp_path)]) == 0
    assert "0 of 126 cells finished" in (tmp_path / "results.md").read_text()
    assert "Next cell: cheetah_run/gaara/seed_0 (126 to run)." in (tmp_path / "results.md").read_text()


def test_the_repository_ledger_is_the_campaign_as_defined() -> None:
    root = study_ledger.default_ledger("planet100k")
    assert (root / "campaign.md").read_text() == study_ledger.campaign_markdown(CAMPAIGNS["planet100k"])
    ledger = Ledger.read(root)  # every file in it reads as a ledger file
    assert set(ledger.finished) <= set(CAMPAIGNS["planet100k"].cells(list(range(10))))
    assert study_campaign.END_MARGIN_S < 60

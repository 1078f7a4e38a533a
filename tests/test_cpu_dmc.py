"""``--preset cpu-dmc``: DeepMind Control at CPU scale, every family with its settings for the CPU said once."""

from __future__ import annotations

import pytest

from sb3_gaara.study import AGENTS
from sb3_gaara.study.catalogue import CPU_DMC_AGENTS, PRESETS, cpu_dmc_task, resolve_task
from sb3_gaara.study.cli import build_grid, parse_args


def test_the_preset_grid_is_cartpole_swingup_for_every_family_two_seeds_24k_steps():
    pairs, settings = build_grid(parse_args(["--preset", "cpu-dmc"]))
    assert pairs == [("cartpole_swingup", agent) for agent in CPU_DMC_AGENTS]
    families = {AGENTS[agent].algorithm for agent in CPU_DMC_AGENTS}
    assert families == {"gaara_sac", "drq", "drqv2", "slac", "dreamer"}
    assert settings["seeds"] == [0, 1] and settings["env_steps"] == 24_000
    assert (settings["eval_every"], settings["eval_episodes"], settings["milestones"]) == (4_000, 10, [8_000, 16_000, 24_000])
    assert settings["scale"] == "cpu" and settings["device"] == "cpu" and settings["workers"] == 1


def test_explicit_tasks_keep_the_cpu_scale_of_the_preset():
    _, settings = build_grid(parse_args(["--preset", "cpu-dmc", "--tasks", "walker_walk", "--agents", "gaara"]))
    assert settings["scale"] == "cpu"
    assert resolve_task("walker_walk", settings["scale"]).env_kwargs == {"height": 64, "width": 64}


@pytest.mark.parametrize(
    ("agent", "render", "frame_stack", "settings"),
    [
        ("gaara", 64, 3, {"image_size": 54, "batch_size": 128}),  # 54 px crops of 64 px renders
        ("sac_ae", 64, 3, {"image_size": 54, "batch_size": 128}),
        ("drq", 54, 3, {"image_size": 54, "batch_size": 128}),  # whole renders at the crop size
        ("ad10", 54, 3, {"image_size": 54, "batch_size": 64, "stddev_schedule_steps": 200_000}),  # DrQ-v2's "easy"
        ("slac", 64, 1, {"batch_size": 32, "model_batch_size": 8, "learning_starts": 1000}),
        ("dreamer", 64, 1, {"batch_size": 16, "sequence_length": 32, "learning_starts": 1000}),
    ],
)
def test_each_family_runs_the_task_with_its_cpu_settings(agent, render, frame_stack, settings):
    from sb3_gaara.study.run import RunConfig

    config = RunConfig(
        task=resolve_task("cartpole_swingup", "cpu"),
        agent=agent,
        seed=0,
        env_steps=24_000,
        eval_every=4_000,
        eval_episodes=10,
        checkpoint_every=4_000,
        run_dir="unused",
    )
    task = config.run_task()
    model_kwargs = task.model_kwargs
    assert {key: model_kwargs[key] for key in settings} == settings
    assert task.frame_stack == frame_stack
    # DrQ-v2 and Dreamer repeat every action twice; the others run cartpole at PlaNet's repeat (the env's default, 8)
    assert task.env_kwargs.get("action_repeat") == (2 if agent in ("ad10", "dreamer") else None)
    size = model_kwargs.get("image_size") if AGENTS[agent].render_at_crop_size else task.env_kwargs["height"]
    assert size == render
    # The run's identity records the CPU settings: a run of the papers' settings never resumes from it.
    assert config.identity()["task"]["model_kwargs"] == model_kwargs


def test_cpu_scale_is_refused_for_the_cpu_scale_task_and_unknown_scales():
    with pytest.raises(ValueError, match="cpu-scale"):
        cpu_dmc_task(resolve_task("pixel_reach"))
    with pytest.raises(ValueError, match="Unknown scale 'gpu'"):
        resolve_task("cartpole_swingup", "gpu")
    assert "scale" not in PRESETS["paper"]


# --------------------------------------------------------------------------------------------------
# The report: mean ± standard error and the margin over the random policy, embedded in the README.


def test_standard_error_and_margin_over_random_by_hand():
    from sb3_gaara.study.report import margin_over_random, standard_error

    assert standard_error([1.0, 3.0]) == pytest.approx(1.0)  # sample std sqrt(2), over sqrt(2)
    assert standard_error([5.0]) == 0.0
    # mean 11, 6 above random; SE 1 over seeds, 4 / sqrt(16) = 1 over the random episodes: 6 / sqrt(2)
    assert margin_over_random([10.0, 12.0], 5.0, 4.0, 16) == pytest.approx(6 / 2**0.5)
    assert margin_over_random([7.0], 5.0, 0.0, 10) == float("inf")


def test_results_md_gets_the_margin_table_and_the_readme_embeds_it(tmp_path):
    from sb3_gaara.study.report import MARGIN_TABLE_BEGIN, MARGIN_TABLE_END, embed_margin_table, write_json, write_reports

    rows = [
        {
            "step": step,
            "episode": 0,
            "episode_reward": reward,
            "env": "cartpole_swingup",
            "seed": seed,
            "agent": "GAARA",
            "std": 0,
        }
        for seed, rewards in ((0, (20.0, 150.0)), (1, (22.0, 170.0)))
        for step, reward in zip((0, 8000), rewards, strict=True)
    ]
    from sb3_gaara.study.report import write_curve_csv

    curves = tmp_path / "in.csv"
    write_curve_csv(curves, rows)
    random_dir = tmp_path / "out" / "runs" / "cartpole_swingup" / "random"
    random_dir.mkdir(parents=True)
    write_json(
        random_dir / "baseline.json",
        {"env": "cartpole_swingup", "agent": "Random", "mean": 100.0, "std": 40.0, "episodes": 16},
    )
    written = write_reports(tmp_path / "out", [8000], 4000, agents=["GAARA"], curves=[curves], bootstrap_reps=50, band="se")
    text = written["results"].read_text()
    # 160 ± 10 over 2 seeds; random 100 ± 40/4: (160 - 100) / sqrt(10^2 + 10^2) = 4.2 SE
    assert "| GAARA | 160±10 (n=2) [+4.2 SE] |" in text
    assert "| Random (16 episodes) | 100±10 |" in text
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{MARGIN_TABLE_BEGIN}\nold\n{MARGIN_TABLE_END}\nend\n")
    embed_margin_table(written["results"], readme)
    embedded = readme.read_text()
    assert embedded.startswith("intro\n") and embedded.endswith("\nend\n") and "old" not in embedded
    assert "| GAARA | 160±10 (n=2) [+4.2 SE] |" in embedded
    with pytest.raises(ValueError, match="add the two markers"):
        embed_margin_table(written["results"], curves)


def test_publish_copies_the_small_records_only_and_the_report_regenerates_from_them(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("publish_study", Path(__file__).parents[1] / "scripts" / "publish_study.py")
    assert spec is not None and spec.loader is not None
    publish_study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(publish_study)
    source = tmp_path / "runs_out"
    run = source / "runs" / "cartpole_swingup" / "gaara" / "seed_0"
    (run / "ckpt_000004000").mkdir(parents=True)
    (run / "ckpt_000004000" / "model.zip").write_bytes(b"heavy")
    (run / "logs").mkdir()
    for name in ("config.json", "done.json", "sessions.jsonl", "final_model.zip", "checkpoint.json", "progress.json"):
        (run / name).write_text("{}")
    (run / "curve.csv").write_text("step,episode,episode_reward,env,seed,agent,std\n0,0,20.0,cartpole_swingup,0,GAARA,0\n")
    random = source / "runs" / "cartpole_swingup" / "random"
    random.mkdir(parents=True)
    (random / "baseline.json").write_text(
        '{"env": "cartpole_swingup", "agent": "Random", "mean": 100.0, "std": 40.0, "episodes": 16}'
    )
    destination = tmp_path / "docs"
    written = publish_study.publish(source, destination)
    kept = sorted(str(path.relative_to(destination)) for path in written)
    assert kept == [
        "runs/cartpole_swingup/gaara/seed_0/config.json",
        "runs/cartpole_swingup/gaara/seed_0/curve.csv",
        "runs/cartpole_swingup/gaara/seed_0/done.json",
        "runs/cartpole_swingup/gaara/seed_0/sessions.jsonl",
        "runs/cartpole_swingup/random/baseline.json",
    ]
    from sb3_gaara.study.report import write_reports

    reports = write_reports(destination, [0], 4000, bootstrap_reps=20)
    assert "| GAARA | 20.0±0.0 (n=1) [-8.0 SE] |" in reports["results"].read_text()  # (20 - 100) / (40 / 4)

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
        ("ad10", 54, 3, {"image_size": 54, "batch_size": 128}),
        ("slac", 64, 1, {"batch_size": 64, "model_batch_size": 16, "learning_starts": 1000}),
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

"""DrQ-v2's per-task settings (sb3_gaara.drq.tasks): the table against DrQ-v2's task files, drqv2.yml against the
table, and the study's DrQ-v2 / AD(a, d) runs on DeepMind Control tasks."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import FakeImageEnv
from gymnasium import spaces

from sb3_gaara import study
from sb3_gaara.common.env_steps import get_action_repeat
from sb3_gaara.drq.drqv2 import DrQv2
from sb3_gaara.drq.tasks import DRQV2_TASKS, TASK_GROUPS, drqv2_task_settings
from sb3_gaara.envs import DMC_TASKS, dmc_env_id
from sb3_gaara.study import AGENTS, build_grid, resolve_task
from sb3_gaara.study.catalogue import CPU_SCALE_MODEL_KWARGS
from sb3_gaara.study.cli import plan_jobs
from sb3_gaara.study.run import RunConfig, _model_kwargs, _new_model, _render_size, make_train_env
from sb3_gaara.zoo import hyperparams_path

# DrQ-v2's task files (facebookresearch/drqv2, cfgs/task/*.yaml), as written there: each task's group and the keys it
# sets beyond the group's. reach_duplo (a manipulation task, no suite env here) is left out.
GROUP_FILES = {  # cfgs/task/<group>.yaml: num_train_frames, stddev_schedule
    "easy": (1_100_000, "linear(1.0,0.1,100000)"),
    "medium": (3_100_000, "linear(1.0,0.1,500000)"),
    "hard": (30_100_000, "linear(1.0,0.1,2000000)"),
}
TASK_FILES: dict[str, tuple[str, dict[str, Any]]] = {
    "acrobot_swingup": ("medium", {}),
    "cartpole_balance": ("easy", {}),
    "cartpole_balance_sparse": ("easy", {}),
    "cartpole_swingup": ("easy", {}),
    "cartpole_swingup_sparse": ("medium", {}),
    "cheetah_run": ("medium", {}),
    "cup_catch": ("easy", {}),
    "finger_spin": ("easy", {}),
    "finger_turn_easy": ("medium", {}),
    "finger_turn_hard": ("medium", {}),
    "hopper_hop": ("medium", {}),
    "hopper_stand": ("easy", {}),
    "humanoid_run": ("hard", {"lr": 8e-5, "feature_dim": 100}),
    "humanoid_stand": ("hard", {"lr": 8e-5, "feature_dim": 100}),
    "humanoid_walk": ("hard", {"lr": 8e-5, "feature_dim": 100}),
    "pendulum_swingup": ("easy", {}),
    "quadruped_run": ("medium", {"replay_buffer_size": 100000}),
    "quadruped_walk": ("medium", {}),
    "reacher_easy": ("medium", {}),
    "reacher_hard": ("medium", {}),
    "walker_run": ("medium", {"nstep": 1, "batch_size": 512}),
    "walker_stand": ("easy", {"nstep": 1, "batch_size": 512}),
    "walker_walk": ("easy", {"nstep": 1, "batch_size": 512}),
}
#: cfgs/config.yaml: the generic values the task files override
CONFIG = {"nstep": 3, "batch_size": 256, "lr": 1e-4, "feature_dim": 50, "action_repeat": 2}


def drqv2_schedule(schedule: str, agent_step: float) -> float:
    """DrQ-v2's ``utils.schedule`` for its ``linear(init, final, duration)`` strings, evaluated at the agent step."""
    match = re.fullmatch(r"linear\((.+),(.+),(.+)\)", schedule)
    assert match is not None
    init, final, duration = (float(group) for group in match.groups())
    mix = np.clip(agent_step / duration, 0.0, 1.0)
    return float((1.0 - mix) * init + mix * final)


def drqv2_model(task: str, **overrides: Any) -> DrQv2:
    """A DrQv2 with ``task``'s settings on DrQ-v2's 9 x 84 x 84 observations at action repeat 2."""
    env = FakeImageEnv(observation_space=spaces.Box(0, 255, (9, 84, 84), dtype=np.uint8))
    kwargs = {**drqv2_task_settings(task), "action_repeat": 2, "buffer_size": 10, "device": "cpu", **overrides}
    return DrQv2("CnnPolicy", env, **kwargs)


def test_the_table_holds_every_suite_task_of_drqv2s_task_files_by_the_package_name():
    suite = {f"{domain}_{task}" for domain, task in DMC_TASKS}
    names = {"cup_catch": "ball_in_cup_catch"}  # DrQ-v2's cup domain is the suite's ball_in_cup
    assert set(DRQV2_TASKS) == {names.get(name, name) for name in TASK_FILES} and set(DRQV2_TASKS) <= suite
    for name, (group, _) in TASK_FILES.items():
        assert DRQV2_TASKS[names.get(name, name)].group == group, name
        # DrQ-v2's name, the package's and the dmc-* id give the same settings
        package = names.get(name, name)
        domain = next(d for d, t in DMC_TASKS if f"{d}_{t}" == package)
        env_id = dmc_env_id(domain, package[len(domain) + 1 :])
        assert drqv2_task_settings(name) == drqv2_task_settings(package) == drqv2_task_settings(env_id)


@pytest.mark.parametrize("task", sorted(TASK_FILES))
def test_each_task_gets_its_files_settings_as_constructor_arguments(task: str):
    group, exceptions = TASK_FILES[task]
    file = {**CONFIG, **exceptions}
    settings = drqv2_task_settings(task)
    frames, schedule = GROUP_FILES[group]
    assert TASK_GROUPS[group].num_train_frames == frames
    # only what the task's files change; the rest is the constructor's default, DrQ-v2's config.yaml
    expected_keys = {"stddev_schedule_steps"} | {
        {"nstep": "n_steps", "batch_size": "batch_size", "lr": "learning_rate", "replay_buffer_size": "buffer_size"}.get(
            key, "policy_kwargs"
        )
        for key in exceptions
    }
    assert set(settings) == expected_keys
    assert settings.get("buffer_size", 100_000) == exceptions.get("replay_buffer_size", 100_000)
    model = drqv2_model(task, buffer_size=10)
    assert (model.n_steps, model.batch_size, model.learning_rate) == (file["nstep"], file["batch_size"], file["lr"])
    assert all(g["lr"] == file["lr"] for opt in (model.actor.optimizer, model.critic.optimizer) for g in opt.param_groups)
    assert model.policy.critic_encoder.features_dim == model.policy.actor_encoder.features_dim == file["feature_dim"]
    # the noise at an environment step is DrQ-v2's schedule at the agent step, env step / action repeat 2
    for env_step in (0, 50_000, 100_000, 200_000, 999_998, 1_000_000, 2_000_000, 4_000_000, 5_000_000):
        agent_step = env_step // CONFIG["action_repeat"]
        expected = drqv2_schedule(schedule, agent_step)
        assert model.exploration_stddev(agent_step) == pytest.approx(expected, abs=1e-12), (task, env_step)


def test_walker_stand_noise_at_100k_environment_steps_is_drqv2s():
    # linear(1.0, 0.1, 100000) at agent step 50000: 1 - 0.9 * 50000 / 100000; the generic schedule gave 0.82
    assert drqv2_task_settings("walker_stand") == {"stddev_schedule_steps": 200_000, "n_steps": 1, "batch_size": 512}
    assert drqv2_model("walker_stand").exploration_stddev(50_000) == pytest.approx(0.55)
    assert drqv2_model("walker_stand", stddev_schedule_steps=500_000).exploration_stddev(50_000) == pytest.approx(0.82)


def test_settings_are_fresh_copies_and_unknown_tasks_fail_with_the_fix():
    settings = drqv2_task_settings("humanoid_walk")
    assert settings["policy_kwargs"] == {"features_extractor_kwargs": {"features_dim": 100}}
    settings["policy_kwargs"]["features_extractor_kwargs"]["features_dim"] = 7
    assert drqv2_task_settings("humanoid_walk")["policy_kwargs"]["features_extractor_kwargs"]["features_dim"] == 100
    with pytest.raises(ValueError, match=r"no settings for 'dmc-fish-swim'.*walker_stand.*default_group"):
        drqv2_task_settings("dmc-fish-swim")
    # a task DrQ-v2 has no file for, with a group's settings
    assert drqv2_task_settings("fish_swim", default_group="medium") == {"stddev_schedule_steps": 1_000_000}
    assert drqv2_task_settings("walker_walk", default_group="hard")["stddev_schedule_steps"] == 200_000
    with pytest.raises(ValueError, match="Unknown DrQ-v2 task group 'tiny'"):
        drqv2_task_settings("fish_swim", default_group="tiny")


def test_the_zoo_file_is_the_table():
    entries = yaml.safe_load(hyperparams_path("drqv2").read_text())
    ids = {name: dmc_env_id(domain, task) for domain, task in DMC_TASKS if (name := f"{domain}_{task}") in DRQV2_TASKS}
    assert set(entries) == set(ids.values()) | {"default"}
    common = {
        "policy": "CnnPolicy",
        "env_kwargs": {"frame_stack": 3, "height": 84, "width": 84, "action_repeat": 2},
        "n_timesteps": 250_000,
        # the package's whole-run replay (DrQ-v2's 1M holds a whole 250k-step run; on quadruped-run it keeps 100k)
        "buffer_size": 250_000,
    }
    for name, env_id in ids.items():
        settings = drqv2_task_settings(name)
        settings.pop("buffer_size", None)
        assert entries[env_id] == {**common, **settings}, env_id
    assert entries["default"] == {**common, "stddev_schedule_steps": 1_000_000}  # DrQ-v2's default task's group


def _run_configs(tmp_path, argv: list[str]) -> list[RunConfig]:
    args = study.parse_args([*argv, "--out", str(tmp_path), "--random-episodes", "0"])
    pairs, settings = build_grid(args)
    tasks = {name: resolve_task(name) for name, _ in pairs}
    return [config for _, config in plan_jobs(args, pairs, settings, tasks, tmp_path, None)]


def test_the_ad_walker_stand_preset_runs_drqv2s_walker_stand_settings_at_action_repeat_2(tmp_path):
    configs = _run_configs(tmp_path, ["--preset", "ad-walker-stand"])
    assert {(config.task.name, config.agent) for config in configs} == {("walker_stand", name) for name in study.AD_AGENTS}
    config = next(config for config in configs if config.agent == "ad10")
    env = make_train_env(config.run_task(), 0, render_size=_render_size(config))
    model = _new_model(config, env, agent_steps=100)
    assert get_action_repeat(env) == model.action_repeat == 2 and env.observation_space.shape == (9, 84, 84)
    assert (model.n_steps, model.batch_size, model.stddev_schedule_steps) == (1, 512, 200_000)
    # the preset's end, 100k environment steps: DrQ-v2's walker-stand noise
    assert model.exploration_stddev(50_000) == pytest.approx(0.55)
    env.close()


def test_the_study_runs_drqv2_and_the_ad_agents_at_action_repeat_2_with_the_tasks_settings(tmp_path):
    configs = _run_configs(tmp_path, ["--tasks", "cheetah_run", "cartpole_swingup", "fish_swim", "--variants", "ad"])
    assert len(configs) == 3 * 4
    expected = {
        "cheetah_run": {"stddev_schedule_steps": 1_000_000},  # medium
        "cartpole_swingup": {"stddev_schedule_steps": 200_000},  # easy
        "fish_swim": {"stddev_schedule_steps": 1_000_000},  # no DrQ-v2 file: its default task's group
    }
    for config in configs:
        agent = AGENTS[config.agent]
        # not PlaNet's per-domain repeats (cheetah 4, cartpole 8)
        assert agent.action_repeat == 2 and config.run_task().env_kwargs == {"action_repeat": 2}
        assert _model_kwargs(config) == {**expected[config.task.name], **agent.kwargs}
    # the other agents run the PlaNet repeat and no DrQ-v2 settings
    (gaara,) = _run_configs(tmp_path, ["--tasks", "cheetah_run", "--agents", "gaara"])
    assert gaara.run_task().env_kwargs == {} and _model_kwargs(gaara) == {}
    # the task's and the study's arguments win over the table's
    config = RunConfig(**{**vars(configs[0]), "model_kwargs": {"stddev_schedule_steps": 7, "n_steps": 2}})
    assert _model_kwargs(config)["stddev_schedule_steps"] == 7 and _model_kwargs(config)["n_steps"] == 2


def test_the_cpu_scale_task_keeps_its_own_drqv2_settings(tmp_path):
    config, *_ = _run_configs(tmp_path, ["--cpu-scale", "--agents", "ad10"])
    assert config.task.name == "pixel_reach"
    assert _model_kwargs(config) == {**CPU_SCALE_MODEL_KWARGS, "augmentation": "shift", "reconstruction": False}
    env = make_train_env(config.run_task(), 0, render_size=_render_size(config))
    assert get_action_repeat(env) == 2  # PixelReach's own repeat, now said explicitly
    env.close()

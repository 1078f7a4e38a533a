"""Static description of the DeepMind Control suite tasks.

This module must stay free of heavy imports: it is read when ``sb3_gaara`` (or rl-zoo3,
through the start-up hook) registers the ``dmc-<domain>-<task>`` Gymnasium ids, and
importing ``dm_control`` there would load MuJoCo and an OpenGL backend in every process
that merely imports the package. ``tests/test_envs.py`` checks that :data:`DMC_TASKS`
matches ``dm_control.suite.ALL_TASKS`` of the installed dm_control.
"""

from __future__ import annotations

#: Every ``(domain, task)`` pair of ``dm_control.suite.ALL_TASKS`` (dm_control 1.0.x).
DMC_TASKS: tuple[tuple[str, str], ...] = (
    ("acrobot", "swingup"),
    ("acrobot", "swingup_sparse"),
    ("ball_in_cup", "catch"),
    ("cartpole", "balance"),
    ("cartpole", "balance_sparse"),
    ("cartpole", "swingup"),
    ("cartpole", "swingup_sparse"),
    ("cartpole", "two_poles"),
    ("cartpole", "three_poles"),
    ("cheetah", "run"),
    ("dog", "stand"),
    ("dog", "walk"),
    ("dog", "trot"),
    ("dog", "run"),
    ("dog", "fetch"),
    ("finger", "spin"),
    ("finger", "turn_easy"),
    ("finger", "turn_hard"),
    ("fish", "upright"),
    ("fish", "swim"),
    ("hopper", "stand"),
    ("hopper", "hop"),
    ("humanoid", "stand"),
    ("humanoid", "walk"),
    ("humanoid", "run"),
    ("humanoid", "run_pure_state"),
    ("humanoid_CMU", "stand"),
    ("humanoid_CMU", "walk"),
    ("humanoid_CMU", "run"),
    ("lqr", "lqr_2_1"),
    ("lqr", "lqr_6_2"),
    ("manipulator", "bring_ball"),
    ("manipulator", "bring_peg"),
    ("manipulator", "insert_ball"),
    ("manipulator", "insert_peg"),
    ("pendulum", "swingup"),
    ("point_mass", "easy"),
    ("point_mass", "hard"),
    ("quadruped", "walk"),
    ("quadruped", "run"),
    ("quadruped", "escape"),
    ("quadruped", "fetch"),
    ("reacher", "easy"),
    ("reacher", "hard"),
    ("stacker", "stack_2"),
    ("stacker", "stack_4"),
    ("swimmer", "swimmer6"),
    ("swimmer", "swimmer15"),
    ("walker", "stand"),
    ("walker", "walk"),
    ("walker", "run"),
)

#: Action repeat of the PlaNet benchmark protocol used by SAC+AE, CURL, DrQ and SAC+GAARA.
#: Every other domain uses :data:`DEFAULT_ACTION_REPEAT`.
ACTION_REPEAT: dict[str, int] = {
    "cartpole": 8,
    "reacher": 4,
    "cheetah": 4,
    "finger": 2,
    "ball_in_cup": 4,
    "walker": 2,
}
DEFAULT_ACTION_REPEAT = 2

#: Camera used for pixel observations. Camera 0 of the quadruped is a fixed far view in which
#: the robot quickly leaves the frame; camera 2 follows it (the choice of the SAC+AE code).
CAMERA_ID: dict[str, int] = {"quadruped": 2}
DEFAULT_CAMERA_ID = 0

#: Episode length in simulator (control) steps, before action repeat. Every suite task except
#: LQR has a 1000-step time limit; the environment enforces this count itself so that LQR's
#: unbounded episodes are cut the same way.
EPISODE_LENGTH = 1000


def dmc_env_id(domain_name: str, task_name: str) -> str:
    """Gymnasium id of a suite task, e.g. ``dmc_env_id("ball_in_cup", "catch") == "dmc-ball_in_cup-catch"``."""
    return f"dmc-{domain_name}-{task_name}"


def default_action_repeat(domain_name: str) -> int:
    """Action repeat the papers use for ``domain_name`` (2 for domains outside the PlaNet benchmark)."""
    return ACTION_REPEAT.get(domain_name, DEFAULT_ACTION_REPEAT)


def default_camera_id(domain_name: str) -> int:
    """Camera rendered for pixel observations of ``domain_name``."""
    return CAMERA_ID.get(domain_name, DEFAULT_CAMERA_ID)


def check_task(domain_name: str, task_name: str) -> None:
    """Raise a ``ValueError`` naming the valid choices if ``(domain_name, task_name)`` is not a suite task."""
    if (domain_name, task_name) in DMC_TASKS:
        return
    domains = sorted({domain for domain, _ in DMC_TASKS})
    if domain_name not in domains:
        raise ValueError(f"Unknown DeepMind Control domain {domain_name!r}. Valid domains: {', '.join(domains)}.")
    tasks = [task for domain, task in DMC_TASKS if domain == domain_name]
    raise ValueError(
        f"Unknown task {task_name!r} for DeepMind Control domain {domain_name!r}. Valid tasks: {', '.join(tasks)}."
    )

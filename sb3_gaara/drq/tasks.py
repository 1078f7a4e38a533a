"""DrQ-v2's per-task settings on the DeepMind Control suite, as its authors' task files set them.

DrQ-v2's code sorts its tasks into three groups that differ in training length and in how fast the exploration noise
decays (the ``easy``, ``medium`` and ``hard`` task files), and a few task files change other settings: the walker
tasks learn from 1-step returns on batches of 512, the humanoid tasks use a lower learning rate and 100 features,
quadruped-run keeps 100k transitions. :data:`DRQV2_TASKS` is that table, keyed by the package's task names
(``ball_in_cup_catch``: DrQ-v2's ``cup_catch``), and :func:`drqv2_task_settings` turns a row into :class:`DrQv2`
keyword arguments over the constructor's defaults, which are DrQ-v2's generic configuration. ``drqv2.yml`` and the
study's DrQ-v2 and AD(a, d) agents both read it.

Two unit conversions. DrQ-v2 counts its budget in *frames*, which are environment (simulator) steps, as the package
does; it evaluates its ``linear(1.0, 0.1, N)`` noise schedule at the *agent* step, so its ``N`` agent steps are
``2 N`` environment steps at its action repeat of 2 on every task, and ``stddev_schedule_steps`` (environment steps)
is ``2 N``. DrQ-v2's ``reach_duplo`` (a dm_control manipulation task, not one of the suite's) is left out: the
package has no environment for it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

#: Simulator steps per agent step on every DrQ-v2 task (its ``action_repeat``).
ACTION_REPEAT = 2


class TaskGroup(NamedTuple):
    """One of DrQ-v2's task groups: its training budget and noise schedule, in DrQ-v2's units and in the package's."""

    #: ``num_train_frames``: frames (environment steps) of training
    num_train_frames: int
    #: ``N`` of the group's ``stddev_schedule: linear(1.0, 0.1, N)``, in agent steps as DrQ-v2 evaluates it
    stddev_schedule_agent_steps: int

    @property
    def stddev_schedule_steps(self) -> int:
        """The schedule's duration in environment steps, :class:`DrQv2`'s ``stddev_schedule_steps``."""
        return ACTION_REPEAT * self.stddev_schedule_agent_steps


#: DrQ-v2's task groups (its ``easy``, ``medium`` and ``hard`` task files).
TASK_GROUPS: dict[str, TaskGroup] = {
    "easy": TaskGroup(num_train_frames=1_100_000, stddev_schedule_agent_steps=100_000),
    "medium": TaskGroup(num_train_frames=3_100_000, stddev_schedule_agent_steps=500_000),
    "hard": TaskGroup(num_train_frames=30_100_000, stddev_schedule_agent_steps=2_000_000),
}
#: The group whose settings the package gives a suite task DrQ-v2 has no file for (``drqv2.yml``'s ``default`` entry,
#: the study): that of DrQ-v2's default task (``quadruped_walk`` in its ``config.yaml``).
DEFAULT_GROUP = "medium"


class DrQv2Task(NamedTuple):
    """One of DrQ-v2's task files: its group and the settings it changes beyond the group's."""

    #: key of :data:`TASK_GROUPS`
    group: str
    #: :class:`DrQv2` keyword arguments the task file sets (``nstep`` -> ``n_steps``, ``lr`` -> ``learning_rate``,
    #: ``feature_dim`` -> the encoder's ``features_dim``, ``replay_buffer_size`` -> ``buffer_size``)
    exceptions: Mapping[str, Any] = {}


_WALKER = {"n_steps": 1, "batch_size": 512}
_HUMANOID = {"learning_rate": 8e-5, "policy_kwargs": {"features_extractor_kwargs": {"features_dim": 100}}}

#: Every DeepMind Control suite task of DrQ-v2's task files, by the package's name (``<domain>_<task>``).
DRQV2_TASKS: dict[str, DrQv2Task] = {
    # easy
    "cartpole_balance": DrQv2Task("easy"),
    "cartpole_balance_sparse": DrQv2Task("easy"),
    "cartpole_swingup": DrQv2Task("easy"),
    "ball_in_cup_catch": DrQv2Task("easy"),
    "finger_spin": DrQv2Task("easy"),
    "hopper_stand": DrQv2Task("easy"),
    "pendulum_swingup": DrQv2Task("easy"),
    "walker_stand": DrQv2Task("easy", _WALKER),
    "walker_walk": DrQv2Task("easy", _WALKER),
    # medium
    "acrobot_swingup": DrQv2Task("medium"),
    "cartpole_swingup_sparse": DrQv2Task("medium"),
    "cheetah_run": DrQv2Task("medium"),
    "finger_turn_easy": DrQv2Task("medium"),
    "finger_turn_hard": DrQv2Task("medium"),
    "hopper_hop": DrQv2Task("medium"),
    "quadruped_run": DrQv2Task("medium", {"buffer_size": 100_000}),
    "quadruped_walk": DrQv2Task("medium"),
    "reacher_easy": DrQv2Task("medium"),
    "reacher_hard": DrQv2Task("medium"),
    "walker_run": DrQv2Task("medium", _WALKER),
    # hard
    "humanoid_stand": DrQv2Task("hard", _HUMANOID),
    "humanoid_walk": DrQv2Task("hard", _HUMANOID),
    "humanoid_run": DrQv2Task("hard", _HUMANOID),
}
#: DrQ-v2's names of tasks the package names otherwise (its ``cup`` domain is the suite's ``ball_in_cup``).
_DRQV2_NAMES = {"cup_catch": "ball_in_cup_catch"}


def drqv2_task_name(task: str) -> str:
    """The package's name of a task given by that name (``walker_stand``), by its ``dmc-<domain>-<task>`` id or by
    DrQ-v2's name (``cup_catch``)."""
    if task.startswith("dmc-"):
        domain, _, name = task[len("dmc-") :].partition("-")
        task = f"{domain}_{name}"
    return _DRQV2_NAMES.get(task, task)


def group_settings(group: str) -> dict[str, Any]:
    """The :class:`DrQv2` keyword arguments of a task group (its noise schedule in environment steps)."""
    if group not in TASK_GROUPS:
        raise ValueError(f"Unknown DrQ-v2 task group {group!r}: use one of {', '.join(TASK_GROUPS)}.")
    return {"stddev_schedule_steps": TASK_GROUPS[group].stddev_schedule_steps}


def drqv2_task_settings(task: str, default_group: str | None = None) -> dict[str, Any]:
    """:class:`DrQv2` keyword arguments that run ``task`` as DrQ-v2's task file does, over the constructor's defaults
    (DrQ-v2's generic configuration): the group's ``stddev_schedule_steps`` and the task's exceptions.

    The env must repeat each action :data:`ACTION_REPEAT` times (``env_kwargs={"action_repeat": 2}`` for a
    ``dmc-*`` id), as DrQ-v2 does on every task; the training budget is the group's ``num_train_frames``
    (:data:`TASK_GROUPS`). A fresh copy on each call: the caller may edit it (SB3 edits ``policy_kwargs``).

    :param task: ``walker_stand``, ``dmc-walker-stand`` or DrQ-v2's ``cup_catch``
    :param default_group: the group whose settings a task without a DrQ-v2 file gets; ``None``: such a task is an
        error
    """
    name = drqv2_task_name(task)
    if name in DRQV2_TASKS:
        group, exceptions = DRQV2_TASKS[name]
        return {**group_settings(group), **copy.deepcopy(dict(exceptions))}
    if default_group is not None:
        return group_settings(default_group)
    raise ValueError(
        f"DrQ-v2's task files have no settings for {task!r}. Known tasks: {', '.join(sorted(DRQV2_TASKS))}. For "
        f"another task pass default_group (one of {', '.join(TASK_GROUPS)}; drqv2.yml's default is "
        f"{DEFAULT_GROUP!r}) or give DrQv2 its settings yourself."
    )

"""What a study can run: tasks, agents, presets, and the published scores it is compared with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from sb3_gaara import AD_VARIANTS, VARIANTS
from sb3_gaara.algorithms import ALGORITHMS
from sb3_gaara.drq.tasks import ACTION_REPEAT as DRQV2_ACTION_REPEAT
from sb3_gaara.drq.tasks import DEFAULT_GROUP as DRQV2_DEFAULT_GROUP
from sb3_gaara.drq.tasks import drqv2_task_settings

# ----------------------------------------------------------------------------------------------------
# Published scores.

#: Environment-step milestones of the papers' tables.
PAPER_MILESTONES = (100_000, 500_000)

#: Agents of the published tables, in their column order.
PUBLISHED_AGENTS = ("DrQ", "CURL", "SAC+AE", "SLAC", "PlaNet", "SAC from state")

# DrQ paper (Kostrikov et al. 2020), Table 1: mean, std over 10 seeds of the return after 100k / 500k
# environment steps (PlaNet benchmark protocol). SLAC has no cartpole or reacher entry.
_PUBLISHED_ROWS = {
    100_000: {
        "finger_spin": ((901, 104), (779, 108), (747, 130), (680, 130), (95, 164), (672, 76)),
        "cartpole_swingup": ((759, 92), (592, 170), (276, 38), None, (303, 71), (812, 45)),
        "reacher_easy": ((601, 213), (517, 113), (225, 164), None, (140, 256), (919, 123)),
        "cheetah_run": ((344, 67), (307, 48), (240, 38), (391, 47), (165, 123), (228, 95)),
        "walker_walk": ((612, 164), (344, 132), (395, 58), (428, 74), (125, 57), (604, 317)),
        "ball_in_cup_catch": ((913, 53), (772, 241), (338, 196), (607, 173), (198, 442), (957, 26)),
    },
    500_000: {
        "finger_spin": ((938, 103), (874, 151), (914, 107), (771, 203), (418, 382), (927, 43)),
        "cartpole_swingup": ((868, 10), (861, 30), (730, 152), None, (464, 50), (870, 7)),
        "reacher_easy": ((942, 71), (904, 94), (601, 135), None, (351, 483), (975, 5)),
        "cheetah_run": ((660, 96), (500, 91), (544, 50), (629, 74), (321, 104), (772, 60)),
        "walker_walk": ((921, 45), (906, 56), (858, 82), (865, 97), (293, 114), (964, 8)),
        "ball_in_cup_catch": ((963, 9), (958, 13), (810, 121), (959, 4), (352, 467), (979, 6)),
    },
}

#: ``PUBLISHED_SCORES[milestone][task][agent] = (mean, std)``; missing entries are absent.
PUBLISHED_SCORES: dict[int, dict[str, dict[str, tuple[float, float]]]] = {
    milestone: {
        task: {agent: score for agent, score in zip(PUBLISHED_AGENTS, scores, strict=True) if score is not None}
        for task, scores in rows.items()
    }
    for milestone, rows in _PUBLISHED_ROWS.items()
}

# ----------------------------------------------------------------------------------------------------
# Tasks.

#: The six tasks of the PlaNet benchmark, named as in the reference curves.
PLANET_TASKS = ("cartpole_swingup", "reacher_easy", "cheetah_run", "finger_spin", "walker_walk", "ball_in_cup_catch")
#: Tasks of the SAC+GAARA paper's figures (Fig. 4-6); its ablations (Fig. 3, 7-9) run on cheetah_run.
PAPER_TASKS = ("cheetah_run", "walker_walk", "finger_spin")
#: The CPU-scale task (:mod:`sb3_gaara.envs.pixel_reach`).
CPU_TASK = "pixel_reach"


@dataclass(frozen=True)
class TaskSpec:
    """How to build one task's environments and which ``GAARASAC`` settings suit it.

    :param name: name in the curves (``cheetah_run``, ``pixel_reach``)
    :param env_id: Gymnasium id
    :param env_kwargs: keyword arguments of the env
    :param frame_stack: frames stacked by the env's ``frame_stack`` keyword (3), the first frame repeated at reset,
        unless the agent observes another number (:attr:`AgentSpec.frame_stack`)
    :param model_kwargs: ``GAARASAC`` arguments that differ from its (paper) defaults (also DrQ's and DrQ-v2's, which
        take the same ones)
    :param algorithm_model_kwargs: the settings of algorithms (by RL Zoo name) whose arguments are not GAARASAC's, in
        place of ``model_kwargs`` (the CPU-scale task's SLAC and Dreamer settings)
    :param agent_render_size: where this task renders smaller frames than the DeepMind Control tasks, the size at
        which it renders those of agents with a render size of their own (:attr:`AgentSpec.render_size`; the CPU-scale
        task: 32 px); ``None``: the agent's size
    :param agent_model_kwargs: settings of single agents (by :attr:`AgentSpec.label`) over their algorithm's (the
        CPU-scale task: smaller searches of Dreamer's planners)

    :meth:`for_agent` applies the last four and the agent's own frames and action repeat: the task as one agent runs it.
    """

    name: str
    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    frame_stack: int = 3
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    algorithm_model_kwargs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    agent_render_size: int | None = None
    agent_model_kwargs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def for_agent(self, agent: AgentSpec) -> TaskSpec:
        """The task as ``agent`` runs it: the agent's frame stack, render size and action repeat (in ``env_kwargs``)
        and its algorithm's settings, then its own, as ``model_kwargs``. An agent without any of them runs the task as
        it is; applying it twice changes nothing."""
        env_kwargs = dict(self.env_kwargs)
        if agent.render_size is not None:
            size = self.agent_render_size if self.agent_render_size is not None else agent.render_size
            env_kwargs.update(render_size_kwargs(self, size))
        if agent.action_repeat is not None:
            env_kwargs["action_repeat"] = agent.action_repeat
        model_kwargs = self.algorithm_model_kwargs.get(agent.algorithm, self.model_kwargs)
        if agent.label in self.agent_model_kwargs:
            model_kwargs = {**model_kwargs, **self.agent_model_kwargs[agent.label]}
        return replace(
            self,
            env_kwargs=env_kwargs,
            frame_stack=agent.frame_stack if agent.frame_stack is not None else self.frame_stack,
            model_kwargs=model_kwargs,
        )


#: ``TaskSpec`` fields that say how the task treats other agents, not how a run's agent runs it (which
#: :meth:`TaskSpec.for_agent` applies): left out of a run's identity
AGENT_DEPENDENT_TASK_FIELDS = ("algorithm_model_kwargs", "agent_render_size", "agent_model_kwargs")


#: ``GAARASAC`` settings of the CPU-scale task: 32 px crops of 40 px frames, small networks, batch 32.
CPU_SCALE_MODEL_KWARGS: dict[str, Any] = {
    "image_size": 32,
    "batch_size": 32,
    "learning_starts": 500,
    "policy_kwargs": {
        "net_arch": [64, 64],
        "features_extractor_kwargs": {"features_dim": 32, "num_layers": 2, "num_filters": 16},
    },
}


#: SLAC's settings of the CPU-scale task: 32 px single frames (:data:`CPU_SCALE_RENDER_SIZE`), small networks,
#: sequences of 4 frames, batches of 32 sequences (agent) and 8 (model), 500 random agent steps, then 500 model updates
#: before the first agent update. Learning rates of 1e-3 and an initial temperature of 0.1 (the other agents' CPU-scale
#: values; the paper's 3e-4, 1e-4 and 1 are tuned for a million frames) and a decoder standard deviation of 0.1 (the
#: paper's sqrt(0.1) lets the model ignore PixelReach's few-pixel disks for longer). A model and an agent update take
#: ~50 ms on one core: 4000 agent steps take ~3.5 min.
SLAC_CPU_SCALE_MODEL_KWARGS: dict[str, Any] = {
    "learning_rate": 1e-3,
    "model_learning_rate": 1e-3,
    "ent_coef": "auto_0.1",
    "batch_size": 32,
    "model_batch_size": 8,
    "sequence_length": 4,
    "learning_starts": 500,
    "model_pretraining_steps": 500,
    "policy_kwargs": {
        "net_arch": [64, 64],
        "features_dim": 32,
        "z1_dim": 8,
        "z2_dim": 32,
        "model_hidden_sizes": [64],
        "base_channels": 8,
        "decoder_std": 0.1,
    },
}
#: Dreamer's settings of the CPU-scale task: 32 px single frames (:data:`CPU_SCALE_RENDER_SIZE`; the encoder and the
#: decoder drop their outermost layer), small networks, batches of 8 sequences of 16 frames, 500 random agent steps, then
#: 36 updates per 25 agent steps (one PixelReach episode), imagination over 15 steps. Where they leave the paper's values,
#: and why (each measured on PixelReach, 3000 agent steps, 2 seeds):
#:
#: * the KL is balanced (DreamerV2's ``kl_balance=0.95``) and scaled by 0.2: the posterior gives up information at
#:   0.01 of the image's weight, so the model learns to see PixelReach's few-pixel disks (with Dreamer's plain KL at
#:   weight 1, or 0.1, the reward error stayed at the reward's variance for 800 model updates; at 0.01 the prior
#:   learnt no action-dependent dynamics and the CEM planner scored no better than random), while the prior is trained
#:   by 0.19 of it;
#: * learning rates of 2e-3 (model), 1e-3 (value) and 2e-4 (actor), and ``gamma=0.95`` (25-step episodes): the paper's
#:   6e-4 / 8e-5 / 8e-5 are tuned for millions of frames;
#: * 1.44 updates per agent step where the paper makes 0.2 (100 per 1000 environment steps at action repeat 2): a
#:   smaller budget of steps needs more updates per step. With 12 updates per episode the actor settled on one
#:   saturated action (-56.7 and -42.7 against the random policy's -51.4); with 36 and an actor rate of 4e-4 it learnt
#:   but swung between evaluations (-34.8, then -49.2 on seed 0); at 2e-4 it held (-34.9, -36.1, -29.9 at 2000, 2500
#:   and 3000 agent steps on seed 0; -37.0, -32.6, -31.7 on seed 1);
#: * small networks: the RSSM's 64 units, 8 base channels, and dense heads (reward model, value, actor) of 64 units and
#:   2 layers each (``layers`` sets the three counts, where Dreamer's code has 400 units and 2, 3 and 4 layers), with
#:   PyTorch's initialization (``weight_init="torch"``), the one the figures above were measured with: with Dreamer's
#:   code's (the default, Keras's) the actor beat the random policy by 3.6 standard errors on seed 0, short of the
#:   check's 4 (-40.6 against -51.3; the model's errors fell as far).
#:
#: The first 36 updates come right after the 500 random steps, as Dreamer schedules its first training.
#: A model and a behaviour update take ~0.1 s on one core: 3000 agent steps take ~8 min.
DREAMER_CPU_SCALE_MODEL_KWARGS: dict[str, Any] = {
    "learning_starts": 500,
    "batch_size": 8,
    "sequence_length": 16,
    "train_freq": 25,
    "gradient_steps": 36,
    "imagination_horizon": 15,
    "learning_rate": 2e-4,
    "value_learning_rate": 1e-3,
    "model_learning_rate": 2e-3,
    "gamma": 0.95,
    "kl_scale": 0.2,
    "kl_balance": 0.95,
    "policy_kwargs": {
        "depth": 8,
        "deter_size": 64,
        "stoch_size": 16,
        "hidden_size": 64,
        "units": 64,
        "layers": 2,
        "weight_init": "torch",
    },
}
#: The search of Dreamer's planners on the CPU-scale task: 3 iterations of 100 candidates over 8 steps,
#: refitted to the best 10 (PlaNet's 10 x 1000 over 12 imagine 50x the steps per action).
DREAMER_CPU_SCALE_PLANNER_KWARGS: dict[str, Any] = {"candidates": 100, "top_k": 10, "iterations": 3, "horizon": 8}
#: Settings of the CPU-scale task for the algorithms (by RL Zoo name) that take other arguments than ``GAARASAC``:
#: they replace :data:`CPU_SCALE_MODEL_KWARGS` for them.
CPU_SCALE_ALGORITHM_MODEL_KWARGS: dict[str, dict[str, Any]] = {
    "slac": SLAC_CPU_SCALE_MODEL_KWARGS,
    "dreamer": DREAMER_CPU_SCALE_MODEL_KWARGS,
}
#: Settings of single agents (by label) on the CPU-scale task, over their algorithm's: the planners' smaller search.
CPU_SCALE_AGENT_MODEL_KWARGS: dict[str, dict[str, Any]] = {
    "Dreamer+CEM": {"planner_kwargs": DREAMER_CPU_SCALE_PLANNER_KWARGS},
    "Dreamer+MPC": {"planner_kwargs": DREAMER_CPU_SCALE_PLANNER_KWARGS},
}
#: Render size of the CPU-scale task for agents with a render size of their own (SLAC and Dreamer: 64 px on DMC): its
#: crop size, a multiple of 16 px as SLAC's encoder needs, and the smaller frame size Dreamer's networks are built for.
CPU_SCALE_RENDER_SIZE = 32


# ----------------------------------------------------------------------------------------------------
# DeepMind Control at CPU scale (``--preset cpu-dmc``).

#: Render size of the DeepMind Control tasks at CPU scale: 64 px (the papers' 100 px renders, or 84 px for DrQ and
#: DrQ-v2, cost ~2.5x the convolutions; SLAC and Dreamer render 64 px anyway).
CPU_DMC_RENDER_SIZE = 64
#: What the GAARA family (GAARASAC and its variants, GAARA+shift) changes at CPU scale: 54 px center crops of the 64 px
#: renders (the papers' 84 of 100, the same ratio) and batches of 128 (the papers' 128: unchanged). Everything else is
#: the paper's, including SAC+AE's 1000 random agent steps and the initial burst of updates.
CPU_DMC_MODEL_KWARGS: dict[str, Any] = {"image_size": 54, "batch_size": 128}
#: DrQ at CPU scale: whole 54 px renders (DrQ observes the whole frame, at the size the GAARA family crops) and batches of
#: 128 (DrQ: 512, which with K = M = 2 shifted views costs 4x a GAARA update on a CPU).
DRQ_CPU_DMC_MODEL_KWARGS: dict[str, Any] = {"image_size": 54, "batch_size": 128}
#: DrQ-v2 and the AD(a, d) variants at CPU scale: whole 54 px renders and batches of 64 (DrQ-v2: 256; 512 on the walker
#: tasks). DrQ-v2 repeats actions twice, so a 24k-step run makes 5000 updates where the agents at cartpole's repeat of 8
#: make 2000 to 3000: at batch 128 that took ~0.55 s each on one core, ~46 min of updates. Action repeat, n-step returns
#: and the exploration schedule stay DrQ-v2's.
DRQV2_CPU_DMC_MODEL_KWARGS: dict[str, Any] = {"image_size": 54, "batch_size": 64}
#: SLAC at CPU scale, on the paper's 64 px frames and networks: batches of 32 sequences for the agent (paper: 256) and 8
#: for the model (paper: 32), 1000 random agent steps (paper: 10k, more than a 24k-step run at cartpole's action repeat 8
#: collects) and 500 model updates before the first agent update (paper: 100k). A model and an agent update at batches
#: of 16 and 64 took ~1.3 s on one core (2000 of them: 43 min); these halve it.
SLAC_CPU_DMC_MODEL_KWARGS: dict[str, Any] = {
    "batch_size": 32,
    "model_batch_size": 8,
    "learning_starts": 1000,
    "model_pretraining_steps": 500,
}
#: Dreamer at CPU scale, on the paper's 64 px frames at action repeat 2: 2 seed episodes (paper: 5), batches of 16
#: sequences of 32 steps (paper: 50 of 50) and networks of about half the code's width (16 conv channels, a GRU of 100,
#: dense heads of 100 units with the code's depths and Keras initialisation); 100 updates per 1000 environment steps and
#: every other setting the paper's. An update took ~0.6 s on one core: 2200 updates in a 24k-step run, ~22 min.
DREAMER_CPU_DMC_MODEL_KWARGS: dict[str, Any] = {
    "learning_starts": 1000,
    "batch_size": 16,
    "sequence_length": 32,
    "policy_kwargs": {"depth": 16, "deter_size": 100, "stoch_size": 30, "hidden_size": 100, "units": 100},
}
#: Dreamer's planners at CPU scale: 5 iterations of 200 candidates over 12 steps, refitted to the best 20 (PlaNet:
#: 10 x 1000, best 100).
DREAMER_CPU_DMC_PLANNER_KWARGS: dict[str, Any] = {"candidates": 200, "top_k": 20, "iterations": 5, "horizon": 12}
#: The planners whose returns the ``dreamer`` runs of ``--preset cpu-dmc`` also record at each evaluation, on the world
#: model the actor's data trained (:attr:`~sb3_gaara.study.run.RunConfig.eval_planners`), and their search: 3 iterations
#: of 100 candidates over 8 steps, refitted to the best 10 (PlaNet: 10 x 1000 over 12, best 100; the planner agents
#: above: 5 x 200 over 12). A planner's cost per action is its iterations x horizon imagined steps, one after the other
#: (the candidates are one batch). Measured on one shared core, one evaluation episode of an untrained model of these
#: settings (500 actions at 64 px): the actor's took 12-25 s; the planner agents' search 5.6x (CEM) and 10x (MPC) the
#: actor's; 3 x 100 over 12 steps 3.2x; these 1.8x (CEM) and 1.9x (MPC). Both planners' 10 episodes then add ~3.7x the
#: actor's evaluation to each evaluation they make (~7.5 min when an actor episode takes 12 s), so the preset makes them
#: every 8k environment steps (4 of the run's 7 evaluations: ~30 min per run).
CPU_DMC_EVAL_PLANNERS: dict[str, dict[str, Any]] = {
    "cem": {"candidates": 100, "top_k": 10, "iterations": 3, "horizon": 8},
    "dreamer_mpc": {"candidates": 100, "top_k": 10, "iterations": 3, "horizon": 8},
}


def cpu_dmc_task(task: TaskSpec) -> TaskSpec:
    """``task`` (a DeepMind Control task) at CPU scale: 64 px renders and each family's settings above. Every departure
    from an agent's paper is in these settings, which the study's ``config.json`` of each run records."""
    if task.name == CPU_TASK:
        raise ValueError(f"{CPU_TASK} is CPU-scale already: use --preset cpu-scale for it, cpu-dmc for DMC tasks.")
    return replace(
        task,
        env_kwargs={**task.env_kwargs, "height": CPU_DMC_RENDER_SIZE, "width": CPU_DMC_RENDER_SIZE},
        model_kwargs=CPU_DMC_MODEL_KWARGS,
        algorithm_model_kwargs={
            "drq": DRQ_CPU_DMC_MODEL_KWARGS,
            "drqv2": DRQV2_CPU_DMC_MODEL_KWARGS,
            "slac": SLAC_CPU_DMC_MODEL_KWARGS,
            "dreamer": DREAMER_CPU_DMC_MODEL_KWARGS,
        },
        agent_render_size=CPU_DMC_RENDER_SIZE,
        agent_model_kwargs={
            "Dreamer+CEM": {"planner_kwargs": DREAMER_CPU_DMC_PLANNER_KWARGS},
            "Dreamer+MPC": {"planner_kwargs": DREAMER_CPU_DMC_PLANNER_KWARGS},
        },
    )


def render_size_kwargs(task: TaskSpec, size: int) -> dict[str, int]:
    """The env keyword arguments that render ``task``'s frames at ``size`` pixels (``size`` for PixelReach,
    ``height`` and ``width`` for the DeepMind Control tasks)."""
    if task.name == CPU_TASK:
        return {"size": size}
    return {"height": size, "width": size}


def resolve_task(name: str, scale: str | None = None) -> TaskSpec:
    """The :class:`TaskSpec` of ``pixel_reach``, a DMC task named like the reference curves
    (``cheetah_run``, ``ball_in_cup_catch``) or a ``dmc-<domain>-<task>`` id; with ``scale="cpu"``, a DMC task at CPU
    scale (:func:`cpu_dmc_task`)."""
    if scale not in (None, "cpu"):
        raise ValueError(f"Unknown scale {scale!r}: use None (the papers' settings) or 'cpu' (cpu_dmc_task).")
    if name in (CPU_TASK, "PixelReach-v0"):
        from sb3_gaara.envs.pixel_reach import PIXEL_REACH_ID, register_pixel_reach

        register_pixel_reach()
        return TaskSpec(
            CPU_TASK,
            PIXEL_REACH_ID,
            model_kwargs=CPU_SCALE_MODEL_KWARGS,
            algorithm_model_kwargs=CPU_SCALE_ALGORITHM_MODEL_KWARGS,
            agent_render_size=CPU_SCALE_RENDER_SIZE,
            agent_model_kwargs=CPU_SCALE_AGENT_MODEL_KWARGS,
        )
    from sb3_gaara.envs import DMC_TASKS, dmc_env_id, register_dmc_envs

    for domain, task in DMC_TASKS:
        if name in (f"{domain}_{task}", dmc_env_id(domain, task)):
            register_dmc_envs()
            spec = TaskSpec(f"{domain}_{task}", dmc_env_id(domain, task))
            return cpu_dmc_task(spec) if scale == "cpu" else spec
    raise ValueError(
        f"Unknown task {name!r}: use {CPU_TASK!r}, a DeepMind Control task named like the reference curves "
        f"(e.g. {', '.join(PLANET_TASKS)}) or a dmc-<domain>-<task> id."
    )


# ----------------------------------------------------------------------------------------------------
# Agents.


@dataclass(frozen=True)
class AgentSpec:
    """One column of the study: an algorithm's variant with fixed extra arguments.

    :param label: name in ``curves.csv``, plots and tables
    :param variant: the algorithm's ``variant`` (``None`` for an algorithm without variants: DrQv2, whose AD(a, d)
        switches are arguments in ``kwargs``)
    :param kwargs: further arguments of the algorithm
    :param description: where it comes from
    :param algorithm: the algorithm's RL Zoo name (:data:`sb3_gaara.algorithms.BY_ZOO_NAME`)
    :param render_at_crop_size: render the frames at the model's ``image_size`` instead of cropping that size out
        of the task's larger frames: DrQ observes whole 84 px renders, where SAC+AE and GAARA crop 84 px out of
        100 px renders
    :param frame_stack: frames per observation the agent needs (``None``: the task's 3); SLAC observes one frame
    :param render_size: render the frames at this size (``None``: the task's), for an algorithm without an
        ``image_size``: SLAC's and Dreamer's 64 px; a task that renders smaller frames renders them at its own size
        instead (:attr:`TaskSpec.agent_render_size`)
    :param action_repeat: simulator steps per agent step the agent runs at on every task (``None``: the task's);
        Dreamer fixes 2
    """

    label: str
    variant: str | None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    algorithm: str = "gaara_sac"
    render_at_crop_size: bool = False
    frame_stack: int | None = None
    render_size: int | None = None
    action_repeat: int | None = None

    def __post_init__(self) -> None:
        if self.render_at_crop_size and self.render_size is not None:
            raise ValueError(f"{self.label}: give render_at_crop_size or render_size, not both.")


#: The paper's Fig. 3: GAARA with its comparison weight held fixed instead of annealed 1 -> 0.5.
_FIXED_WEIGHT_AGENTS: dict[str, AgentSpec] = {
    "gaara_c1": AgentSpec(
        "GAARA (c=1)",
        "gaara",
        {"comparison_lambda": 1.0, "comparison_lambda_decay": 0.0},
        "fixed comparison weight 1 (paper Fig. 3)",
    ),
    "gaara_c05": AgentSpec(
        "GAARA (c=0.5)",
        "gaara",
        {"comparison_lambda": 0.5, "comparison_lambda_min": 0.5, "comparison_lambda_decay": 0.0},
        "fixed comparison weight 0.5 (paper Fig. 3)",
    ),
}
#: Image augmentation: DrQ, and GAARA's losses with DrQ's random shifts.
_AUGMENTATION_AGENTS: dict[str, AgentSpec] = {
    "drq": AgentSpec(
        "DrQ",
        "pixel_sac",
        {},
        "DrQ (Kostrikov et al. 2020): SAC with random shifts, K = M = 2, on 84 px renders",
        algorithm="drq",
        render_at_crop_size=True,
    ),
    "gaara_shift": AgentSpec(
        "GAARA+shift",
        "gaara",
        {"augmentation": "shift"},
        "GAARA whose critic and actor train on random shifts of the center crop (ours: GAARA + DrQ's augmentation)",
    ),
}
#: DrQ-v2 (= AD(1, 0)) and the AD(a, d) study's other three variants: augmentation a and reconstruction d on DDPG, at
#: DrQ-v2's action repeat of 2 on every task (not the PlaNet benchmark's per-domain repeats of the other agents), with
#: its task files' settings (:data:`ALGORITHM_TASK_SETTINGS`)
_AD_AGENTS: dict[str, AgentSpec] = {
    name: AgentSpec(
        ad.label,
        None,
        ad.kwargs,
        ad.source,
        algorithm="drqv2",
        render_at_crop_size=True,
        action_repeat=DRQV2_ACTION_REPEAT,
    )
    for name, ad in AD_VARIANTS.items()
}
#: Settings that an algorithm's (by RL Zoo name) authors set per DeepMind Control task, as a function of the task's
#: name: a run of the algorithm on a DMC task takes them under the task's own, the agent's and the study's arguments
#: (:meth:`~sb3_gaara.study.run.RunConfig.run_task`); the CPU-scale task keeps its own settings. DrQ-v2's task files,
#: and on a task DrQ-v2 has no file for, those of its default task's group (as ``drqv2.yml``'s ``default`` entry).
ALGORITHM_TASK_SETTINGS: dict[str, Callable[[str], dict[str, Any]]] = {
    "drqv2": partial(drqv2_task_settings, default_group=DRQV2_DEFAULT_GROUP),
}


def _dreamer_agent(label: str, kwargs: Mapping[str, Any], acting: str) -> AgentSpec:
    """One of Dreamer's agents: the same training, its planner acting (also while it collects the data)."""
    return AgentSpec(
        label,
        None,
        kwargs,
        "Dreamer (Hafner et al. 2020): PlaNet's recurrent state-space model, actor and value learned by latent "
        f"imagination; single 64 px frames at action repeat 2; {acting}",
        algorithm="dreamer",
        frame_stack=1,
        render_size=64,
        action_repeat=2,
    )


#: Latent-model agents: SLAC and Dreamer, on single 64 px frames (their models, and SLAC's actor's history, give them
#: motion). SLAC is labelled as the published SLAC column. No Dreamer agent is a published column: the table has no
#: Dreamer column, and Dreamer+CEM is not PlaNet (Dreamer's learning rates and action repeat 2 on every task, not
#: PlaNet's per-task repeats), so its label differs from "PlaNet".
_LATENT_MODEL_AGENTS: dict[str, AgentSpec] = {
    "slac": AgentSpec(
        "SLAC",
        None,
        {},
        "SLAC (Lee et al. 2020): SAC on the latents of a sequential latent variable model, the actor on the history; "
        "single 64 px frames",
        algorithm="slac",
        frame_stack=1,
        render_size=64,
    ),
    "dreamer": _dreamer_agent("Dreamer", {}, "acting by its actor"),
    "dreamer_cem": _dreamer_agent(
        "Dreamer+CEM", {"planner": "cem"}, "acting by PlaNet's CEM planner, the sum of the model's predicted rewards"
    ),
    "dreamer_mpc": _dreamer_agent(
        "Dreamer+MPC",
        {"planner": "dreamer_mpc"},
        "acting by CEM started from the actor's plan, lambda-returns with the value (Dreamer's MPC)",
    ),
}
#: The planners a Dreamer run acting by its actor can also be evaluated with, on the model its actor's data trained
#: (:attr:`~sb3_gaara.study.run.RunConfig.eval_planners`), and their names in the curves' labels
#: (:func:`planner_eval_label`)
EVAL_PLANNER_NAMES = {"cem": "CEM", "dreamer_mpc": "MPC"}


def planner_eval_label(label: str, planner: str) -> str:
    """The curve label of ``planner``'s evaluations on the model of a run of the agent labelled ``label``:
    ``"Dreamer+CEM (actor's data)"``. Not ``"Dreamer+CEM"``, the agent whose planner also collects its data."""
    return f"{label}+{EVAL_PLANNER_NAMES[planner]} (actor's data)"


def check_eval_planners(agent: str, eval_planners: Mapping[str, Mapping[str, Any]]) -> None:
    """Refuse planner evaluations that cannot mean what they say: on an agent other than one of Dreamer's acting by
    its actor, a planner :data:`EVAL_PLANNER_NAMES` does not name, or a setting the planner does not take."""
    if not eval_planners:
        return
    spec = AGENTS.get(agent)
    if spec is None or spec.algorithm != "dreamer" or spec.kwargs.get("planner", "actor") != "actor":
        actors = [key for key, other in AGENTS.items() if other.algorithm == "dreamer" and "planner" not in other.kwargs]
        raise ValueError(
            f"eval_planners evaluates Dreamer's planners on the world model a Dreamer run trains with the data its actor "
            f"collects; agent {agent!r} is not such a run. Give eval_planners to {' or '.join(map(repr, actors))} only "
            "(dreamer_cem and dreamer_mpc are runs whose planner collects the data: their curve is the planner's already)."
        )
    from sb3_gaara.dreamer.policies import PLANNER_DEFAULTS

    for planner, settings in eval_planners.items():
        if planner not in EVAL_PLANNER_NAMES:
            raise ValueError(
                f"eval_planners names the planner {planner!r}: use {' and/or '.join(map(repr, EVAL_PLANNER_NAMES))} "
                "(the actor's evaluations are the run's own curve)."
            )
        unknown = sorted(set(settings) - set(PLANNER_DEFAULTS[planner]))
        if unknown:
            raise ValueError(
                f"eval_planners[{planner!r}] has settings {unknown} the planner does not take; it takes "
                f"{sorted(PLANNER_DEFAULTS[planner])} (overrides of PLANNER_DEFAULTS[{planner!r}])."
            )


MAIN_AGENTS = ("gaara", "sac_ae", "contrastive")
ABLATION_AGENTS = ("gaara_c1", "gaara_c05", "joint", "random_anchor", "decoder_discriminator")
AUGMENTATION_AGENTS = ("drq", "gaara_shift", "pixel_sac")
AD_AGENTS = tuple(AD_VARIANTS)

_ALL_AGENTS = {
    **{name: AgentSpec(variant.label, name, {}, variant.source) for name, variant in VARIANTS.items()},
    **_FIXED_WEIGHT_AGENTS,
    **_AUGMENTATION_AGENTS,
    **_AD_AGENTS,
    **_LATENT_MODEL_AGENTS,
}
#: Agents by command-line key: one per variant of :data:`sb3_gaara.VARIANTS` (its name, label and source),
#: the two fixed-weight ones, the augmentation agents, the AD(a, d) variants of :data:`sb3_gaara.AD_VARIANTS`, SLAC and
#: Dreamer's three; the main agents first, then the ablations, the augmentation agents, the AD variants, then any other
#: agent (the latent-model ones).
AGENTS: dict[str, AgentSpec] = {
    key: _ALL_AGENTS[key]
    for key in dict.fromkeys([*MAIN_AGENTS, *ABLATION_AGENTS, *AUGMENTATION_AGENTS, *AD_AGENTS, *_ALL_AGENTS])
}
#: The agents of ``--preset cpu-dmc``, in the order their first seed runs: one of each family first (GAARA, SAC+AE, the
#: contrastive ablation, DrQ, GAARA+shift, DrQ-v2 = AD(1, 0), SLAC, Dreamer), then the AD variants and Dreamer's planners.
CPU_DMC_AGENTS = ("gaara", "sac_ae", "contrastive", "drq", "gaara_shift", "ad10", "slac", "dreamer", "ad00", "ad01", "ad11")
#: Key and label of the random-policy baseline measured once per task.
RANDOM_AGENT = "random"
RANDOM_LABEL = "Random"

# ----------------------------------------------------------------------------------------------------
# Presets.

#: ``--preset``: the grid as ``(tasks, agents)`` blocks; settings the preset changes unless given. Besides the
#: grid's settings (``seeds``, ``env_steps``, ``eval_every``, ``eval_episodes``, ``checkpoint_every``,
#: ``milestones``), a preset may default the run-time settings of :data:`RUNTIME_DEFAULTS` and add
#: ``model_kwargs`` (``GAARASAC`` arguments of every run) and ``eval_planners`` (by agent key, the planners each
#: evaluation of its runs also evaluates, with their settings: :attr:`~sb3_gaara.study.run.RunConfig.eval_planners`);
#: explicit flags win over all of them.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "grid": [(PAPER_TASKS, MAIN_AGENTS), (("cheetah_run",), ABLATION_AGENTS)],
        "seeds": [0, 1, 2],
        "env_steps": 100_000,
    },
    "planet": {"grid": [(PLANET_TASKS, MAIN_AGENTS)], "seeds": [0, 1, 2], "env_steps": 500_000},
    # The AD(a, d) study: DrQ-v2 with augmentation a and reconstruction d switched on and off, on walker-stand,
    # within the ~100k environment steps it trained for; DrQ-v2's walker-stand settings (an "easy" task: the noise
    # decays over 200k environment steps; 1-step returns, batch 512) at action repeat 2.
    "ad-walker-stand": {"grid": [(("walker_stand",), AD_AGENTS)], "seeds": [0, 1, 2], "env_steps": 100_000},
    "cpu-scale": {
        "grid": [((CPU_TASK,), MAIN_AGENTS)],
        "seeds": [0, 1],
        "env_steps": 5_000,
        "eval_every": 500,
        "eval_episodes": 10,
        "checkpoint_every": 2_500,
        "milestones": [2_500, 5_000],
    },
    # Every agent family learning DMC from pixels on a CPU: cartpole-swingup at 64 px (cpu_dmc_task says what each
    # family changes for the CPU), 24k environment steps, evaluated every 4k over 10 episodes, runs one after the other
    # on one torch thread (a core stays free), in slices (--time-limit) that resume from checkpoints every 4k.
    "cpu-dmc": {
        "grid": [(("cartpole_swingup",), CPU_DMC_AGENTS)],
        "scale": "cpu",
        "band": "se",  # the plot's band: mean ± standard error over seeds
        "seeds": [0, 1],
        "env_steps": 24_000,
        "eval_every": 4_000,
        "eval_episodes": 10,
        "checkpoint_every": 4_000,
        "milestones": [8_000, 16_000, 24_000],
        "device": "cpu",
        # Each evaluation of a Dreamer run also evaluates its CEM planner and its MPC on the same model (the data
        # collected by the actor), with the smaller search of CPU_DMC_EVAL_PLANNERS: curves of their own.
        "eval_planners": {"dreamer": CPU_DMC_EVAL_PLANNERS},
        # ... at 0, 8k, 16k and 24k only: each planner evaluation costs ~2x the actor's on one core.
        "eval_planners_every": 8_000,
    },
    # One job of ~9 minutes on one H100 that keeps nothing but curves.csv, the PNG and results.md: every run
    # side by side on the GPU (4 training runs + the random baseline), stopped at the time limit without the
    # checkpoints (model + ~750 MB replay buffer per run) that only a later slice could use.
    "gpu-10min": {
        "grid": [(("cheetah_run",), ("gaara", "sac_ae"))],
        "seeds": [0, 1],
        "env_steps": 100_000,
        "eval_every": 10_000,
        "eval_episodes": 10,
        "checkpoint_every": 1_000_000,
        "checkpoint_at_deadline": False,
        "workers": 5,
        "device": "cuda",
        # Leaves ~30 s of the 9 minutes for an evaluation begun just before the limit (it runs to its end),
        # the workers' exit and the reports.
        "time_limit": 510,
        "async_eval": True,
        "model_kwargs": {"cuda_graphs": True, "overlap_env_step": True},
    },
}

#: Run-time settings and their values without a preset or flag (``time_limit`` None: no limit).
RUNTIME_DEFAULTS: dict[str, Any] = {
    "workers": 1,
    "device": "auto",
    "time_limit": None,
    "checkpoint_at_deadline": True,
    # cuDNN times its convolution algorithms on the first call of each shape and keeps the fastest: same
    # computation, other kernels (float results may differ in the last bits). A process-wide torch flag, so a
    # run-time setting of the study rather than a GAARASAC argument.
    "cudnn_benchmark": False,
    # The Linear layers' matrix products in TF32 on a GPU (``torch.backends.cuda.matmul.allow_tf32``, off by
    # default in torch; cuDNN's convolutions use TF32 already): fewer mantissa bits, faster products. Process-wide
    # too, and like bfloat16 convolutions it changes the numbers, so it is opt-in.
    "tf32": False,
    # The evaluations in a process of their own, on a copy of the policy, while the run trains on
    # (EnvStepEvalCallback(asynchronous=True)): the same evaluations, in less wall-clock time where a core is free.
    "async_eval": False,
}

#: Algorithm arguments that change how fast a run computes, not what it computes: every family's
#: ``speed_options`` (GAARASAC's ``cuda_graphs``: the same update captured as CUDA graphs, eager on a CPU with
#: identical results; ``overlap_env_step``: the same updates, begun before the environment step where that changes
#: nothing). Each run's algorithm keeps those it takes (``speed_options_for``). Like ``device``, they are left out of
#: a run's identity, so a run checkpointed on a GPU can resume on a CPU, and they are given again when a run resumes
#: (the checkpoint's own value would win otherwise).
SPEED_ONLY_MODEL_KWARGS: frozenset[str] = frozenset().union(
    *(getattr(algorithm, "speed_options", ()) for algorithm in ALGORITHMS)
)

# ----------------------------------------------------------------------------------------------------
# Campaigns: grids whose results accumulate, job by job, in a ledger in the repository (:mod:`~sb3_gaara.study.ledger`).


@dataclass(frozen=True)
class CampaignSpec:
    """A grid of cells (task, agent, seed) that short GPU jobs fill one after the other
    (``python -m sb3_gaara.study --campaign NAME --budget SECONDS``), each cell trained once, to the end, and kept in
    ``docs/results/<name>/`` with its provenance.

    What each agent and task are (the papers' settings, frames, action repeat) is their :class:`AgentSpec` and
    :class:`TaskSpec` in this module; a campaign only says which of them, how long and in which order.

    :param name: the ledger's folder under ``docs/results``
    :param blocks: ``(tasks, agents)`` blocks in the order their cells run; a cell listed twice runs where first listed
    :param seeds: the seeds of every cell (``--seeds`` adds more, whose cells come after all of these)
    :param env_steps: environment steps of every cell (after action repeat)
    :param eval_every: evaluate every this many environment steps
    :param eval_episodes: episodes per evaluation
    :param milestones: environment steps of the results table
    :param runtime: run-time settings of :data:`RUNTIME_DEFAULTS` (and speed-only ``model_kwargs``) that the campaign's
        jobs use unless a flag says otherwise; none of them is part of a cell's identity
    :param description: what the campaign compares, for its ``campaign.md``
    """

    name: str
    blocks: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]
    seeds: tuple[int, ...]
    env_steps: int
    eval_every: int = 10_000
    eval_episodes: int = 10
    milestones: tuple[int, ...] = (100_000,)
    runtime: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def cells(self, seeds: tuple[int, ...] | list[int] | None = None) -> list[tuple[str, str, int]]:
        """``(task, agent, seed)`` in the order they run: block after block, within a block seed after seed (each seed
        of a block's comparison completes before the next seed starts), then task and agent in the block's order.
        ``seeds`` beyond :attr:`seeds` come last, in the same order, so that extending a campaign never reorders it."""
        wanted = list(self.seeds) if seeds is None else list(seeds)
        groups = [[seed for seed in self.seeds if seed in wanted], [seed for seed in wanted if seed not in self.seeds]]
        order: dict[tuple[str, str, int], None] = {}
        for group in groups:
            for tasks, agents in self.blocks:
                for seed in group:
                    for task in tasks:
                        for agent in agents:
                            order.setdefault((task, agent, seed), None)
        return list(order)


#: The agents of the PlaNet-benchmark campaign at 100k environment steps, the main comparison first.
PLANET100K_AGENTS = ("gaara", "sac_ae", "drq", "contrastive", "ad10", "slac", "dreamer")

#: ``--campaign``: campaigns by name.
CAMPAIGNS: dict[str, CampaignSpec] = {
    "planet100k": CampaignSpec(
        name="planet100k",
        blocks=(
            (("cheetah_run",), ("gaara", "sac_ae", "drq")),
            (("cheetah_run",), PLANET100K_AGENTS),
            (PLANET_TASKS, PLANET100K_AGENTS),
        ),
        seeds=(0, 1, 2),
        env_steps=100_000,
        milestones=(100_000,),
        # As the gpu-10min preset: the same computation, faster on a GPU (gpu_check.sh turns them off if its CUDA
        # tests fail).
        runtime={"async_eval": True, "model_kwargs": {"cuda_graphs": True, "overlap_env_step": True}},
        description="GAARA against SAC+AE and DrQ on cheetah-run first, then the contrastive ablation, DrQ-v2, SLAC and "
        "Dreamer, on the six tasks of the PlaNet benchmark at 100k environment steps (the DrQ paper's Table 1 "
        "protocol: the return of 10 evaluation episodes at 100k steps, each agent with its paper's settings).",
    ),
}

"""What a study can run: tasks, agents, presets, and the published scores it is compared with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sb3_gaara import AD_VARIANTS, VARIANTS

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
    :param frame_stack: frames stacked by the env's ``frame_stack`` keyword (3), the first frame repeated at reset
    :param model_kwargs: ``GAARASAC`` arguments that differ from its (paper) defaults
    """

    name: str
    env_id: str
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    frame_stack: int = 3
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)


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


def render_size_kwargs(task: TaskSpec, size: int) -> dict[str, int]:
    """The env keyword arguments that render ``task``'s frames at ``size`` pixels (``size`` for PixelReach,
    ``height`` and ``width`` for the DeepMind Control tasks)."""
    if task.name == CPU_TASK:
        return {"size": size}
    return {"height": size, "width": size}


def resolve_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of ``pixel_reach``, a DMC task named like the reference curves
    (``cheetah_run``, ``ball_in_cup_catch``) or a ``dmc-<domain>-<task>`` id."""
    if name in (CPU_TASK, "PixelReach-v0"):
        from sb3_gaara.envs.pixel_reach import PIXEL_REACH_ID, register_pixel_reach

        register_pixel_reach()
        return TaskSpec(CPU_TASK, PIXEL_REACH_ID, {}, 3, CPU_SCALE_MODEL_KWARGS)
    from sb3_gaara.envs import DMC_TASKS, dmc_env_id, register_dmc_envs

    for domain, task in DMC_TASKS:
        if name in (f"{domain}_{task}", dmc_env_id(domain, task)):
            register_dmc_envs()
            return TaskSpec(f"{domain}_{task}", dmc_env_id(domain, task))
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
    """

    label: str
    variant: str | None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    algorithm: str = "gaara_sac"
    render_at_crop_size: bool = False


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
#: DrQ-v2 (= AD(1, 0)) and the AD(a, d) study's other three variants: augmentation a and reconstruction d on DDPG
_AD_AGENTS: dict[str, AgentSpec] = {
    name: AgentSpec(ad.label, None, ad.kwargs, ad.source, algorithm="drqv2", render_at_crop_size=True)
    for name, ad in AD_VARIANTS.items()
}
MAIN_AGENTS = ("gaara", "sac_ae", "contrastive")
ABLATION_AGENTS = ("gaara_c1", "gaara_c05", "joint", "random_anchor", "decoder_discriminator")
AUGMENTATION_AGENTS = ("drq", "gaara_shift", "pixel_sac")
AD_AGENTS = tuple(AD_VARIANTS)

_ALL_AGENTS = {
    **{name: AgentSpec(variant.label, name, {}, variant.source) for name, variant in VARIANTS.items()},
    **_FIXED_WEIGHT_AGENTS,
    **_AUGMENTATION_AGENTS,
    **_AD_AGENTS,
}
#: Agents by command-line key: one per variant of :data:`sb3_gaara.VARIANTS` (its name, label and source),
#: the two fixed-weight ones, the augmentation agents and the AD(a, d) variants of :data:`sb3_gaara.AD_VARIANTS`;
#: the main agents first, then the ablations, the augmentation agents, the AD variants, then any other variant.
AGENTS: dict[str, AgentSpec] = {
    key: _ALL_AGENTS[key]
    for key in dict.fromkeys([*MAIN_AGENTS, *ABLATION_AGENTS, *AUGMENTATION_AGENTS, *AD_AGENTS, *_ALL_AGENTS])
}
#: Key and label of the random-policy baseline measured once per task.
RANDOM_AGENT = "random"
RANDOM_LABEL = "Random"

# ----------------------------------------------------------------------------------------------------
# Presets.

#: ``--preset``: the grid as ``(tasks, agents)`` blocks; settings the preset changes unless given. Besides the
#: grid's settings (``seeds``, ``env_steps``, ``eval_every``, ``eval_episodes``, ``checkpoint_every``,
#: ``milestones``), a preset may default the run-time settings of :data:`RUNTIME_DEFAULTS` and add
#: ``model_kwargs`` (``GAARASAC`` arguments of every run); explicit flags win over all of them.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "grid": [(PAPER_TASKS, MAIN_AGENTS), (("cheetah_run",), ABLATION_AGENTS)],
        "seeds": [0, 1, 2],
        "env_steps": 100_000,
    },
    "planet": {"grid": [(PLANET_TASKS, MAIN_AGENTS)], "seeds": [0, 1, 2], "env_steps": 500_000},
    # The AD(a, d) study: DrQ-v2 with augmentation a and reconstruction d switched on and off, on walker-stand,
    # within the ~100k environment steps it trained for.
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
        "model_kwargs": {"cuda_graphs": True},
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
}

#: ``GAARASAC`` arguments that change how fast a run computes, not what it computes (``cuda_graphs``: the
#: same update captured as CUDA graphs, eager on a CPU with identical results). Like ``device``, they are
#: left out of a run's identity, so a run checkpointed on a GPU can resume on a CPU, and they are given
#: again when a run resumes (the checkpoint's own value would win otherwise).
SPEED_ONLY_MODEL_KWARGS = frozenset({"cuda_graphs"})

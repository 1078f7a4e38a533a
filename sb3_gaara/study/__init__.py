"""``python -m sb3_gaara.study``: a grid of tasks x agents x seeds, evaluated as the papers evaluate.

Every run trains one agent (``--agents``: a :class:`~sb3_gaara.GAARASAC` variant, DrQ, a DrQ-v2 AD(a, d) variant,
SLAC or Dreamer with one of its planners) on one task with one seed, and evaluates it with
:class:`~sb3_gaara.evaluation.EnvStepEvalCallback` (10 deterministic episodes on a separate env every 10k *environment*
steps; SLAC acts with its history, Dreamer with its filtered latent state, passed along as SB3's recurrent state).
The study then writes, under ``--out``:

* ``curves.csv``: every evaluation of every run, in the columns of DrQ's published learning curves
  (``step,episode,episode_reward,env,seed,agent``; ``step`` counts environment steps, ``env`` is
  named like ``cheetah_run``);
* ``<task>.png``: mean +- std over seeds of each agent against environment steps, with the reference
  curves (``--reference``, DrQ's ``dmc_planet_bench.csv``), the published 100k/500k scores and a
  random policy drawn beside;
* ``results.md``: scores at 100k and 500k environment steps (mean +- std over seeds) next to the
  published numbers (DrQ paper, Table 1; in :mod:`~sb3_gaara.study.catalogue`, the reference folder is not shipped),
  then aggregates over tasks and seeds (interquartile mean, optimality gap, probability of improvement with
  stratified-bootstrap 95% intervals, on scores normalised per task; ``performance_profiles.png``), and each
  run's last evaluation, wall time and device, so that runs cut short by ``--time-limit`` say how far they got.

Runs are resumable: each run directory (``runs/<task>/<agent>/seed_<seed>``) holds its curve, a
checkpoint (model + replay buffer, written then renamed) every ``--checkpoint-every`` environment steps
and when stopped (``--time-limit``, unless ``--no-checkpoint-at-deadline``; SIGTERM, Ctrl-C), and
``done.json`` once finished. Running the same command again skips finished runs and continues
interrupted ones from their checkpoint, so a study can be spread over short GPU slices. A checkpoint also
keeps the random-number generators and the envs mid-episode, so on the CPU a resumed run writes the curve of
the run that never stopped, bit for bit (:mod:`~sb3_gaara.study.run`).

The package, one concept per module:

* :mod:`~sb3_gaara.study.catalogue`: tasks, agents (from :data:`sb3_gaara.VARIANTS`, and the frames each observes: 3
  stacked frames, SLAC and Dreamer one 64 px frame), presets, published scores;
* :mod:`~sb3_gaara.study.run`: one run (:class:`RunConfig`, :func:`run_training`) and the random baseline;
* :mod:`~sb3_gaara.study.scheduling`: jobs in worker processes, SIGTERM / Ctrl-C as a :class:`StopRequest`, the
  progress lines;
* :mod:`~sb3_gaara.study.ray_scheduling`: jobs as Ray tasks on a cluster (``--ray-address``; Ray imported only there);
* :mod:`~sb3_gaara.study.report`: curve CSVs, aggregation, milestone scores, ``results.md``, plots;
* :mod:`~sb3_gaara.study.aggregates`: the aggregates over tasks and seeds, with ``rliable`` (imported only there);
* :mod:`~sb3_gaara.study.cli`: arguments, the grid, :func:`main`;
* :mod:`~sb3_gaara.study.ledger`: a campaign's results in the repository (``docs/results/<campaign>``), cell by cell
  with their provenance, the bundles GPU jobs bring back and their merge, and the campaign's reports;
* :mod:`~sb3_gaara.study.campaign`: one job of a campaign (``--campaign NAME --budget SECONDS``): the next cells, as
  many at once as the speeds recorded in the ledger allow.
"""

from sb3_gaara.study.aggregates import (
    DMC_MAX_RETURN,
    aggregates_markdown,
    improvement_estimates,
    interval_estimates,
    normalize_returns,
    normalizer,
    performance_profiles,
    score_matrices,
)
from sb3_gaara.study.campaign import plan_cells, run_campaign
from sb3_gaara.study.catalogue import (
    ABLATION_AGENTS,
    AD_AGENTS,
    AGENTS,
    AUGMENTATION_AGENTS,
    CAMPAIGNS,
    CPU_SCALE_ALGORITHM_MODEL_KWARGS,
    CPU_SCALE_MODEL_KWARGS,
    CPU_TASK,
    MAIN_AGENTS,
    PAPER_MILESTONES,
    PAPER_TASKS,
    PLANET_TASKS,
    PRESETS,
    PUBLISHED_AGENTS,
    PUBLISHED_SCORES,
    RANDOM_AGENT,
    RANDOM_LABEL,
    RUNTIME_DEFAULTS,
    SPEED_ONLY_MODEL_KWARGS,
    AgentSpec,
    CampaignSpec,
    TaskSpec,
    resolve_task,
)
from sb3_gaara.study.cli import build_grid, main, parse_args
from sb3_gaara.study.ledger import Ledger, LedgerConflict, merge_bundle, write_campaign_report
from sb3_gaara.study.report import (
    CURVE_COLUMNS,
    STUDY_FILE,
    aggregate_curves,
    collect_curves,
    collect_random_baselines,
    collect_run_timings,
    default_reference_path,
    describe_settings,
    format_score,
    last_evaluation_markdown,
    load_reference,
    merge_curves,
    milestone_scores,
    plot_task,
    read_curve_csv,
    results_markdown,
    score_at,
    write_curve_csv,
    write_reports,
)
from sb3_gaara.study.run import (
    RunConfig,
    StudyCheckpointCallback,
    check_device,
    describe_device,
    evaluate_random_policy,
    make_train_env,
    run_directory,
    run_random_baseline,
    run_training,
)
from sb3_gaara.study.scheduling import StopRequest, run_jobs

__all__ = [
    "ABLATION_AGENTS",
    "AD_AGENTS",
    "AGENTS",
    "AUGMENTATION_AGENTS",
    "CAMPAIGNS",
    "CPU_SCALE_ALGORITHM_MODEL_KWARGS",
    "CPU_SCALE_MODEL_KWARGS",
    "CPU_TASK",
    "CURVE_COLUMNS",
    "DMC_MAX_RETURN",
    "MAIN_AGENTS",
    "PAPER_MILESTONES",
    "PAPER_TASKS",
    "PLANET_TASKS",
    "PRESETS",
    "PUBLISHED_AGENTS",
    "PUBLISHED_SCORES",
    "RANDOM_AGENT",
    "RANDOM_LABEL",
    "RUNTIME_DEFAULTS",
    "SPEED_ONLY_MODEL_KWARGS",
    "STUDY_FILE",
    "AgentSpec",
    "CampaignSpec",
    "Ledger",
    "LedgerConflict",
    "RunConfig",
    "StopRequest",
    "StudyCheckpointCallback",
    "TaskSpec",
    "aggregate_curves",
    "aggregates_markdown",
    "build_grid",
    "check_device",
    "collect_curves",
    "collect_random_baselines",
    "collect_run_timings",
    "default_reference_path",
    "describe_device",
    "describe_settings",
    "evaluate_random_policy",
    "format_score",
    "improvement_estimates",
    "interval_estimates",
    "last_evaluation_markdown",
    "load_reference",
    "main",
    "make_train_env",
    "merge_bundle",
    "merge_curves",
    "milestone_scores",
    "normalize_returns",
    "normalizer",
    "parse_args",
    "performance_profiles",
    "plan_cells",
    "plot_task",
    "read_curve_csv",
    "resolve_task",
    "results_markdown",
    "run_campaign",
    "run_directory",
    "run_jobs",
    "run_random_baseline",
    "run_training",
    "score_at",
    "score_matrices",
    "write_campaign_report",
    "write_curve_csv",
    "write_reports",
]

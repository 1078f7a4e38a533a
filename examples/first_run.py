"""The README's ``make train``: see GAARA learn from pixels in about 5 minutes on a 2-core CPU.

Two runs side by side, one CPU core each:

1. **Learning.** GAARA on PixelReach, the package's CPU-scale pixel task (a point mass that must reach a goal
   it only sees in 40 px frames), next to a uniform random policy, through the study harness:
   ``python -m sb3_gaara.study --cpu-scale --variants gaara --seeds 0`` (5000 environment steps).
2. **A DeepMind Control run.** GAARA on ``dmc-cheetah-run`` through the RL Zoo's own command,
   ``python -m rl_zoo3.train --algo gaara_sac --env dmc-cheetah-run``, with settings small enough for a CPU
   (``--steps`` agent steps, batch 8, one update every 5 steps after the first half): MuJoCo rendering, the
   zoo's output folder, TensorBoard logs with the decoder's reconstructions. Far too short to learn the task
   (that takes ~100k-500k environment steps on a GPU); it shows every part working.

Then the decoder's reconstructions of cheetah poses picked to differ from each other, ``first_run.png`` with
both pictures, and where each output is. Rerunning resumes the study (its finished run is kept) and starts
a new zoo experiment folder.

    python examples/first_run.py [--env dmc-cheetah-run] [--steps 1000] [--out runs/quickstart]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import subprocess
import sys
import time
from typing import IO, NamedTuple

from rl_zoo3.utils import get_latest_run_id

#: PixelReach's study run: the CPU-scale preset's length, in environment steps (2 per agent step)
PIXEL_REACH_ENV_STEPS = 5_000
#: the command of a real run, printed at the end
GPU_COMMAND = (
    "python -m rl_zoo3.train --algo gaara_sac --env {env} --device cuda --hyperparams cuda_graphs:True -P -tb runs/tb"
)


def study_command(out: pathlib.Path, env_steps: int, seed: int) -> list[str]:
    return [
        sys.executable, "-m", "sb3_gaara.study", "--cpu-scale", "--variants", "gaara", "--seeds", str(seed),
        "--env-steps", str(env_steps), "--random-episodes", "100", "--threads", "1", "--out", str(out),
    ]  # fmt: skip


def zoo_command(env_id: str, steps: int, seed: int, folder: pathlib.Path, tensorboard: pathlib.Path) -> list[str]:
    """``rl_zoo3.train`` with the packaged hyper-parameters, made small: batch 8, random actions for the first half,
    then one update every 5 agent steps, 5 reconstruction grids in TensorBoard, and one evaluation episode at
    the end."""
    updates = (steps - steps // 2) // 5
    hyperparams = {
        "batch_size": 8,
        "learning_starts": steps // 2,
        "init_gradient_steps": 0,
        "train_freq": 5,
        "buffer_size": steps,
        "reconstruction_log_interval": max(1, updates // 5),
    }
    return [
        sys.executable, "-m", "rl_zoo3.train", "--algo", "gaara_sac", "--env", env_id, "-n", str(steps),
        "--seed", str(seed), "--num-threads", "1", "-f", str(folder), "-tb", str(tensorboard),
        "--eval-freq", str(steps), "--eval-episodes", "1",
        "--hyperparams", *(f"{key}:{value}" for key, value in hyperparams.items()),
    ]  # fmt: skip


class Progress(NamedTuple):
    """What a job has done so far: the rows of a CSV file it appends to, after its header lines."""

    path: pathlib.Path
    header_lines: int
    unit: str

    def describe(self) -> str:
        try:
            with open(self.path) as file:
                done = max(sum(1 for _ in file) - self.header_lines, 0)
        except OSError:
            done = 0
        return f"{done} {self.unit}{'' if done == 1 else 's'}"


def run_side_by_side(jobs: dict[str, tuple[list[str], pathlib.Path]], progress: dict[str, Progress]) -> dict[str, int]:
    """Run each job (command, log file) at once; print a progress line every 20 s; return the exit codes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    logs: dict[str, IO[str]] = {}
    processes = {}
    for name, (command, log_path) in jobs.items():
        logs[name] = open(log_path, "w")  # closed below
        processes[name] = subprocess.Popen(command, stdout=logs[name], stderr=subprocess.STDOUT, env=env)
        print(f"[first run] {name}: {' '.join(command[1:])}\n            log: {log_path}", flush=True)
    start = time.time()
    try:
        while any(process.poll() is None for process in processes.values()):
            time.sleep(1)
            elapsed = time.time() - start
            if int(elapsed) % 20 == 0:
                states = []
                for name, process in processes.items():
                    state = "done" if process.poll() is not None else "running"
                    states.append(f"{name} {state} ({progress[name].describe()})")
                print(f"[first run] {elapsed:4.0f} s: " + "; ".join(states), flush=True)
    finally:
        for name, process in processes.items():
            if process.poll() is None:
                process.kill()
            logs[name].close()
    return {name: int(process.returncode) for name, process in processes.items()}


def read_pixel_reach(study: pathlib.Path, seed: int) -> tuple[list[dict[str, str]], dict[str, float]]:
    """The run's evaluations (``step``, ``episode_reward``: mean, ``std`` over 10 episodes) and the random baseline."""
    with open(study / "runs" / "pixel_reach" / "gaara" / f"seed_{seed}" / "curve.csv") as file:
        rows = list(csv.DictReader(file))
    with open(study / "runs" / "pixel_reach" / "random" / "baseline.json") as file:
        return rows, json.load(file)


def summarize_pixel_reach(rows: list[dict[str, str]], baseline: dict[str, float], seed: int) -> tuple[str, float]:
    """Lines on the PixelReach run, and GAARA's margin over the random policy in standard errors."""
    last = rows[-3:]  # 10 episodes each: pooled, 30 episodes of the policies of the last evaluations
    means = [float(row["episode_reward"]) for row in last]
    variances = [float(row["std"]) ** 2 for row in last]
    mean = sum(means) / len(means)
    pooled_std = math.sqrt(sum(variances) / len(variances) + sum((m - mean) ** 2 for m in means) / len(means))
    episodes = 10 * len(last)
    standard_error = math.sqrt(pooled_std**2 / episodes + baseline["std"] ** 2 / baseline["episodes"])
    margin = (mean - baseline["mean"]) / standard_error
    first = float(rows[0]["episode_reward"])
    lines = [
        f"PixelReach (CPU-scale pixel task), GAARA, seed {seed}: {first:.1f} before training, "
        f"{mean:.1f} ± {pooled_std:.1f} over the last {len(last)} evaluations ({last[0]['step']}-{last[-1]['step']} "
        f"environment steps, {episodes} episodes)",
        f"  random policy: {baseline['mean']:.1f} ± {baseline['std']:.1f} ({baseline['episodes']} episodes); "
        f"GAARA is {mean - baseline['mean']:.1f} above it, {margin:.1f} standard errors",
    ]
    return "\n".join(lines), margin


def compose(
    rows: list[dict[str, str]], baseline: dict[str, float], grid_png: pathlib.Path, out: pathlib.Path, env_id: str
) -> None:
    """``first_run.png``: PixelReach's evaluations next to the random policy's return (each ± one standard error),
    and the reconstructions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps = np.array([int(row["step"]) for row in rows])
    means = np.array([float(row["episode_reward"]) for row in rows])
    errors = np.array([float(row["std"]) for row in rows]) / math.sqrt(10)
    random_error = baseline["std"] / math.sqrt(baseline["episodes"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5), dpi=110, width_ratios=[1, 1.15])
    left.plot(steps, means, "o-", color="tab:blue", label="GAARA (deterministic policy, 10 episodes per point)")
    left.fill_between(steps, means - errors, means + errors, color="tab:blue", alpha=0.2)
    left.axhline(baseline["mean"], color="gray", linestyle=":", label=f"random policy ({baseline['episodes']} episodes)")
    left.axhspan(baseline["mean"] - random_error, baseline["mean"] + random_error, color="gray", alpha=0.15)
    left.set_xlabel("environment steps (after action repeat)")
    left.set_ylabel("episode return")
    left.set_title("GAARA learns PixelReach from 40 px frames (± 1 standard error)")
    left.grid(alpha=0.3)
    left.legend(loc="lower right", fontsize=8)
    right.imshow(plt.imread(grid_png))
    right.set_axis_off()
    right.set_title(f"{env_id} after a few minutes: reconstructions of varied poses")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="dmc-cheetah-run", help="the DeepMind Control run's dmc-<domain>-<task> id")
    parser.add_argument("--steps", type=int, default=1000, help="agent steps of the DeepMind Control run (>= 20)")
    parser.add_argument("--pixel-reach-env-steps", type=int, default=PIXEL_REACH_ENV_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/quickstart")
    args = parser.parse_args()
    if args.steps < 20:
        parser.error(f"--steps {args.steps}: the DeepMind Control run needs at least 20 agent steps (1000 by default).")
    out = pathlib.Path(args.out)
    study, zoo, tensorboard = out / "study", out / "zoo", out / "tb"
    out.mkdir(parents=True, exist_ok=True)
    # The folder rl-zoo3 will create, named as it names it.
    experiment = zoo / "gaara_sac" / f"{args.env}_{get_latest_run_id(str(zoo / 'gaara_sac'), args.env) + 1}"
    start = time.time()

    jobs = {
        "pixel_reach": (study_command(study, args.pixel_reach_env_steps, args.seed), out / "study.log"),
        "cheetah": (zoo_command(args.env, args.steps, args.seed, zoo, tensorboard), out / "zoo.log"),
    }
    progress = {  # the study's curve.csv has a header line; SB3's monitor.csv a JSON comment and a header line
        "pixel_reach": Progress(study / "runs" / "pixel_reach" / "gaara" / f"seed_{args.seed}" / "curve.csv", 1, "evaluation"),
        "cheetah": Progress(experiment / "0.monitor.csv", 2, "episode"),
    }
    codes = run_side_by_side(jobs, progress)
    for name, code in codes.items():
        if code != 0:
            sys.exit(f"[first run] {name} failed (exit code {code}); see {jobs[name][1]}")
    if not experiment.is_dir():
        sys.exit(f"[first run] the zoo run wrote no experiment folder under {zoo}; see {jobs['cheetah'][1]}")

    # The decoder's reconstructions of cheetah poses that differ from each other.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from reconstructions import save_reconstructions

    grid_png = save_reconstructions(experiment, args.env, out / "reconstructions.png", rows=4, seed=args.seed)
    picture = out / "first_run.png"
    study_png = study / "pixel_reach.png"
    rows, baseline = read_pixel_reach(study, args.seed)
    compose(rows, baseline, grid_png, picture, args.env)
    summary, margin = summarize_pixel_reach(rows, baseline, args.seed)
    evaluations = experiment / "evaluations.npz"
    import numpy as np

    with np.load(evaluations) as data:
        cheetah = f"{float(data['results'][-1].mean()):.1f} after {int(data['env_steps'][-1])} environment steps"
    print(
        f"""
[first run] done in {time.time() - start:.0f} s
{summary}
{args.env}, the zoo run ({args.steps} agent steps, too short to learn): evaluation return {cheetah}

Outputs
  {picture}   the learning curve next to the reconstructions
  {study_png}   PixelReach: GAARA's evaluations and the random policy
  {study / "results.md"}, {study / "curves.csv"}   the study's tables
  {experiment}/   the zoo run: {args.env}.zip (model), evaluations.npz, 0.monitor.csv, {args.env}/config.yml
  {grid_png}   {args.env}: input frames (center crop) and the decoder's reconstructions
  {tensorboard}/   TensorBoard (losses, train/reconstructions): .venv/bin/tensorboard --logdir {tensorboard}

A real run, on a GPU (~100k-500k environment steps):
  {GPU_COMMAND.format(env=args.env)}"""
    )
    if margin < 3:
        print(f"\n[first run] GAARA beat the random policy by only {margin:.1f} standard errors this time (3 expected).")


if __name__ == "__main__":
    main()

"""GAARA on the CPU-scale PixelReach task with each ``comparison_anneal`` form, several seeds, in parallel.

The CPU-scale learning check's settings: 3500 agent steps, 32 px crops, small networks. Because ``c`` would
move only 0.0035 in 3500 updates at the paper's decay (1e-6), ``--decay`` defaults to a rate that takes
``c`` from 1 to its 0.5 floor within the run. Each run is evaluated over ``--episodes`` episodes of the
deterministic policy; the script prints the mean and std over seeds of those means.

    python scripts/pixelreach_annealing.py [--seeds 0 1 2] [--workers 2] [--decay 1.5e-4]
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import statistics
import time
from typing import Any


def run(job: tuple[str, int, float, int, int]) -> dict[str, Any]:
    form, seed, decay, agent_steps, episodes = job
    import torch as th
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_gaara import GAARASAC
    from sb3_gaara.study import make_train_env, resolve_task

    th.set_num_threads(1)
    task = resolve_task("pixel_reach")
    kwargs = copy.deepcopy(dict(task.model_kwargs))
    model = GAARASAC(
        "CnnPolicy",
        make_train_env(task, seed),
        seed=seed,
        buffer_size=agent_steps,
        comparison_anneal=form,
        comparison_lambda_decay=decay,
        **kwargs,
    )
    start = time.time()
    model.learn(agent_steps)
    rewards, _ = evaluate_policy(
        model,
        make_train_env(task, seed, eval_env=True),
        n_eval_episodes=episodes,
        deterministic=True,
        return_episode_rewards=True,
    )
    return {
        "form": form,
        "seed": seed,
        "mean": float(sum(rewards) / len(rewards)),
        "final_c": model.comparison_lambda,
        "train_s": time.time() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--decay", type=float, default=1.5e-4, help="decrement of c per comparison update")
    parser.add_argument("--agent-steps", type=int, default=3500)
    parser.add_argument("--episodes", type=int, default=30)
    args = parser.parse_args()
    jobs = [(form, seed, args.decay, args.agent_steps, args.episodes) for seed in args.seeds for form in ("loss", "lr")]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(run, jobs)
    summary = {}
    for form in ("loss", "lr"):
        means = [r["mean"] for r in results if r["form"] == form]
        summary[form] = {"mean": statistics.mean(means), "std": statistics.pstdev(means), "per_seed": means}
    print(json.dumps({"runs": results, "summary": summary, "decay": args.decay}, indent=1))


if __name__ == "__main__":
    main()

"""CPU-scale learning check of one study agent on PixelReach, over several seeds, in parallel processes.

Each seed trains the agent with the study's CPU-scale settings (its algorithm, kwargs and render size, as
``python -m sb3_gaara.study --cpu-scale`` builds it, plus ``--overrides``) for ``--agent-steps`` agent steps on
one torch thread, then evaluates the deterministic policy over 60 episodes of the evaluation env. It prints each
seed's mean ± std and the margin over a random policy in standard errors, as the slow tests assert them.

    python scripts/pixelreach_learning.py drq --agent-steps 2000 --seeds 0 1 2
    python scripts/pixelreach_learning.py ad10 --agent-steps 3500 --overrides '{"learning_rate": 1e-3, "train_freq": 1}'
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

EPISODES = 60


def run_seed(agent: str, agent_steps: int, seed: int, overrides: dict[str, Any]) -> tuple[int, float, float, float]:
    """(seed, mean, std, training seconds) of one seed."""
    import torch as th
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_gaara.study import resolve_task
    from sb3_gaara.study import run as study_run
    from sb3_gaara.study.run import RunConfig

    th.set_num_threads(1)
    task = resolve_task("pixel_reach")
    config = RunConfig(
        task=task,
        agent=agent,
        seed=seed,
        env_steps=agent_steps * 2,
        eval_every=10**9,
        eval_episodes=1,
        checkpoint_every=10**9,
        run_dir="unused",
        device="cpu",
        threads=1,
        model_kwargs=overrides,
    )
    size = study_run._render_size(config)
    env = study_run.make_train_env(task, seed, render_size=size)
    eval_env = study_run.make_train_env(task, seed, eval_env=True, render_size=size)
    model = study_run._new_model(config, env, agent_steps=agent_steps)
    start = time.time()
    model.learn(agent_steps)
    seconds = time.time() - start
    rewards, _ = evaluate_policy(model, eval_env, n_eval_episodes=EPISODES, deterministic=True, return_episode_rewards=True)
    return seed, float(np.mean(rewards)), float(np.std(rewards)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("agent", help="a study agent: drq, gaara_shift, ad10, gaara, ...")
    parser.add_argument("--agent-steps", type=int, default=3_500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--overrides", default="{}", help="JSON of constructor arguments over the agent's")
    args = parser.parse_args()
    overrides = json.loads(args.overrides)

    from sb3_gaara.study import evaluate_random_policy, resolve_task

    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(run_seed, args.agent, args.agent_steps, seed, overrides) for seed in args.seeds]
        results = [future.result() for future in futures]
    random_mean, random_std = evaluate_random_policy(resolve_task("pixel_reach"), EPISODES)
    print(
        f"PixelReach, {args.agent}, {args.agent_steps} agent steps, overrides {overrides}; "
        f"random {random_mean:.1f} ± {random_std:.1f}"
    )
    for seed, mean, std, seconds in results:
        standard_error = np.sqrt((std**2 + random_std**2) / EPISODES)
        print(
            f"  seed {seed}: {mean:.1f} ± {std:.1f} ({EPISODES} episodes), margin {(mean - random_mean) / standard_error:.1f} "
            f"standard errors, {seconds:.0f} s of training"
        )
    means = [mean for _, mean, _, _ in results]
    print(f"  over seeds: {np.mean(means):.1f} ± {np.std(means):.1f}")


if __name__ == "__main__":
    main()

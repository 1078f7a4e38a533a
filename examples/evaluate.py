"""Evaluate a saved model as the papers do and plot its run's learning curve.

Deterministic policy, center crop, ``--episodes`` full episodes (10 in the papers' tables), on a fresh
environment instance; returns are the sums of rewards over all simulator steps (action repeat
included).

    python examples/evaluate.py runs/train --env dmc-cheetah-run --episodes 10
"""

from __future__ import annotations

import argparse
import os

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

import sb3_gaara  # noqa: F401  (registers the dmc-* environments)
from sb3_gaara import GAARASAC
from sb3_gaara.evaluation import get_action_repeat
from sb3_gaara.plotting import load_learning_curve, plot_learning_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="directory with model.zip (and monitor.csv / evaluations.npz to plot)")
    parser.add_argument("--env", default="dmc-cheetah-run")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()

    # Three stacked frames, the first one repeated at reset, as during training (examples/train.py).
    env = make_vec_env(args.env, n_envs=1, seed=args.seed, env_kwargs={"frame_stack": 3})
    # buffer_size=1: inference needs no replay memory.
    model = GAARASAC.load(os.path.join(args.run_dir, "model.zip"), env=env, buffer_size=1)
    mean, std = evaluate_policy(model, env, n_eval_episodes=args.episodes, deterministic=True)
    print(f"{args.env}: {mean:.1f} ± {std:.1f} over {args.episodes} episodes (deterministic policy, center crop)")

    action_repeat = get_action_repeat(env)
    curve = load_learning_curve(args.run_dir, action_repeat=action_repeat)
    png = plot_learning_curve(curve, os.path.join(args.run_dir, "learning_curve.png"), title=f"{args.env}")
    print(f"Learning curve: {png}")


if __name__ == "__main__":
    main()

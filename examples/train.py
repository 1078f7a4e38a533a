"""Train SAC+GAARA from pixels on a DeepMind Control task with the Python API.

Writes, under ``--out``: TensorBoard logs (``tb/``, with the decoder's reconstructions every
``--reconstructions-every`` updates), the training episodes (``0.monitor.csv``), the evaluations
(``evaluations.npz``), the model (``model.zip``) and ``learning_curve.png``.

The defaults are a short CPU run: a few thousand environment steps with a small batch, enough to see
every part work, not to learn the task (that takes ~100k-500k environment steps on a GPU, see the
README). The paper's settings are ``--batch-size 128`` and the per-task zoo configuration.

    python examples/train.py --env dmc-cheetah-run --timesteps 1000 --out runs/train
"""

from __future__ import annotations

import argparse
import os

from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env

import sb3_gaara  # noqa: F401  (registers the dmc-* environments)
from sb3_gaara import GAARASAC, VARIANTS
from sb3_gaara.evaluation import get_action_repeat
from sb3_gaara.plotting import load_learning_curve, plot_learning_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="dmc-cheetah-run", help="a dmc-<domain>-<task> id")
    parser.add_argument("--timesteps", type=int, default=1000, help="agent steps (environment steps / action repeat)")
    parser.add_argument("--variant", default="gaara", choices=sorted(VARIANTS))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-starts", type=int, default=250, help="random agent steps before the first update")
    parser.add_argument(
        "--init-gradient-steps",
        type=int,
        default=None,
        help="updates at once when training starts (default: --learning-starts, the reference code's burst)",
    )
    parser.add_argument("--eval-every", type=int, default=500, help="agent steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reconstructions-every", type=int, default=100, help="updates between logged grids (0: none)")
    parser.add_argument("--out", default="runs/train")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    # Three stacked 3x100x100 frames, as in the papers: (9, 100, 100) uint8 observations, oldest frame first and the
    # first frame repeated at reset (the env stacks them: frame_stack=3).
    stack = {"frame_stack": 3}
    env = make_vec_env(args.env, n_envs=1, seed=args.seed, monitor_dir=args.out, env_kwargs=stack)
    eval_env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1000, env_kwargs=stack)
    action_repeat = get_action_repeat(env)

    model = GAARASAC(
        "CnnPolicy",
        env,
        variant=args.variant,
        batch_size=args.batch_size,
        learning_starts=args.learning_starts,
        init_gradient_steps=args.init_gradient_steps,
        buffer_size=max(args.timesteps, 1),
        tensorboard_log=os.path.join(args.out, "tb"),
        reconstruction_log_interval=args.reconstructions_every if VARIANTS[args.variant].use_decoder else 0,
        seed=args.seed,
        device=args.device,
        verbose=1,
    )
    evaluation = EvalCallback(
        eval_env,
        eval_freq=args.eval_every,
        n_eval_episodes=args.eval_episodes,
        log_path=args.out,
        deterministic=True,
    )
    model.learn(total_timesteps=args.timesteps, callback=evaluation, progress_bar=True)
    model.save(os.path.join(args.out, "model.zip"))

    curve = load_learning_curve(args.out, action_repeat=action_repeat)
    title = f"SAC+GAARA ({args.variant}) on {args.env}"
    png = plot_learning_curve(curve, os.path.join(args.out, "learning_curve.png"), title=title)
    print(f"Saved {args.out}/model.zip, TensorBoard logs in {args.out}/tb, learning curve in {png}")
    if len(curve.eval_mean):
        steps, mean, std = int(curve.eval_env_steps[-1]), curve.eval_mean[-1], curve.eval_std[-1]
        print(f"Last evaluation after {steps} environment steps: {mean:.1f} ± {std:.1f}")


if __name__ == "__main__":
    main()

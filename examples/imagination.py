"""Show what a trained Dreamer imagines: real frames next to the frames its world model predicts for the same actions,
and (optionally) the evaluation returns of each planner acting with the same model.

The model acts in the env (its actor, sampling) for ``--steps`` agent steps. The top row shows the frames it saw; the
bottom row shows the model's open-loop prediction: the posterior's reconstructions of the first ``--context`` frames,
then frames decoded from the prior's means, rolled forward with the actions actually taken and no further frame.
Where the bottom row drifts from the top one, the model's dynamics are wrong.

    python examples/imagination.py runs/zoo/dreamer/dmc-walker-walk_1 --env dmc-walker-walk
    python examples/imagination.py model.zip --env PixelReach-v0 --env-kwargs size=64 --compare-planners 10
"""

from __future__ import annotations

import argparse
import ast
import os
import pathlib
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import sb3_gaara  # noqa: F401  (registers the dmc-* environments)
from sb3_gaara import Dreamer, evaluate_planners

#: Dreamer's observations on the dmc-* envs: single 64 px frames at action repeat 2 (the zoo file's env_kwargs)
DMC_ENV_KWARGS: dict[str, Any] = {"height": 64, "width": 64, "frame_stack": 1, "action_repeat": 2}


def find_model(path: str | os.PathLike, env_id: str) -> pathlib.Path:
    """``path`` itself if it is a file; in a directory ``model.zip`` or ``<env>.zip`` (rl-zoo3)."""
    path = pathlib.Path(path)
    if path.is_file():
        return path
    for name in ("model.zip", f"{env_id}.zip"):
        if (path / name).is_file():
            return path / name
    raise SystemExit(f"No model.zip or {env_id}.zip in {path}: give the model's file or its run directory.")


def parse_env_kwargs(pairs: list[str], env_id: str) -> dict[str, Any]:
    """``key=value`` pairs (values as Python literals) over the dmc-* defaults."""
    kwargs = dict(DMC_ENV_KWARGS) if env_id.startswith("dmc-") else {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if not value:
            raise SystemExit(f"--env-kwargs takes key=value pairs, got {pair!r}.")
        try:
            kwargs[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            kwargs[key] = value
    return kwargs


def real_and_imagined(
    model: Dreamer, env_id: str, env_kwargs: dict[str, Any], steps: int, context: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``steps + 1`` frames the model met acting ``(T, C, H, W)`` uint8, and its open-loop prediction of them
    (``(T, C, H, W)`` decoder means in ``[-0.5, 0.5]``)."""
    env = make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs=env_kwargs)
    obs = env.reset()
    frames, actions, state = [obs[0]], [], None
    episode_start = np.ones(1, dtype=bool)
    for _ in range(steps):
        action, state = model.predict(obs, state=state, episode_start=episode_start, deterministic=False)
        actions.append(state.action[0])  # the scaled action in [-1, 1], as the replay buffer stores it
        obs, _, dones, _ = env.step(action)
        if dones[0]:
            break
        frames.append(obs[0])
        episode_start = dones
    env.close()
    observations = th.as_tensor(np.stack(frames)[None], device=model.device)
    taken = th.as_tensor(np.stack(actions[: len(frames) - 1])[None], device=model.device)
    predicted = model.open_loop(observations, taken, context=context)
    return np.stack(frames), predicted[0].cpu().numpy()


def imagination_figure(real: np.ndarray, imagined: np.ndarray, context: int, out: str | os.PathLike) -> pathlib.Path:
    """Save the two rows (real, imagined) as a PNG; a red line marks where the context ends."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def row(frames: np.ndarray) -> np.ndarray:  # (T, C, H, W) in [0, 1] -> (H, T * W, 3)
        rgb = frames[:, -3:].transpose(0, 2, 3, 1)
        return np.concatenate(list(rgb), axis=1)

    grid = np.concatenate([row(real.astype(np.float32) / 255.0), row(np.clip(imagined + 0.5, 0.0, 1.0))], axis=0)
    width = real.shape[-1]
    fig, ax = plt.subplots(figsize=(max(6.0, len(real) * 0.8), 2.4), dpi=120)
    ax.imshow(grid)
    ax.axvline(context * width - 0.5, color="red", linewidth=1.5)
    ax.set_yticks([width / 2, 1.5 * width], ["real", "imagined"])
    ax.set_xticks([])
    ax.set_title(f"left of the red line: reconstructions of {context} context frames; right: open-loop imagination")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return pathlib.Path(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved Dreamer, or a run directory with model.zip or <env>.zip")
    parser.add_argument("--env", default="dmc-walker-walk")
    parser.add_argument("--env-kwargs", nargs="*", default=[], help="key=value pairs (dmc-*: 64 px, frame_stack 1, repeat 2)")
    parser.add_argument("--steps", type=int, default=20, help="agent steps shown")
    parser.add_argument("--context", type=int, default=5, help="frames the model filters before imagining")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="PNG path (default: imagination.png next to the model)")
    parser.add_argument(
        "--compare-planners", type=int, default=0, metavar="EPISODES",
        help="also evaluate the actor, CEM and Dreamer-MPC planners with the same model over EPISODES episodes each",
    )  # fmt: skip
    parser.add_argument("--candidates", type=int, default=None, help="candidates of both planners (default: 1000)")
    args = parser.parse_args()
    model_file = find_model(args.model, args.env)
    model = Dreamer.load(model_file, buffer_size=1)
    env_kwargs = parse_env_kwargs(args.env_kwargs, args.env)
    real, imagined = real_and_imagined(model, args.env, env_kwargs, args.steps, args.context, args.seed)
    out = args.out or os.path.join(model_file.parent, "imagination.png")
    print(f"Saved {imagination_figure(real, imagined, args.context, out)}")
    if args.compare_planners:
        overrides = {}
        if args.candidates is not None:
            small = {"candidates": args.candidates, "top_k": max(1, args.candidates // 10)}
            overrides = {"cem": small, "dreamer_mpc": small}
        env = make_vec_env(args.env, n_envs=1, seed=args.seed + 1, env_kwargs=env_kwargs)
        results = evaluate_planners(model, env, n_eval_episodes=args.compare_planners, planner_kwargs=overrides)
        for planner, (mean, std) in results.items():
            print(f"{planner:12s} {mean:9.1f} ± {std:.1f} over {args.compare_planners} episodes")


if __name__ == "__main__":
    main()

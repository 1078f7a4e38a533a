"""Save a grid of decoder reconstructions next to their inputs as a PNG.

Each row is one observation: the three stacked input frames (center crop, what the encoder sees), then the
decoder's reconstruction of each frame from the 50-dimensional code. The rows are poses picked to differ from
each other: the model acts (sampling its actions) for ``--steps`` agent steps, and the grid shows the
observations farthest apart in pixels, in the order they were met. The decoder predicts the 5-bit target
``x / 256 - 0.5`` (up to quantisation noise), so ``reconstruction + 0.5`` is shown.

    python examples/reconstructions.py runs/quickstart/zoo/gaara_sac/dmc-cheetah-run_1 --env dmc-cheetah-run
    python examples/reconstructions.py model.zip --env dmc-walker-walk --rows 6
"""

from __future__ import annotations

import argparse
import os
import pathlib

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import sb3_gaara  # noqa: F401  (registers the dmc-* environments)
from sb3_gaara import GAARASAC
from sb3_gaara.common.crops import center_crop
from sb3_gaara.plotting import reconstruction_grid


def find_model(path: str | os.PathLike, env_id: str) -> pathlib.Path:
    """``path`` itself if it is a file; in a directory ``model.zip`` (examples/train.py) or ``<env>.zip`` (rl-zoo3)."""
    path = pathlib.Path(path)
    if path.is_file():
        return path
    for name in ("model.zip", f"{env_id}.zip"):
        if (path / name).is_file():
            return path / name
    raise SystemExit(f"No model.zip or {env_id}.zip in {path}: give the model's file or its run directory.")


def pick_varied(observations: np.ndarray, rows: int) -> np.ndarray:
    """Indices of ``rows`` observations far apart: greedily, the one farthest (in pixels, newest frame) from
    those already picked, starting from the first; returned in time order."""
    frames = observations[:, -3:].reshape(len(observations), -1).astype(np.float32)
    picked = [0]
    distance = np.linalg.norm(frames - frames[0], axis=1)
    while len(picked) < min(rows, len(frames)):
        index = int(np.argmax(distance))
        picked.append(index)
        distance = np.minimum(distance, np.linalg.norm(frames - frames[index], axis=1))
    return np.sort(np.array(picked))


def collect_observations(model: GAARASAC, env_id: str, rows: int, steps: int, seed: int) -> np.ndarray:
    """``rows`` varied observations met by the model acting (actions sampled) for ``steps`` agent steps."""
    env = make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs={"frame_stack": 3})  # stacked as during training
    obs = env.reset()
    candidates = []
    for _ in range(steps):
        action, _ = model.predict(obs, deterministic=False)
        obs, _, _, _ = env.step(action)
        candidates.append(obs[0])
    env.close()
    observations = np.stack(candidates)
    return observations[pick_varied(observations, rows)]


def model_reconstruction_grid(model: GAARASAC, observations: np.ndarray) -> np.ndarray:
    """``(rows * H, 2 * frames * W + 4, 3)`` image in [0, 1]: center crops left, reconstructions right."""
    policy = model.policy
    if policy.decoder is None:
        raise SystemExit(f"This model (variant {model.variant!r}) has no decoder; train with variant 'gaara' or 'sac_ae'.")
    with th.no_grad():
        obs = center_crop(th.as_tensor(observations, device=model.device), model.image_size)
        reconstructions = policy.decoder(policy.encode(obs)).float()
    return reconstruction_grid(obs.cpu().numpy(), reconstructions.cpu().numpy())


def save_reconstructions(
    model_path: str | os.PathLike, env_id: str, out: str | os.PathLike, rows: int = 4, steps: int = 200, seed: int = 0
) -> pathlib.Path:
    """Load the model at ``model_path`` (file or run directory), collect varied observations, save the grid PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = GAARASAC.load(find_model(model_path, env_id), buffer_size=1)
    grid = model_reconstruction_grid(model, collect_observations(model, env_id, rows, steps, seed))
    fig, ax = plt.subplots(figsize=(10, 10 * grid.shape[0] / grid.shape[1] + 0.6), dpi=120)
    ax.imshow(grid)
    ax.set_axis_off()
    ax.set_title("input frames (center crop)   |   decoder reconstructions")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return pathlib.Path(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved model, or a run directory with model.zip or <env>.zip")
    parser.add_argument("--env", default="dmc-cheetah-run")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200, help="agent steps to pick the shown observations from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="PNG path (default: reconstructions.png next to the model)")
    args = parser.parse_args()
    model_file = find_model(args.model, args.env)
    out = args.out or os.path.join(model_file.parent, "reconstructions.png")
    print(f"Saved {save_reconstructions(model_file, args.env, out, args.rows, args.steps, args.seed)}")


if __name__ == "__main__":
    main()

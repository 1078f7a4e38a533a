"""Save a grid of decoder reconstructions next to their inputs as a PNG.

Each row is one observation: the three stacked input frames (center crop, what the encoder sees),
then the decoder's reconstruction of each frame from the 50-dimensional code. The decoder predicts the
5-bit target ``x / 256 - 0.5`` (up to quantisation noise), so ``reconstruction + 0.5`` is shown.

    python examples/reconstructions.py runs/quickstart --env dmc-cheetah-run --rows 4
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch as th
from stable_baselines3.common.env_util import make_vec_env

import sb3_gaara  # noqa: F401  (registers the dmc-* environments)
from sb3_gaara import GAARASAC
from sb3_gaara.common.crops import center_crop


def collect_observations(model: GAARASAC, env_id: str, rows: int, spacing: int, seed: int) -> np.ndarray:
    """Observations met by the deterministic policy, ``spacing`` agent steps apart."""
    env = make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs={"frame_stack": 3})  # stacked as during training
    obs = env.reset()
    collected = []
    for step in range(rows * spacing):
        action, _ = model.predict(obs, deterministic=True)
        obs, _, _, _ = env.step(action)
        if step % spacing == spacing - 1:
            collected.append(obs[0])
    env.close()
    return np.stack(collected)


def reconstruction_grid(model: GAARASAC, observations: np.ndarray) -> np.ndarray:
    """``(rows * H, 2 * frames * W, 3)`` image in [0, 1]: inputs left, reconstructions right."""
    policy = model.policy
    if policy.decoder is None:
        raise SystemExit(f"This model (variant {model.variant!r}) has no decoder; train with variant 'gaara' or 'sac_ae'.")
    with th.no_grad():
        obs = center_crop(th.as_tensor(observations, device=model.device), model.image_size)
        reconstruction = (policy.decoder(policy.encode(obs)) + 0.5).clamp(0, 1).cpu().numpy()
    inputs = obs.cpu().numpy() / 255.0
    n_frames = inputs.shape[1] // 3

    def frames(batch: np.ndarray) -> np.ndarray:  # (N, 3k, H, W) -> (N, H, k*W, 3)
        n, _, h, w = batch.shape
        return batch.reshape(n, n_frames, 3, h, w).transpose(0, 3, 1, 4, 2).reshape(n, h, n_frames * w, 3)

    rows = np.concatenate(
        [frames(inputs), np.ones((*inputs.shape[:1], inputs.shape[2], 4, 3)), frames(reconstruction)], axis=2
    )
    return rows.reshape(-1, rows.shape[2], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="directory with model.zip")
    parser.add_argument("--env", default="dmc-cheetah-run")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--spacing", type=int, default=20, help="agent steps between the shown observations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="PNG path (default: RUN_DIR/reconstructions.png)")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = GAARASAC.load(os.path.join(args.run_dir, "model.zip"), buffer_size=1)
    grid = reconstruction_grid(model, collect_observations(model, args.env, args.rows, args.spacing, args.seed))
    out = args.out or os.path.join(args.run_dir, "reconstructions.png")
    fig, ax = plt.subplots(figsize=(10, 10 * grid.shape[0] / grid.shape[1] + 0.6), dpi=120)
    ax.imshow(grid)
    ax.set_axis_off()
    ax.set_title("input frames (center crop)   |   decoder reconstructions")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    print(f"Saved {out}")


if __name__ == "__main__":
    main()

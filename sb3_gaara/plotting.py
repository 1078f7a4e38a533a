"""Learning curves of one run from SB3's own logs, counted in environment steps.

A run directory written by ``examples/train.py`` (or any SB3 run with a ``Monitor`` file and an
``EvalCallback`` log) holds ``monitor.csv`` (training episodes, lengths in agent steps) and
``evaluations.npz`` (evaluations, ``timesteps`` in agent steps). Results tables count simulator
steps after action repeat, so both are multiplied by the action repeat here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from sb3_gaara.common.env_steps import env_steps


@dataclass
class LearningCurve:
    """Training and evaluation returns of one run against environment steps (after action repeat)."""

    train_env_steps: np.ndarray
    train_returns: np.ndarray
    eval_env_steps: np.ndarray
    eval_mean: np.ndarray
    eval_std: np.ndarray


def load_learning_curve(run_dir: str, action_repeat: int = 1) -> LearningCurve:
    """Read ``monitor.csv`` and ``evaluations.npz`` of ``run_dir`` (either may be missing)."""
    from stable_baselines3.common.monitor import load_results

    train_steps = train_returns = np.zeros(0)
    if any(name.endswith("monitor.csv") for name in os.listdir(run_dir)):
        episodes = load_results(run_dir)
        train_steps = env_steps(np.cumsum(episodes["l"].to_numpy()), action_repeat)
        train_returns = episodes["r"].to_numpy()
    eval_steps = eval_mean = eval_std = np.zeros(0)
    eval_file = os.path.join(run_dir, "evaluations.npz")
    if os.path.exists(eval_file):
        with np.load(eval_file) as data:
            eval_steps = env_steps(data["timesteps"], action_repeat)
            eval_mean = data["results"].mean(axis=1)
            eval_std = data["results"].std(axis=1)
    return LearningCurve(train_steps, train_returns, eval_steps, eval_mean, eval_std)


def plot_learning_curve(curve: LearningCurve, path: str, title: str = "") -> str:
    """Save a PNG of the training episode returns and the deterministic evaluations; return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    if len(curve.train_env_steps):
        ax.plot(curve.train_env_steps, curve.train_returns, "o-", color="tab:blue", alpha=0.6, label="training episodes")
    if len(curve.eval_env_steps):
        ax.errorbar(
            curve.eval_env_steps,
            curve.eval_mean,
            yerr=curve.eval_std,
            fmt="s-",
            color="tab:red",
            capsize=3,
            label="evaluation (deterministic, mean ± std)",
        )
    ax.set_xlabel("environment steps (after action repeat)")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curve.train_env_steps) or len(curve.eval_env_steps):
        ax.legend(loc="best")
    else:
        ax.text(0.5, 0.5, "no finished episode yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def reconstruction_grid(observations: np.ndarray, reconstructions: np.ndarray, gap: int = 4) -> np.ndarray:
    """One image of inputs and their decoder reconstructions: a row per observation, its stacked frames left
    to right, then (after a white gap of ``gap`` px) the reconstruction of each frame.

    :param observations: ``(N, C, H, W)`` uint8 images, ``C`` stacked frames of 3 (RGB) channels, or of one
        (grayscale) channel when ``C`` is not a multiple of 3
    :param reconstructions: ``(N, C, H, W)`` decoder outputs, which predict the 5-bit target ``x / 256 - 0.5``
        (:func:`sb3_gaara.common.losses.preprocess_reconstruction_target`): shown as ``reconstruction + 0.5``
    :return: ``(N * H, 2 * k * W + gap, 3)`` float32 in ``[0, 1]`` (``HWC``, for matplotlib's ``imshow`` and
        TensorBoard's ``add_image``), ``k`` the number of frames
    """
    if observations.ndim != 4 or observations.shape != reconstructions.shape:
        raise ValueError(
            f"observations {observations.shape} and reconstructions {reconstructions.shape} must both be (N, C, H, W)."
        )
    n, channels, height, width = observations.shape
    per_frame = 3 if channels % 3 == 0 else 1
    n_frames = channels // per_frame

    def frames(batch: np.ndarray) -> np.ndarray:  # (N, C, H, W) -> (N, H, k*W, 3)
        batch = batch.reshape(n, n_frames, per_frame, height, width).transpose(0, 3, 1, 4, 2)
        batch = batch.reshape(n, height, n_frames * width, per_frame)
        return np.repeat(batch, 3 // per_frame, axis=3)

    inputs = frames(observations.astype(np.float32) / 255.0)
    outputs = frames(np.clip(reconstructions.astype(np.float32) + 0.5, 0.0, 1.0))
    rows = np.concatenate([inputs, np.ones((n, height, gap, 3), dtype=np.float32), outputs], axis=2)
    return rows.reshape(n * height, rows.shape[2], 3)

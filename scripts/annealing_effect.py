"""How much the comparison weight ``c`` changes GAARA's comparison updates, in each ``comparison_anneal`` form.

From one model state, ``--steps`` comparison updates are run on the same batches with ``c = 1`` and with
``c = 0.5``. The script prints how far the encoder and ``W`` moved with ``c = 0.5``, relative to how far they
moved with ``c = 1``, and how different the two moves are. It uses the paper's set-up: 84 px crops of
9x100x100 observations, batch 128, Adam with learning rate 1e-3 for the encoder and ``W``. The frames are
random, as in the benchmark, because Adam's behaviour does not depend on their content.

    python scripts/annealing_effect.py [--steps 100] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch as th

from sb3_gaara import GAARASAC
from sb3_gaara.benchmark import stacked_random_env


def displacements(comparison_anneal: str, weight: float, checkpoints: list[int], batch_size: int) -> list[th.Tensor]:
    """The flattened move of the encoder and ``W`` after each number of comparison updates in ``checkpoints``."""
    model = GAARASAC(
        "CnnPolicy", stacked_random_env(0), variant="contrastive", comparison_anneal=comparison_anneal, seed=0, device="cpu"
    )
    model.learn(total_timesteps=model.learning_starts)  # random actions: fills the buffer, trains nothing
    comparison = model.auxiliary_losses["comparison"]
    params = [*model.policy.critic_encoder.parameters(), model.policy.comparison.W]
    start = th.cat([param.detach().flatten() for param in params])
    np.random.seed(0)
    th.manual_seed(0)
    moves = []
    lr_form = comparison_anneal == "lr"
    for step in range(1, max(checkpoints) + 1):
        replay_data = model.replay_buffer.sample(batch_size)
        batch = model._auxiliary_batch(replay_data, model.policy.scale_images(replay_data.observations), None)
        loss, _ = comparison(model.policy, batch, 1.0 if lr_form else weight)
        model.optimize(loss, comparison.optimizer, step_scale=weight if lr_form else None)
        if step in checkpoints:
            moves.append(th.cat([param.detach().flatten() for param in params]) - start)
    return moves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="comparison updates (100)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (the paper's 128)")
    args = parser.parse_args()
    checkpoints = sorted({1, 10, args.steps} & set(range(1, args.steps + 1)))
    results = {}
    for form in ("loss", "lr"):
        full = displacements(form, 1.0, checkpoints, args.batch_size)
        half = displacements(form, 0.5, checkpoints, args.batch_size)
        results[form] = {
            steps: {
                "move_c05_over_move_c1": float(h.norm() / f.norm()),
                "difference_over_move_c1": float((h - f).norm() / f.norm()),
            }
            for steps, f, h in zip(checkpoints, full, half, strict=True)
        }
    print(json.dumps({"batch_size": args.batch_size, "threads": th.get_num_threads(), **results}, indent=1))


if __name__ == "__main__":
    main()

"""Whether ``torch.compile`` computes GAARASAC's critic loss and gradients exactly as the eager code does.

The GPU fast path had to be "CUDA graphs or torch.compile, whichever is faster and exact". A CUDA graph replays the
eager kernels, so the graph-ready step equals the eager update bit for bit (``tests/test_cuda_graphs.py``).
``torch.compile`` generates kernels of its own, fusing operations and reordering floating-point sums. This script
compiles the critic's forward pass (the 84 px SAC+AE encoder and both Q heads, batch 32) and compares its loss and
the gradients of every critic parameter with the eager ones::

    python scripts/compile_exactness.py [--device cpu|cuda] [--batch-size 32]

It prints the compile time, whether the loss is equal, and how many gradient tensors are bit-equal.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from sb3_gaara import GAARASAC
from sb3_gaara.benchmark import stacked_random_env


def loss_and_grads(critic: Any, forward: Any, obs: th.Tensor, actions: th.Tensor) -> tuple[th.Tensor, list[th.Tensor]]:
    """The sum of the two Q heads' mean squares and the gradients of the critic's parameters."""
    critic.zero_grad(set_to_none=True)
    q1, q2 = forward(obs, actions)
    loss = (q1**2).mean() + (q2**2).mean()
    loss.backward()
    return loss.detach(), [param.grad.clone() for param in critic.parameters() if param.grad is not None]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    device = th.device(args.device)
    model = GAARASAC("CnnPolicy", stacked_random_env(0), buffer_size=10, device=device, seed=0)
    assert isinstance(model.action_space, spaces.Box)
    generator = np.random.default_rng(0)
    obs = th.as_tensor(generator.integers(0, 256, (args.batch_size, 9, 84, 84)), dtype=th.float32, device=device)
    actions = th.as_tensor(
        generator.uniform(-1, 1, (args.batch_size, *model.action_space.shape)), dtype=th.float32, device=device
    )
    eager_loss, eager_grads = loss_and_grads(model.critic, model.critic.forward, obs, actions)
    started = time.perf_counter()
    compiled_loss, compiled_grads = loss_and_grads(model.critic, th.compile(model.critic.forward), obs, actions)
    compile_s = time.perf_counter() - started
    equal = sum(th.equal(a, b) for a, b in zip(eager_grads, compiled_grads, strict=True))
    largest = max(float((a - b).abs().max()) for a, b in zip(eager_grads, compiled_grads, strict=True))
    results = {
        "device": str(device),
        "torch": th.__version__,
        "compile_and_first_call_s": compile_s,
        "loss_equal": bool(th.equal(eager_loss, compiled_loss)),
        "bit_equal_gradients": equal,
        "gradients": len(eager_grads),
        "largest_gradient_difference": largest,
    }
    print(
        f"torch.compile of the critic's forward on {device} (torch {th.__version__}): compiled and ran in "
        f"{compile_s:.1f} s; loss equal: {results['loss_equal']}; gradients bit-equal: {equal} of {len(eager_grads)} "
        f"(largest difference {largest:.3g})"
    )
    return results


if __name__ == "__main__":
    main()

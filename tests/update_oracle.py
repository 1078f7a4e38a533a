"""The update oracle: what 33 updates of each variant produce from a fixed seed, recorded once and kept.

A refactor must not change the update. ``python tests/update_oracle.py --record`` runs, for each variant, a tiny
model on the fake image env for 33 updates (30 inside ``learn()``, one per agent step, then 3 in one ``train()``
call) and writes to ``tests/data/update_oracle.json``. A variant added later is recorded on its own, on a machine
of the same fingerprint, so that the others keep their record:

- the SHA-256 of every parameter and every optimizer state tensor, the comparison weight, and every
  logged ``train/`` value: equal bit for bit on the machine that recorded them;
- the machine's fingerprint: torch's version and the CPU features its kernels dispatch on.

Float results depend on the CPU's instruction set (oneDNN picks other kernels, sums round in another
order), so ``tests/test_update_oracle.py`` compares bit for bit where the fingerprint matches and, on
another machine, what every CPU computes alike: the comparison weight (Python arithmetic), the update
count, the tensors' names and shapes, and the first critic loss (before any parameter moved) within float
rounding.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import FakeImageEnv, RecordingLogger, cpu_flags, tiny_kwargs

from sb3_gaara import GAARASAC, VARIANTS

ORACLE_PATH = Path(__file__).resolve().parent / "data" / "update_oracle.json"
#: updates inside ``learn()``, then in one ``train()`` call
LEARN_UPDATES, TRAIN_UPDATES = 30, 3
#: CPU features that decide which float kernels run
_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def fingerprint() -> dict[str, Any]:
    """torch's version and the CPU features its kernels dispatch on."""
    flags = cpu_flags()
    return {
        "torch": th.__version__,
        "machine": platform.machine(),
        "cpu_capability": th.backends.cpu.get_cpu_capability(),
        "cpu_flags": sorted(flag for flag in _CPU_FLAGS if flag in flags),
    }


def run(variant: str) -> GAARASAC:
    """The oracle's run of one variant, on one torch thread."""
    threads = th.get_num_threads()
    th.set_num_threads(1)
    try:
        model = GAARASAC(
            "CnnPolicy",
            FakeImageEnv(),
            **tiny_kwargs(variant=variant, comparison_lambda_decay=0.01, comparison_lambda_min=0.75),
        )
        model.set_logger(RecordingLogger())
        model.learn(total_timesteps=model.learning_starts + LEARN_UPDATES)
        np.random.seed(11)
        th.manual_seed(11)
        model.train(gradient_steps=TRAIN_UPDATES, batch_size=model.batch_size)
    finally:
        th.set_num_threads(threads)
    return model


def _digest(tensor: th.Tensor) -> dict[str, Any]:
    data = tensor.detach().cpu().contiguous()
    return {
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest(),
    }


def summary(model: GAARASAC) -> dict[str, Any]:
    """What the oracle keeps of a run (see the module docstring)."""
    tensors = {f"policy.{name}": _digest(value) for name, value in model.policy.state_dict().items()}
    for name, module in model.auxiliary_losses.items():
        for key, value in module.state_dict().items():
            tensors[f"auxiliary_losses.{name}.{key}"] = _digest(value)
    for index, optimizer in enumerate(model.optimizers()):
        for param_index, state in optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"optimizer{index}.{param_index}.{key}"] = _digest(value)
    logged = {
        key: [float(value) for value in values]
        for key, values in sorted(model.logger.history.items())
        if key.startswith("train/")
    }
    return {
        "n_updates": model._n_updates,
        "comparison_lambda": model.comparison_lambda,
        "tensors": tensors,
        "logged": logged,
    }


def record(path: Path = ORACLE_PATH) -> None:
    data = {"fingerprint": fingerprint(), "variants": {variant: summary(run(variant)) for variant in VARIANTS}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"recorded {path} on {data['fingerprint']}")


def load(path: Path = ORACLE_PATH) -> dict[str, Any]:
    return json.loads(path.read_text())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help=f"(re)write {ORACLE_PATH}")
    if parser.parse_args().record:
        record()
    else:
        parser.print_help()

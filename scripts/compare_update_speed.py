"""Update time of GAARASAC at another commit against this checkout, measured alternately in one process.

A refactor must not slow the update, and a CPU's speed drifts with its load. So the two versions are
measured in turn, one ``model.train(gradient_steps=1, batch_size=128)`` each, in the same process, on
the benchmark's random-image env. A change in load then weighs on both alike. The other commit's
``sb3_gaara`` is extracted with ``git archive`` and imported under the name ``sb3_gaara_before``.

    python scripts/compare_update_speed.py REV [--steps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from types import ModuleType


def extract(rev: str, folder: Path) -> None:
    """``sb3_gaara`` as of ``rev``, renamed ``sb3_gaara_before`` (imports included), under ``folder``."""
    archive = subprocess.run(["git", "archive", rev, "sb3_gaara"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    (folder / "sb3_gaara").rename(folder / "sb3_gaara_before")
    for path in (folder / "sb3_gaara_before").rglob("*.py"):
        path.write_text(re.sub(r"\bsb3_gaara\b", "sb3_gaara_before", path.read_text()))


def update_times(modules: dict[str, ModuleType], steps: int, warmup: int, filled: int = 300) -> dict[str, list[float]]:
    from sb3_gaara.benchmark import stacked_random_env

    models = {}
    for name, module in modules.items():
        model = module.GAARASAC(
            "CnnPolicy", stacked_random_env(0), buffer_size=filled + 1, learning_starts=filled, seed=0, device="cpu"
        )
        model.learn(total_timesteps=filled)
        models[name] = model
    times: dict[str, list[float]] = {name: [] for name in models}
    for step in range(warmup + steps):
        for name, model in models.items():
            start = time.perf_counter()
            model.train(gradient_steps=1, batch_size=model.batch_size)
            if step >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit to compare with, e.g. HEAD~3 or a tag")
    parser.add_argument("--steps", type=int, default=20, help="timed updates of each version (20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed updates first (3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        extract(args.rev, Path(folder))
        sys.path.insert(0, folder)
        import sb3_gaara_before  # type: ignore[import-not-found]
        import torch as th

        import sb3_gaara

        times = update_times({"before": sb3_gaara_before, "after": sb3_gaara}, args.steps, args.warmup)
    result = {name: {"median_s": statistics.median(v), "min_s": min(v)} for name, v in times.items()}
    ratio = result["after"]["median_s"] / result["before"]["median_s"]
    print(json.dumps({"rev": args.rev, **result, "ratio_after_over_before": ratio, "threads": th.get_num_threads()}, indent=1))


if __name__ == "__main__":
    main()

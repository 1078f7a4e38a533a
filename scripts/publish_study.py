"""Copy a study's small records into a folder of the repository, so that its results survive the machine.

``python scripts/publish_study.py runs/cpu-dmc docs/results/cpu-dmc`` copies, for every run, what the reports and a
later resume need and nothing heavy: ``config.json`` (the run's identity), ``curve.csv``, ``done.json`` (finished),
``sessions.jsonl``, the random baselines and the study's ``study.json``; never checkpoints, models or logs. A study
started later with ``--out`` on the destination skips the finished runs; ``--report-only`` on it rewrites the reports
(``make results-cpu-dmc``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

#: the files kept per run directory (``runs/<task>/<agent>/seed_<k>/``) and per random baseline
RUN_FILES = ("config.json", "curve.csv", "done.json", "sessions.jsonl")
BASELINE_FILES = ("baseline.json",)


def publish(source: Path, destination: Path) -> list[Path]:
    """Copy the records of ``source`` into ``destination``; return the files written."""
    written = []
    study = source / "study.json"
    pairs = [(study, destination / "study.json")] if study.is_file() else []
    for run_dir in sorted(source.glob("runs/*/*/seed_*")):
        pairs += [(run_dir / name, destination / run_dir.relative_to(source) / name) for name in RUN_FILES]
    for baseline in sorted(source.glob("runs/*/random")):
        pairs += [(baseline / name, destination / baseline.relative_to(source) / name) for name in BASELINE_FILES]
    for src, dst in pairs:
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
            written.append(dst)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the study's --out folder")
    parser.add_argument("destination", type=Path, help="the folder in the repository")
    args = parser.parse_args()
    if not (args.source / "runs").is_dir():
        raise SystemExit(f"{args.source} holds no runs/ folder: give the --out folder of a study.")
    written = publish(args.source, args.destination)
    print(f"copied {len(written)} files into {args.destination}")


if __name__ == "__main__":
    main()

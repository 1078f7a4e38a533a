"""A campaign's ledger: the results of a :class:`~sb3_gaara.study.catalogue.CampaignSpec`, kept in the repository
(``docs/results/<campaign>/``) and extended by every GPU job, one cell (task, agent, seed) at a time.

A GPU job keeps nothing: its machine goes back with the run directories, and only a few small files come home. So a
job writes what it learnt as one bundle (a ``.tar.gz`` of the ledger files it added), and :func:`merge_bundle` puts
that bundle into the repository's ledger, from which :func:`write_campaign_report` regenerates the tables and plots.

The ledger's files::

    campaign.md                               the campaign's definition (written from its CampaignSpec)
    cells/<task>/<agent>/seed_<k>.csv         a finished cell's curve (a run's curve.csv)
    cells/<task>/<agent>/seed_<k>.json        its provenance, "status": "finished"
    cells/<task>/<agent>/seed_<k>.partial.*   a cell a job left unfinished, "status": "partial"
    jobs/<job>.json                           one job: device, runs at once, env steps/s of each run and of all
    results.md, <task>.png, curves.csv        regenerated from the finished cells only

A partial cell is named apart *and* says so in its provenance, so that nothing reading ``seed_<k>.json`` can take it
for a finished one; the tables, plots and ``curves.csv`` leave partial cells out and list them on their own. A
finished cell is never replaced: a bundle that brings another finished run of it is refused (:class:`LedgerConflict`).

``python -m sb3_gaara.study.ledger merge BUNDLE`` merges a bundle; ``python -m sb3_gaara.study.ledger report CAMPAIGN``
rewrites the reports.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from sb3_gaara.common.durability import write_text_atomic
from sb3_gaara.study.catalogue import AGENTS, CAMPAIGNS, PUBLISHED_AGENTS, PUBLISHED_SCORES, CampaignSpec, resolve_task
from sb3_gaara.study.report import (
    aggregate_curves,
    default_reference_path,
    format_count,
    format_score,
    format_steps,
    load_reference,
    milestone_scores,
    plot_task,
    read_curve_csv,
    write_curve_csv,
)

FINISHED = "finished"
PARTIAL = "partial"
#: The repository's ledgers: ``docs/results/<campaign>``.
LEDGER_ROOT = Path(__file__).resolve().parents[2] / "docs" / "results"
#: A bundle's list of what it holds and for which campaign.
MANIFEST = "bundle.json"

_CELL_FILE = re.compile(
    r"^cells/(?P<task>[a-z0-9_]+)/(?P<agent>[a-z0-9_]+)/seed_(?P<seed>\d+)(?P<partial>\.partial)?\.(?P<ext>json|csv)$"
)
_JOB_FILE = re.compile(r"^jobs/(?P<job>[A-Za-z0-9_.-]+)\.json$")
_MISSING = "\u2013"

Cell = tuple[str, str, int]


class LedgerError(ValueError):
    """A ledger or bundle that is not as :mod:`~sb3_gaara.study.ledger` writes them."""


class LedgerConflict(LedgerError):
    """A bundle that would change a finished cell (or a job record) already in the ledger."""


def default_ledger(campaign: str) -> Path:
    """``docs/results/<campaign>`` of this repository."""
    return LEDGER_ROOT / campaign


@dataclass(frozen=True)
class CellRecord:
    """One cell of a campaign as one job left it: its curve (the run's ``curve.csv`` text) and its provenance."""

    task: str
    agent: str
    seed: int
    provenance: Mapping[str, Any]
    curve: str

    @property
    def key(self) -> Cell:
        return (self.task, self.agent, self.seed)

    @property
    def status(self) -> str:
        return str(self.provenance["status"])

    @property
    def env_steps(self) -> int:
        return int(self.provenance["env_steps"])

    def paths(self) -> tuple[str, str]:
        """The provenance's and the curve's path in the ledger."""
        stem = f"cells/{self.task}/{self.agent}/seed_{self.seed}" + ("" if self.status == FINISHED else ".partial")
        return stem + ".json", stem + ".csv"

    def files(self) -> dict[str, str]:
        json_path, csv_path = self.paths()
        return {json_path: _dump_json(self.provenance), csv_path: self.curve}

    @cached_property
    def rows(self) -> list[dict[str, Any]]:
        """The curve's rows (:func:`~sb3_gaara.study.report.read_curve_csv`'s columns)."""
        return _curve_rows(self.curve)


def _dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _curve_rows(text: str) -> list[dict[str, Any]]:
    """The rows of a curve's text, as :func:`~sb3_gaara.study.report.read_curve_csv` reads a file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "curve.csv"
        path.write_text(text)
        return read_curve_csv(path)


def _parse_files(files: Mapping[str, str], where: str) -> tuple[list[CellRecord], dict[str, dict[str, Any]]]:
    """The cells and job records of ledger files (relative path -> text); any other file, a provenance without its
    curve or one whose status disagrees with its name is an error naming ``where``."""
    pairs: dict[tuple[str, str, int, bool], dict[str, str]] = defaultdict(dict)
    jobs: dict[str, dict[str, Any]] = {}
    for path, text in files.items():
        if match := _CELL_FILE.match(path):
            key = (match["task"], match["agent"], int(match["seed"]), match["partial"] is not None)
            pairs[key][match["ext"]] = text
        elif match := _JOB_FILE.match(path):
            jobs[match["job"]] = json.loads(text)
        else:
            raise LedgerError(
                f"{where}: {path} is not a ledger file (cells/<task>/<agent>/seed_<k>[.partial].json|csv, jobs/<job>.json)."
            )
    cells = []
    for (task, agent, seed, partial), pair in sorted(pairs.items()):
        name = f"cells/{task}/{agent}/seed_{seed}{'.partial' if partial else ''}"
        if set(pair) != {"json", "csv"}:
            raise LedgerError(f"{where}: {name} has only its .{next(iter(pair))}; a cell is a .json and a .csv together.")
        provenance = json.loads(pair["json"])
        expected = PARTIAL if partial else FINISHED
        if provenance.get("status") != expected:
            raise LedgerError(
                f"{where}: {name}.json says status {provenance.get('status')!r} but its name says {expected!r}; "
                "a partial cell is named seed_<k>.partial.* so that it is never read as a finished one."
            )
        if (provenance.get("task"), provenance.get("agent"), provenance.get("seed")) != (task, agent, seed):
            raise LedgerError(
                f"{where}: {name}.json is the provenance of another cell ({provenance.get('task')}, "
                f"{provenance.get('agent')}, seed {provenance.get('seed')})."
            )
        cells.append(CellRecord(task, agent, seed, provenance, pair["csv"]))
    return cells, jobs


@dataclass
class Ledger:
    """The ledger in ``root``: its finished and partial cells and its job records, as read when made."""

    root: Path
    finished: dict[Cell, CellRecord] = field(default_factory=dict)
    partial: dict[Cell, CellRecord] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def read(cls, root: str | Path) -> Ledger:
        root = Path(root)
        files = {
            path.relative_to(root).as_posix(): path.read_text()
            for pattern in ("cells/*/*/seed_*", "jobs/*.json")
            for path in sorted(root.glob(pattern))
            if path.is_file()
        }
        cells, jobs = _parse_files(files, str(root))
        ledger = cls(root, jobs=jobs)
        for cell in cells:
            (ledger.finished if cell.status == FINISHED else ledger.partial)[cell.key] = cell
        return ledger


# ----------------------------------------------------------------------------------------------------
# Bundles: what a job adds, as one file.


def write_bundle(
    path: str | Path, campaign: str, job: str, cells: Sequence[CellRecord], job_record: Mapping[str, Any]
) -> Path:
    """Write the bundle of one job: its cells and its job record, with a :data:`MANIFEST` naming the campaign."""
    files = {f"jobs/{job}.json": _dump_json(job_record)}
    for cell in cells:
        files.update(cell.files())
    manifest = {"campaign": campaign, "job": job, "files": sorted(files)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, text in [(MANIFEST, _dump_json(manifest)), *sorted(files.items())]:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return path


def read_bundle(path: str | Path) -> tuple[dict[str, Any], list[CellRecord], dict[str, dict[str, Any]]]:
    """The manifest, cells and job records of a bundle; only regular files listed in its manifest are read."""
    path = Path(path)
    if not path.is_file():
        raise LedgerError(f"{path}: no such bundle (the .tar.gz a campaign job wrote into its output folder).")
    with tarfile.open(path, "r:gz") as archive:
        members = {member.name: member for member in archive.getmembers()}
        if MANIFEST not in members:
            raise LedgerError(f"{path} holds no {MANIFEST}: it is not a ledger bundle.")

        def text(name: str) -> str:
            member = members[name]
            if not member.isfile():
                raise LedgerError(f"{path}: {name} is not a regular file.")
            file = archive.extractfile(member)
            assert file is not None
            return file.read().decode()

        manifest = json.loads(text(MANIFEST))
        listed = set(manifest["files"])
        if listed != set(members) - {MANIFEST}:
            raise LedgerError(f"{path}: its files and its manifest differ ({sorted(listed ^ (set(members) - {MANIFEST}))}).")
        cells, jobs = _parse_files({name: text(name) for name in sorted(listed)}, str(path))
    return manifest, cells, jobs


@dataclass
class MergeSummary:
    """What :func:`merge_bundle` did, cell by cell."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.replaced)} replaced (partial), {len(self.unchanged)} unchanged, "
            f"{len(self.kept)} kept (the ledger's is finished or went further)"
        )


def _cell_name(cell: CellRecord) -> str:
    return f"{cell.task}/{cell.agent}/seed_{cell.seed} ({cell.status}, {format_steps(cell.env_steps)} env steps)"


def _differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(ours) | set(theirs))
    return [
        f"{key}: {ours.get(key)!r} in the ledger, {theirs.get(key)!r} in the bundle"
        for key in keys
        if ours.get(key) != theirs.get(key)
    ]


def merge_records(
    ledger_root: str | Path, cells: Sequence[CellRecord], jobs: Mapping[str, Mapping[str, Any]], source: str
) -> MergeSummary:
    """Merge cells and job records into the ledger in ``ledger_root``: all or nothing.

    A finished cell is added (its partial, if any, goes) or, if the ledger has it already, must be the same, file for
    file: another finished run of one cell is a :class:`LedgerConflict`, since averaging both would count one seed
    twice. A partial cell never replaces a finished one, and replaces a partial one only if it went further.
    """
    root = Path(ledger_root)
    ledger = Ledger.read(root)
    summary = MergeSummary()
    writes: dict[str, str] = {}
    removes: list[Path] = []
    for job, record in sorted(jobs.items()):
        if job in ledger.jobs and ledger.jobs[job] != record:
            raise LedgerConflict(
                f"{source}: job {job} is in the ledger with another record "
                f"({'; '.join(_differences(ledger.jobs[job], record))}). A job's record "
                f"never changes: remove {root / 'jobs' / (job + '.json')} only if it is wrong."
            )
        if job not in ledger.jobs:
            writes[f"jobs/{job}.json"] = _dump_json(record)
    for cell in cells:
        finished = ledger.finished.get(cell.key)
        partial = ledger.partial.get(cell.key)
        if cell.status == FINISHED:
            if finished is not None:
                if finished.provenance == cell.provenance and finished.curve == cell.curve:
                    summary.unchanged.append(_cell_name(cell))
                    continue
                differences = _differences(finished.provenance, cell.provenance) or ["their curves"]
                raise LedgerConflict(
                    f"{source}: {cell.task}/{cell.agent}/seed_{cell.seed} is finished in the ledger already, from job "
                    f"{finished.provenance.get('job')}, and the bundle brings another finished run of it, from job "
                    f"{cell.provenance.get('job')}. They differ in " + "; ".join(differences) + ". Two runs of one "
                    "seed would count as two seeds. Nothing was merged. Keep one: delete the ledger's "
                    f"{root / finished.paths()[0]} and its .csv and merge again to take the bundle's, or leave the "
                    "ledger as it is."
                )
            if partial is not None:
                removes += [root / path for path in partial.paths()]
                summary.replaced.append(_cell_name(cell))
            else:
                summary.added.append(_cell_name(cell))
            writes.update(cell.files())
        elif finished is not None:
            summary.kept.append(_cell_name(cell))
        elif partial is None:
            writes.update(cell.files())
            summary.added.append(_cell_name(cell))
        elif partial.provenance == cell.provenance and partial.curve == cell.curve:
            summary.unchanged.append(_cell_name(cell))
        elif cell.env_steps > partial.env_steps:
            writes.update(cell.files())
            summary.replaced.append(_cell_name(cell))
        else:
            summary.kept.append(_cell_name(cell))
    for path in removes:
        path.unlink(missing_ok=True)
    for relative, text in writes.items():
        destination = root / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(destination, text)
    return summary


def merge_bundle(bundle: str | Path, ledger_root: str | Path | None = None) -> tuple[str, MergeSummary]:
    """Merge a job's bundle into its campaign's ledger (``ledger_root``, default ``docs/results/<campaign>``);
    the campaign's name and the summary. Refused as a whole on any conflict (:func:`merge_records`)."""
    manifest, cells, jobs = read_bundle(bundle)
    campaign = str(manifest["campaign"])
    for cell in cells:
        if cell.provenance.get("campaign") != campaign:
            raise LedgerError(
                f"{bundle}: {_cell_name(cell)} belongs to campaign {cell.provenance.get('campaign')!r}, "
                f"the bundle to {campaign!r}."
            )
    root = Path(ledger_root) if ledger_root is not None else default_ledger(campaign)
    return campaign, merge_records(root, cells, jobs, str(bundle))


# ----------------------------------------------------------------------------------------------------
# The reports of a ledger.


def _label(agent: str) -> str:
    return AGENTS[agent].label if agent in AGENTS else agent


def mean_and_standard_error(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean over seeds and its standard error, ``std(ddof=1) / sqrt(n)`` (``None`` for one seed: no spread to tell)."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None
    return mean, float(np.std(values, ddof=1) / np.sqrt(len(values)))


def _format_mean_se(values: Sequence[float]) -> str:
    mean, se = mean_and_standard_error(values)
    if se is None:
        text = f"{mean:.0f}" if abs(mean) >= 100 else f"{mean:.1f}"
    else:
        text = format_score(mean, se)
    return f"{text} (n={len(values)})"


def campaign_markdown(spec: CampaignSpec) -> str:
    """``campaign.md``: what the campaign runs, in which order, and where each agent's and task's settings live."""
    cells = spec.cells()
    agents = list(dict.fromkeys(agent for _, agent, _ in cells))
    tasks = list(dict.fromkeys(task for task, _, _ in cells))
    lines = [
        f"# Campaign `{spec.name}`",
        "",
        spec.description,
        "",
        f"- {format_count(len(cells), 'cell')}: {format_count(len(tasks), 'task')} x {format_count(len(agents), 'agent')} "
        f"x seeds {', '.join(map(str, spec.seeds))} (`--seeds` adds more, run after these)",
        f"- {format_steps(spec.env_steps)} environment steps per cell (after action repeat); evaluated every "
        f"{format_steps(spec.eval_every)} over {format_count(spec.eval_episodes, 'episode')} of the deterministic policy",
        f"- table at {', '.join(format_steps(m) for m in spec.milestones)} environment steps: mean ± standard error over "
        "the finished seeds",
        f"- run-time settings of its jobs (speed only, not part of a cell's identity): `{dict(spec.runtime)}`",
        "- definition: `sb3_gaara.study.catalogue.CAMPAIGNS[" + repr(spec.name) + "]`",
        "",
        "Cells run in this order, block after block, seed after seed within a block: "
        + "; ".join(f"{' '.join(block_tasks)} x {' '.join(block_agents)}" for block_tasks, block_agents in spec.blocks)
        + ".",
        "",
        "## Agents",
        "",
        "Each agent runs with its paper's settings as the study defines them: its `AgentSpec` in "
        "`sb3_gaara.study.catalogue.AGENTS` and, for its algorithm, the task's settings (`RunConfig.run_task`). Every "
        "cell's `.json` keeps the resulting settings under `settings` (the run's `config.json`).",
        "",
        "| key | label | algorithm | source |",
        "|---|---|---|---|",
    ]
    for agent in agents:
        spec_ = AGENTS[agent]
        lines.append(f"| `{agent}` | {spec_.label} | `{spec_.algorithm}` | {spec_.description} |")
    lines += ["", "## Tasks", "", "| task | env id |", "|---|---|"]
    for task in tasks:
        lines.append(f"| {task} | `{resolve_task(task).env_id}` |")
    lines.append("")
    return "\n".join(lines)


def results_markdown(spec: CampaignSpec, ledger: Ledger, seeds: Sequence[int] | None = None) -> str:
    """``results.md`` of a ledger: the finished cells' scores (mean ± standard error) beside the published ones, the
    cells still to run, the partial cells apart, and each job's throughput."""
    planned = spec.cells(None if seeds is None else list(seeds))
    agents = list(dict.fromkeys(agent for _, agent, _ in planned))
    tasks = list(dict.fromkeys(task for task, _, _ in planned))
    rows = [row for cell in ledger.finished.values() for row in cell.rows]
    scores = milestone_scores(rows, list(spec.milestones), spec.eval_every)
    finished = [cell for cell in planned if cell in ledger.finished]
    lines = [
        f"# Results of campaign `{spec.name}`",
        "",
        f"{len(finished)} of {format_count(len(planned), 'cell')} finished ([campaign.md](campaign.md) says what they "
        "are). Return of the deterministic policy after the given number of *environment* steps, mean of "
        f"{spec.eval_episodes} evaluation episodes; ours: mean ± standard error over the finished seeds (n). "
        "Published: DrQ paper, Table 1, mean ± std over 10 seeds. Partial cells are not in the table.",
        "",
    ]
    for milestone in spec.milestones:
        published = PUBLISHED_SCORES.get(milestone, {})
        columns = [f"{_label(agent)} (ours)" for agent in agents] + [f"{agent} (published)" for agent in PUBLISHED_AGENTS]
        lines.append(f"| {format_steps(milestone)} env steps | " + " | ".join(columns) + " |")
        lines.append("|---" * (len(columns) + 1) + "|")
        for task in tasks:
            cells = []
            for agent in agents:
                values = scores[milestone].get(task, {}).get(_label(agent), [])
                cells.append(_format_mean_se(values) if values else _MISSING)
            task_scores = published.get(task, {})
            cells += [format_score(*task_scores[a]) if a in task_scores else _MISSING for a in PUBLISHED_AGENTS]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        lines.append("")
    partial = [ledger.partial[cell] for cell in planned if cell in ledger.partial and cell not in ledger.finished]
    lines += ["## Partial cells", ""]
    if partial:
        lines += [
            "Cells a job left unfinished (its time ran out). They are re-run from the start by a later job (no "
            "checkpoint comes back from a GPU job) and are in no table, plot or `curves.csv`.",
            "",
            "| task | agent | seed | env steps reached | last return | job | env steps/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for cell in partial:
            last = cell.rows[-1]["episode_reward"] if cell.rows else None
            lines.append(
                f"| {cell.task} | {_label(cell.agent)} | {cell.seed} | {format_steps(cell.env_steps)} | "
                f"{_MISSING if last is None else f'{last:.1f}'} | {cell.provenance.get('job')} | "
                f"{float(cell.provenance.get('env_steps_per_s', 0.0)):.0f} |"
            )
    else:
        lines.append("None.")
    lines += ["", "## Jobs", ""]
    if ledger.jobs:
        lines += [
            "Environment steps per second of each job's runs (training and evaluations, over each run's wall time) "
            "and of all its runs together (their steps over the time the job ran them).",
            "",
            "| job | commit | device | runs at once | threads per run | all runs, env steps/s | each run, env steps/s |",
            "|---|---|---|---|---|---|---|",
        ]
        for job, record in sorted(ledger.jobs.items()):
            each = ", ".join(
                f"{run['task']}/{_label(run['agent'])}/{run['seed']} {run['status']} {float(run['env_steps_per_s']):.0f}"
                for run in record.get("runs", [])
            )
            lines.append(
                f"| {job} | {record.get('commit')} | {record.get('device')}{' + MPS' if record.get('mps') else ''} | "
                f"{record.get('runs_at_once')} | {record.get('threads_per_run')} | "
                f"{float(record.get('aggregate_env_steps_per_s', 0.0)):.0f} | {each or _MISSING} |"
            )
    else:
        lines.append("None yet.")
    remaining = [cell for cell in planned if cell not in ledger.finished]
    if remaining:
        task, agent, seed = remaining[0]
        lines += ["", f"Next cell: {task}/{agent}/seed_{seed} ({len(remaining)} to run)."]
    lines.append("")
    return "\n".join(lines)


def write_campaign_report(
    spec: CampaignSpec,
    ledger_root: str | Path | None = None,
    reference_path: str | Path | None = None,
    seeds: Sequence[int] | None = None,
) -> dict[str, Path]:
    """Rewrite ``campaign.md``, ``results.md``, ``curves.csv`` (finished cells only) and one PNG per task that has a
    finished cell, from the ledger alone."""
    root = Path(ledger_root) if ledger_root is not None else default_ledger(spec.name)
    root.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.read(root)
    rows = sorted(
        (row for cell in ledger.finished.values() for row in cell.rows),
        key=lambda row: (row["env"], row["agent"], row["seed"], row["step"]),
    )
    written = {"campaign": root / "campaign.md", "results": root / "results.md", "curves": root / "curves.csv"}
    write_text_atomic(written["campaign"], campaign_markdown(spec))
    write_text_atomic(written["results"], results_markdown(spec, ledger, seeds))
    write_curve_csv(written["curves"], rows)
    ours = aggregate_curves(rows)
    reference = aggregate_curves(load_reference(reference_path))
    labels = list(dict.fromkeys(_label(agent) for _, agent, _ in spec.cells(None if seeds is None else list(seeds))))
    for task in sorted({row["env"] for row in rows}):
        curves = {label: ours[(task, label)] for label in labels if (task, label) in ours}
        task_reference = {agent: points for (env, agent), points in reference.items() if env == task}
        published = {m: scores[task] for m, scores in PUBLISHED_SCORES.items() if task in scores}
        path = root / f"{task}.png"
        plot_task(task, curves, path, task_reference, published, None, spec.env_steps, spec.eval_episodes)
        written[task] = path
    return written


# ----------------------------------------------------------------------------------------------------
# python -m sb3_gaara.study.ledger


def main(argv: Sequence[str] | None = None) -> int:
    """``merge BUNDLE... [--ledger DIR] [--no-report]`` or ``report CAMPAIGN [--ledger DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m sb3_gaara.study.ledger", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser("merge", help="merge the bundles of campaign jobs into the ledger, then rewrite its reports")
    merge.add_argument("bundles", nargs="+", metavar="BUNDLE")
    merge.add_argument("--ledger", help="the ledger folder (default: docs/results/<the bundle's campaign>)")
    merge.add_argument("--no-report", action="store_true", help="do not rewrite results.md, curves.csv and the PNGs")
    merge.add_argument("--reference", help="reference curves CSV for the PNGs (default: found nearby)")
    report = commands.add_parser("report", help="rewrite a campaign's results.md, curves.csv, PNGs and campaign.md")
    report.add_argument("campaign", choices=sorted(CAMPAIGNS))
    report.add_argument("--ledger", help="the ledger folder (default: docs/results/<campaign>)")
    report.add_argument("--reference", help="reference curves CSV for the PNGs (default: found nearby)")
    args = parser.parse_args(argv)
    reference = args.reference or default_reference_path()
    try:
        if args.command == "report":
            written = write_campaign_report(CAMPAIGNS[args.campaign], args.ledger, reference)
            print("[ledger] wrote " + ", ".join(str(path) for path in written.values()))
            return 0
        campaigns = set()
        for bundle in args.bundles:
            campaign, summary = merge_bundle(bundle, args.ledger)
            campaigns.add(campaign)
            print(f"[ledger] {bundle} -> {args.ledger or default_ledger(campaign)}: {summary.line()}")
    except LedgerError as error:
        raise SystemExit(str(error)) from None
    if not args.no_report:
        for campaign in sorted(campaigns):
            if campaign in CAMPAIGNS:
                written = write_campaign_report(CAMPAIGNS[campaign], args.ledger, reference)
                print("[ledger] wrote " + ", ".join(str(path) for path in written.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

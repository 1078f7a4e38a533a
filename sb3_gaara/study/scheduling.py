"""Running the study's jobs (training runs and random baselines), in this process or in worker processes,
stopping them on SIGTERM / Ctrl-C so that they checkpoint first, and logging the study's progress.

A job is ``("train", RunConfig)`` or ``("random", (TaskSpec, episodes))``. A worker process runs one job
and tells its outcome by its exit code (:data:`EXIT_CODES`; anything else is a failure). On a Ray cluster the
jobs are Ray tasks instead (:mod:`sb3_gaara.study.ray_scheduling`).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sb3_gaara.study.catalogue import RANDOM_AGENT
from sb3_gaara.study.report import format_count
from sb3_gaara.study.run import PROGRESS_FILE, SESSIONS_FILE, run_random_baseline, run_training

#: Exit code of a worker process by the status of its job.
EXIT_CODES = {"done": 0, "stopped": 3, "skipped": 4, "busy": 5}

#: Status of a job that a stop request kept from starting
NOT_STARTED = "not started"
#: A run's ``progress.json`` older than this (seconds) does not count towards the study's speed
PROGRESS_FRESH_S = 120.0

Job = tuple[str, Any]


class StopRequest:
    """A request that the runs of a process checkpoint and stop at their next agent step.

    Set by the process's SIGTERM / SIGINT handler (:meth:`handle_signal`), read by the runs it is given to
    (:func:`~sb3_gaara.study.run_training`'s ``stop``); no job starts once it is set.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def handle_signal(self, signum: int, frame: Any) -> None:
        """A signal handler that sets the request."""
        self.set()


@contextlib.contextmanager
def _on_stop_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for SIGTERM and SIGINT while inside; the previous handlers again afterwards."""
    previous = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def run_job(job: Job, out: str, stop: StopRequest | None = None) -> str:
    """Run one job; its status (``"done"``, ``"skipped"``, ``"stopped"``, ``"busy"``: trained by another process)."""
    kind, payload = job
    if kind == RANDOM_AGENT:
        task, n_episodes = payload
        return run_random_baseline(task, n_episodes, out)
    return run_training(payload, stop)


def _worker(job: Job, out: str) -> None:
    """A worker process's main: SIGTERM and SIGINT request a stop; the exit code tells how the job ended."""
    stop = StopRequest()
    signal.signal(signal.SIGTERM, stop.handle_signal)
    signal.signal(signal.SIGINT, stop.handle_signal)
    status = run_job(job, out, stop)
    sys.exit(EXIT_CODES[status])


def log_progress(message: str) -> None:
    """Print a progress line at once: it must show up in redirected logs while the study runs."""
    print(message, flush=True)


def job_name(job: Job) -> str:
    """``cheetah_run/gaara/seed_0``, ``cheetah_run/random``."""
    kind, payload = job
    if kind == RANDOM_AGENT:
        return f"{payload[0].name}/{RANDOM_AGENT}"
    return f"{payload.task.name}/{payload.agent}/seed_{payload.seed}"


class StudyProgress:
    """The study's outcomes so far, and which runs are running and how fast, as one log line.

    The schedulers count outcomes (:meth:`record`); "running" and the speed come from the run directories, the same
    way for every scheduler: a run is running if it is not finished and started a session (``sessions.jsonl``) since
    ``since``, and its speed is the ``env_steps_per_s`` of its ``progress.json``.

    :param jobs: the study's jobs
    :param counts: outcomes by status, filled by :meth:`record`
    :param since: ``time.time()`` when the scheduler started
    """

    def __init__(
        self, jobs: Sequence[Job], counts: dict[str, int], since: float, log: Callable[[str], None] = log_progress
    ) -> None:
        self.jobs = list(jobs)
        self.counts = counts
        self.since = since
        self.log = log
        #: run directories of the runs that returned (done, stopped, failed) in this command
        self.returned: set[str] = set()

    def record(self, job: Job, status: str) -> None:
        """Count ``job``'s outcome."""
        self.counts[status] += 1
        if job[0] != RANDOM_AGENT:
            self.returned.add(str(job[1].run_dir))

    def running(self) -> list[Path]:
        """Run directories of the training runs that started a session since :attr:`since` and have not returned."""
        running = []
        for kind, payload in self.jobs:
            if kind == RANDOM_AGENT or str(payload.run_dir) in self.returned:
                continue
            run_dir = Path(payload.run_dir)
            with contextlib.suppress(OSError):
                if (run_dir / SESSIONS_FILE).stat().st_mtime >= self.since:
                    running.append(run_dir)
        return running

    def line(self) -> str:
        """``[study] progress after 120 s: 3/12 jobs finished (3 done, ...), 2 running, 7 waiting; 1 234 env steps/s``."""
        counts = dict(self.counts)
        finished = sum(counts.values())
        done = counts.get("done", 0) + counts.get("skipped", 0)
        failed = sum(n for status, n in counts.items() if status.startswith("failed"))
        stopped = counts.get("stopped", 0) + counts.get(NOT_STARTED, 0)
        busy = f", {counts['busy']} trained by another process" if counts.get("busy") else ""
        running = self.running()
        speed = 0.0
        now = time.time()
        for run_dir in running:
            with contextlib.suppress(OSError, ValueError, KeyError):
                progress = json.loads((run_dir / PROGRESS_FILE).read_text())
                if now - progress["updated_at"] <= PROGRESS_FRESH_S:
                    speed += float(progress["env_steps_per_s"])
        n_running = len(running)
        return (
            f"[study] progress after {now - self.since:.0f} s: {finished}/{format_count(len(self.jobs), 'job')} finished "
            f"({done} done, {failed} failed, {stopped} stopped or not started{busy}), {n_running} running, "
            f"{len(self.jobs) - finished - n_running} waiting; {speed:.0f} env steps/s over the running runs"
        )

    @contextlib.contextmanager
    def every(self, seconds: float) -> Iterator[None]:
        """Log :meth:`line` every ``seconds`` (0: never) while inside, from a background thread."""
        if seconds <= 0:
            yield
            return
        done = threading.Event()

        def report() -> None:
            while not done.wait(seconds):
                self.log(self.line())

        thread = threading.Thread(target=report, name="study-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def run_jobs(
    jobs: Sequence[Job],
    out: str,
    workers: int,
    log: Callable[[str], None] = log_progress,
    stop: StopRequest | None = None,
    progress_every: float = 0.0,
) -> dict[str, int]:
    """Run the jobs, ``workers`` processes at a time (in this process if ``workers <= 1``); count outcomes.

    SIGTERM and SIGINT set ``stop`` (a new :class:`StopRequest` if not given) and are forwarded to the
    worker processes: the runs under way checkpoint and stop, and the jobs not started count as
    ``"not started"``. Every ``progress_every`` seconds (0: never) a :class:`StudyProgress` line is logged.
    """
    stop = stop if stop is not None else StopRequest()
    counts: dict[str, int] = defaultdict(int)
    progress = StudyProgress(jobs, counts, since=time.time(), log=log)
    with progress.every(progress_every):
        if workers <= 1:
            _run_here(jobs, out, log, stop, progress)
        else:
            _run_in_workers(jobs, out, workers, log, stop, progress)
    if progress_every > 0:
        log(progress.line())
    return dict(counts)


def _run_here(jobs: Sequence[Job], out: str, log: Callable[[str], None], stop: StopRequest, progress: StudyProgress) -> None:
    with _on_stop_signals(stop.handle_signal):
        for job in jobs:
            if stop.is_set():
                progress.record(job, NOT_STARTED)
                continue
            start = time.time()
            status = run_job(job, out, stop)
            progress.record(job, status)
            log(f"[study] {job_name(job)}: {status} ({time.time() - start:.0f} s)")


def _run_in_workers(
    jobs: Sequence[Job], out: str, workers: int, log: Callable[[str], None], stop: StopRequest, progress: StudyProgress
) -> None:
    # Spawned (not forked) workers: a fork of a process that has started torch's thread pools can hang.
    context = multiprocessing.get_context("spawn")
    pending = list(jobs)
    running: dict[Any, tuple[Job, float]] = {}
    statuses = {code: status for status, code in EXIT_CODES.items()}

    def forward_stop(signum: int, frame: Any) -> None:
        stop.set()
        for process in running:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    with _on_stop_signals(forward_stop):
        while pending or running:
            while pending and len(running) < workers and not stop.is_set():
                job = pending.pop(0)
                process = context.Process(target=_worker, args=(job, out))
                process.start()
                running[process] = (job, time.time())
            for process in list(running):
                if process.is_alive():
                    continue
                job, start = running.pop(process)
                status = statuses.get(process.exitcode, f"failed (exit code {process.exitcode})")
                progress.record(job, status)
                log(f"[study] {job_name(job)}: {status} ({time.time() - start:.0f} s)")
            if stop.is_set() and not running and pending:
                for job in pending:
                    progress.record(job, NOT_STARTED)
                pending.clear()
            time.sleep(0.2)

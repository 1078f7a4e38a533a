"""Running the study's jobs (training runs and random baselines), in this process or in worker processes,
and stopping them on SIGTERM / Ctrl-C so that they checkpoint first.

A job is ``("train", RunConfig)`` or ``("random", (TaskSpec, episodes))``. A worker process runs one job
and tells its outcome by its exit code (:data:`EXIT_CODES`; anything else is a failure).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sb3_gaara.study.catalogue import RANDOM_AGENT
from sb3_gaara.study.run import run_random_baseline, run_training

#: Exit code of a worker process by the status of its job.
EXIT_CODES = {"done": 0, "stopped": 3, "skipped": 4}

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
    """Run one job; its status (``"done"``, ``"skipped"``, ``"stopped"``)."""
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


def run_jobs(
    jobs: Sequence[Job],
    out: str,
    workers: int,
    log: Callable[[str], None] = log_progress,
    stop: StopRequest | None = None,
) -> dict[str, int]:
    """Run the jobs, ``workers`` processes at a time (in this process if ``workers <= 1``); count outcomes.

    SIGTERM and SIGINT set ``stop`` (a new :class:`StopRequest` if not given) and are forwarded to the
    worker processes: the runs under way checkpoint and stop, and the jobs not started count as
    ``"not started"``.
    """
    stop = stop if stop is not None else StopRequest()
    if workers <= 1:
        return _run_here(jobs, out, log, stop)
    return _run_in_workers(jobs, out, workers, log, stop)


def _run_here(jobs: Sequence[Job], out: str, log: Callable[[str], None], stop: StopRequest) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    with _on_stop_signals(stop.handle_signal):
        for job in jobs:
            if stop.is_set():
                counts["not started"] += 1
                continue
            start = time.time()
            status = run_job(job, out, stop)
            counts[status] += 1
            log(f"[study] {job_name(job)}: {status} ({time.time() - start:.0f} s)")
    return dict(counts)


def _run_in_workers(
    jobs: Sequence[Job], out: str, workers: int, log: Callable[[str], None], stop: StopRequest
) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
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
                counts[status] += 1
                log(f"[study] {job_name(job)}: {status} ({time.time() - start:.0f} s)")
            if stop.is_set() and not running and pending:
                counts["not started"] += len(pending)
                pending.clear()
            time.sleep(0.2)
    return dict(counts)

"""Running the study's jobs as Ray tasks, on a cluster (``python -m sb3_gaara.study ... --ray-address ADDRESS``).

Ray is an optional extra (``pip install "sb3-gaara[ray]"``), imported only here and only when asked for. Each job
is one Ray task that asks for the resources of one run (``--cpus-per-run``, ``--gpus-per-run``; fractions let
several runs share a GPU). What makes the grid survive faults is the run directory, not Ray:

* a task whose worker process or node dies is retried by Ray (``--max-retries``), and the retry resumes the run
  from its last checkpoint in its run directory, exactly (:mod:`sb3_gaara.study.run`); the run's
  ``sessions.jsonl`` shows the retry as a session that started where the checkpoint was;
* the run directories live under the study's ``--out``, which must be a filesystem every node sees at the same
  path (``--out`` is made absolute): a driver that dies takes its tasks with it (Ray ties them to it), and the same
  command, run again, skips the finished runs and resumes the others.

SIGTERM / Ctrl-C of the driver writes :data:`STOP_FILE` under ``--out``: the tasks watch for it, the runs under way
checkpoint and stop, and the tasks not started yet return at once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sb3_gaara.study.scheduling import (
    NOT_STARTED,
    Job,
    StopRequest,
    StudyProgress,
    _on_stop_signals,
    job_name,
    log_progress,
    run_job,
)

#: Under ``--out``: present while the driver asks every task to checkpoint and stop
STOP_FILE = ".stop_requested"
#: How to get Ray
RAY_INSTALL_HINT = 'pip install "sb3-gaara[ray]"'
#: Seconds to wait for the TCP connection to a ``HOST:PORT`` address before calling it unreachable
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RayOptions:
    """Where the study's Ray cluster is and what one run asks of it.

    :param address: ``auto`` (the cluster this machine belongs to), ``HOST:PORT`` (its head's GCS port, 6379 by
        default; ``ray://HOST:PORT`` for Ray Client) or ``local`` (start a Ray instance in this process)
    :param cpus_per_run: CPUs one run's task reserves
    :param gpus_per_run: GPUs one run's task reserves (fractions share a card: 0.25 runs four per GPU)
    :param max_retries: times Ray runs a task again after its worker process or node died
    """

    address: str
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 3


def import_ray() -> Any:
    """The ``ray`` module, or a message saying how to install it."""
    try:
        import ray
    except ImportError as error:
        raise SystemExit(f"--ray-address needs Ray, which is not installed ({error}): {RAY_INSTALL_HINT}.") from error
    return ray


def _host_and_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``HOST:PORT`` or ``ray://HOST:PORT`` address; ``None`` for ``auto``."""
    if address == "auto":
        return None
    bare = address.removeprefix("ray://")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(
            f"--ray-address {address!r} is not an address: use auto (the cluster this machine belongs to), HOST:PORT "
            "(the head's GCS port, e.g. 10.0.0.5:6379), ray://HOST:10001 (Ray Client) or local (a Ray instance on this "
            "machine only)."
        )
    return host.strip("[]"), int(port)


def _unreachable(address: str, reason: str) -> SystemExit:
    if address == "auto":
        return SystemExit(
            f"--ray-address auto found no Ray cluster that this machine is part of ({reason}). Start one with "
            "`ray start --head`, join one with `ray start --address HEAD:PORT`, name the head with --ray-address "
            "HOST:PORT, or start Ray for this study alone with --ray-address local."
        )
    return SystemExit(
        f"Cannot reach the Ray cluster at --ray-address {address} ({reason}). Start its head there with "
        "`ray start --head --port PORT` (and workers with `ray start --address HEAD:PORT`), check the host and the "
        "port (the head's GCS port, 6379 by default) and that the firewall lets it through, or run on this machine "
        "alone with --ray-address local."
    )


def connect(address: str, runtime_env: dict[str, Any] | None = None) -> None:
    """Connect the driver to the cluster at ``address`` (or start a local instance for ``local``), failing within
    seconds with a message naming the address and the fix when it cannot be reached."""
    ray = import_ray()
    if address == "local":
        ray.init(include_dashboard=False, runtime_env=runtime_env, configure_logging=False)
        return
    host_port = _host_and_port(address)
    if host_port is not None:
        # Ray itself retries an unreachable head for a minute or more: a TCP connection says it at once.
        try:
            socket.create_connection(host_port, timeout=CONNECT_TIMEOUT_S).close()
        except OSError as error:
            raise _unreachable(address, f"{type(error).__name__}: {error}") from error
    try:
        ray.init(address=address, runtime_env=runtime_env, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise _unreachable(address, f"{type(error).__name__}: {error}") from error


def check_resources(options: RayOptions, log: Callable[[str], None]) -> None:
    """Warn when no node of the cluster has what one run asks: its tasks would wait for a node that may never come
    (an autoscaling cluster may still add one)."""
    ray = import_ray()
    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    fits = any(node.get("CPU", 0) >= options.cpus_per_run and node.get("GPU", 0) >= options.gpus_per_run for node in nodes)
    if not fits:
        sizes = ", ".join(f"{node.get('CPU', 0):g} CPU / {node.get('GPU', 0):g} GPU" for node in nodes) or "none"
        log(
            f"[study] warning: no node of the Ray cluster has {options.cpus_per_run:g} CPU and {options.gpus_per_run:g} "
            f"GPU for one run (nodes: {sizes}); the runs wait until one joins. Lower --cpus-per-run / --gpus-per-run "
            "or add nodes."
        )


def runtime_env() -> dict[str, Any] | None:
    """The driver's ``MUJOCO_GL`` (headless rendering) for the tasks, whose workers the cluster started."""
    env_vars = {name: os.environ[name] for name in ("MUJOCO_GL", "MUJOCO_EGL_DEVICE_ID") if name in os.environ}
    return {"env_vars": env_vars} if env_vars else None


def _run_job_task(job: Job, out: str, stop_file: str) -> str:
    """A Ray task: one job, stopped (checkpointed) when ``stop_file`` appears; ``"not started"`` if it is there
    already."""
    if Path(stop_file).exists():
        return NOT_STARTED
    stop = StopRequest()
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(1.0):
            if Path(stop_file).exists():
                stop.set()
                return

    watcher = threading.Thread(target=watch, name="study-stop-file", daemon=True)
    watcher.start()
    try:
        return run_job(job, out, stop)
    finally:
        finished.set()


def run_jobs_on_ray(
    jobs: Sequence[Job],
    out: str,
    options: RayOptions,
    log: Callable[[str], None] = log_progress,
    stop: StopRequest | None = None,
    progress_every: float = 60.0,
) -> dict[str, int]:
    """Run the jobs as Ray tasks on the cluster the driver is connected to (:func:`connect`); count outcomes as
    :func:`~sb3_gaara.study.scheduling.run_jobs` does, a task that failed after its retries as ``"failed (...)"``."""
    ray = import_ray()
    stop = stop if stop is not None else StopRequest()
    stop_file = Path(out) / STOP_FILE
    stop_file.unlink(missing_ok=True)  # left by a driver that was killed
    check_resources(options, log)
    task = ray.remote(_run_job_task)
    started = time.time()
    pending: dict[Any, tuple[Job, float]] = {}
    for job in jobs:
        gpus = options.gpus_per_run if job[0] == "train" else 0
        ref = task.options(
            num_cpus=options.cpus_per_run,
            num_gpus=gpus,
            max_retries=options.max_retries,
            retry_exceptions=False,  # an exception is a bug or a bad setting: running it again would not help
            name=job_name(job),
        ).remote(job, str(out), str(stop_file))
        pending[ref] = (job, time.time())
    counts: dict[str, int] = defaultdict(int)
    progress = StudyProgress(jobs, counts, since=started, log=log)

    def request_stop(signum: int, frame: Any) -> None:
        stop.set()

    try:
        with _on_stop_signals(request_stop), progress.every(progress_every):
            while pending:
                if stop.is_set() and not stop_file.exists():
                    stop_file.write_text(f"asked at {time.time()}\n")
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                for ref in ready:
                    job, submitted = pending.pop(ref)
                    status = _outcome(ray, ref, job, log)
                    progress.record(job, status)
                    log(f"[study] {job_name(job)}: {status} ({time.time() - submitted:.0f} s since submitted)")
    finally:
        stop_file.unlink(missing_ok=True)
    log(progress.line())
    return dict(counts)


def _outcome(ray: Any, ref: Any, job: Job, log: Callable[[str], None]) -> str:
    """The status a task returned, or ``"failed (...)"`` with the error logged whole."""
    try:
        status: str = ray.get(ref)
        return status
    except ray.exceptions.RayError as error:
        log(f"[study] {job_name(job)} failed:\n{error}")
        cause = getattr(error, "cause", None) or error
        first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return f"failed ({type(cause).__name__}: {first_line[:200]})"

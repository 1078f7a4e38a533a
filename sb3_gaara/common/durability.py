"""Writing files and state so that a kill or a Ctrl-C never leaves them half done.

Training runs for days and is killed: by a pre-emption (SIGKILL), a time limit (SIGTERM), a user (Ctrl-C).
Every file the package writes goes through :func:`atomic_file` (or :func:`write_text_atomic`): it is
written beside its destination under a temporary name, flushed to disk and renamed over the destination,
so readers see the old file or the new one, never a part. State that must change in several steps (the
replay buffer's reference counts) changes inside :func:`deferred_keyboard_interrupt`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def atomic_file(destination: str | os.PathLike[str]) -> Iterator[io.BufferedWriter]:
    """A binary file that replaces ``destination`` only once fully written and flushed to disk.

    The temporary file is ``.NAME.PID.tmp`` beside the destination; the temporary files of earlier writers
    that were killed are deleted first (:func:`remove_stale_temporary_files`).
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporary_files(destination)
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, destination)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(destination: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8, line endings as given) to ``destination`` through :func:`atomic_file`."""
    with atomic_file(destination) as file:
        file.write(text.encode("utf-8"))


def remove_stale_temporary_files(destination: Path) -> None:
    """Delete the temporary files of writes to ``destination`` whose process no longer runs.

    A save killed mid-write leaves its ``.NAME.PID.tmp`` behind; for a replay buffer that is gigabytes, and
    a job pre-empted again and again would fill the disk.
    """
    for stale in destination.parent.glob(f".{destination.name}.*.tmp"):
        pid_text = stale.name[len(destination.name) + 2 : -len(".tmp")]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except PermissionError:
            pass  # a live process of another user


def deferred_keyboard_interrupt(function: F) -> F:
    """Decorator: a SIGINT (Ctrl-C) that arrives during ``function`` is held and delivered when it returns.

    Python runs signal handlers in the main thread only, and only there may they be changed; elsewhere, or when
    the handler was not installed from Python, the function runs unprotected.
    """

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
        if previous is None:
            return function(*args, **kwargs)
        received: list[tuple[int, Any]] = []
        signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
        try:
            return function(*args, **kwargs)
        finally:
            signal.signal(signal.SIGINT, previous)
            if received and callable(previous):
                previous(*received[0])  # Python's default handler raises KeyboardInterrupt here
            elif received and previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)

    return wrapper  # type: ignore[return-value]

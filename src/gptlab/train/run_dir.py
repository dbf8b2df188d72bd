"""Guards on a run directory: one process writes it at a time, and Ctrl-C/SIGTERM stop a run cleanly.

The lock is an OS file lock (flock), so the kernel releases it on any exit, SIGKILL included: a
crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from gptlab.errors import GptlabError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold `out`'s lock for the block; a second holder is refused in one line naming the first."""
    out.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            raise GptlabError(
                f"{out} is in use by another gptlab run{f' (pid {holder})' if holder else ''};"
                " wait for it to finish or choose another output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


class StopRequest:
    """Set by the first SIGINT or SIGTERM: the loop finishes its step, saves a checkpoint and stops."""

    signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def stop_on_signal() -> Iterator[StopRequest]:
    """While the block runs, a first SIGINT/SIGTERM only sets the request; a second one quits at once."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield request
        return

    def handle(signum: int, frame) -> None:
        if request:
            raise KeyboardInterrupt
        request.signum = signum
        print(
            f"\ngptlab: {signal.Signals(signum).name}: finishing this step and saving a checkpoint"
            " (Ctrl-C again to quit at once)",
            file=sys.stderr,
            flush=True,
        )

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)

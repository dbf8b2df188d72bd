"""How many CPU threads PyTorch computes with, kept right while other programs come and go.

PyTorch's OpenMP threads wait for each other at every barrier, spinning. When another program keeps one
core of a 2-core machine busy, a 2-thread step waits each time on the thread that shares a core with it:
`gptlab train` measured 4.9k tokens/s there against 37k with one thread (56k with two on a quiet machine).
So unless the count is fixed (`--threads`, `OMP_NUM_THREADS`, or `torch.set_num_threads` by the caller),
the loops that compute call `tick()` once a step, and about once a second it reads how much CPU other
programs took on the cores this process may use (the cores' busy time less this process's own) and uses
the cores they leave free. Reading the load costs ~0.1 ms; trying a larger thread count out instead would
cost whole steps at a tenth of the speed each time. Fewer threads are taken at once, more only after two
quiet readings, so a brief burst of other work costs little either way.

`SlowdownWatch` is the other half: a run that has become far slower than it was says so once.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import torch

INTERVAL_S = 1.0
"""Seconds between readings of the machine's load."""
FREE_CORE = 0.5
"""A core counts as free while other programs take at most this share of it: a thread on a core that another
program keeps busy most of the time holds its whole team back at every barrier."""
QUIET_READINGS_TO_GROW = 2
"""Readings in a row that must allow more threads before the count grows."""


def _busy_seconds(cores: frozenset[int] | None) -> float:
    """CPU seconds spent busy so far on `cores` (all when None), by every program; steal counts as busy."""
    total = 0.0
    for i, t in enumerate(psutil.cpu_times(percpu=True)):
        if cores is None or i in cores:
            total += t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0)
    return total


@dataclass
class LoadReading:
    """Cumulative CPU seconds: busy on our cores by anyone, and ours; at a moment of the monotonic clock."""

    busy: float
    own: float
    at: float


class ThreadGovernor:
    """Keeps `torch.get_num_threads()` at the number of cores other programs leave free, up to PyTorch's own
    default; or at a fixed count.

    PyTorch keeps the count per thread (an OpenMP setting), so it is applied by `tick()`, in whichever thread
    computes: the server's engine runs in a thread of its own.
    """

    def __init__(self, fixed: int | None = None, *, interval: float = INTERVAL_S,
                 read: Callable[[], LoadReading] | None = None, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self._process = psutil.Process()
        self._core_ids = self._affinity()
        self.cores = len(self._core_ids) if self._core_ids else (os.cpu_count() or 1)
        self.read = read or self._read
        self.most = torch.get_num_threads()
        """PyTorch's own choice for this machine: the most this governor uses."""
        self.fixed: int | None = None
        self.target = self.most
        """The count the compute threads take at their next tick."""
        self.other_load: float | None = None
        """Cores' worth of CPU that other programs took over the last interval, once measured."""
        self._applied = threading.local()  # the count last set in each thread, to notice a caller's own change
        self._last: LoadReading | None = None
        self._next_at = 0.0
        self._quiet = 0
        self.fix(fixed)

    @staticmethod
    def _affinity() -> frozenset[int] | None:
        try:
            return frozenset(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            return None

    def _read(self) -> LoadReading:
        own = self._process.cpu_times()
        return LoadReading(_busy_seconds(self._core_ids), own.user + own.system, self.clock())

    @property
    def adaptive(self) -> bool:
        return self.fixed is None

    def fix(self, threads: int | None) -> None:
        """Compute with exactly `threads` threads from now on; None lets the count follow the load again
        (unless OMP_NUM_THREADS fixes it for this process)."""
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        if threads is None and os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
            threads = self.most
        self.fixed = threads
        self.target = threads or self.most
        self._last, self._next_at, self._quiet = None, 0.0, 0
        self._apply()

    def tick(self) -> None:
        """Called once per step of work by the thread that computes: applies the count, and every `interval`
        seconds reads the load and decides the count it allows."""
        self._apply()
        if self.fixed is not None:
            return
        now = self.clock()
        if now < self._next_at:
            return
        self._next_at = now + self.interval
        reading = self.read()
        last, self._last = self._last, reading
        if last is None or reading.at <= last.at:
            return
        self.other_load = max(0.0, (reading.busy - last.busy) - (reading.own - last.own)) / (reading.at - last.at)
        self._decide(self.allowed(self.other_load))
        self._apply()

    def _apply(self) -> None:
        current = torch.get_num_threads()
        applied = getattr(self._applied, "count", None)
        if applied is not None and current != applied and self.fixed is None:
            self.fix(current)  # the caller set its own count since: theirs wins from now on
            return
        if current != self.target:
            torch.set_num_threads(self.target)
        self._applied.count = self.target

    def allowed(self, other_load: float) -> int:
        """Threads that fit the cores left free by `other_load` cores' worth of other programs' work."""
        free = math.floor(self.cores - other_load + FREE_CORE)
        return max(1, min(self.most, free))

    def _decide(self, allowed: int) -> None:
        if allowed > self.target:
            self._quiet += 1
            if self._quiet < QUIET_READINGS_TO_GROW:
                return
        self._quiet = 0
        self.target = allowed


class SlowdownWatch:
    """Says once, through `warn`, when a run's throughput has fallen far below what it reached earlier.

    Rates come in as the run measures them (one per logging window); a slowdown counts once `PERSIST`
    windows in a row run below `FRACTION` of the best earlier window, so one slow window (a checkpoint
    written by another program, the VM's own hiccup) says nothing.
    """

    FRACTION = 0.5
    PERSIST = 2

    def __init__(self, warn: Callable[[str], None], unit: str = "tokens/s"):
        self.warn = warn
        self.unit = unit
        self.best = 0.0
        self._slow = 0
        self.warned = False

    def observe(self, rate: float) -> None:
        if self.warned or not math.isfinite(rate) or rate <= 0:
            return
        if rate < self.FRACTION * self.best:
            self._slow += 1
            if self._slow >= self.PERSIST:
                self.warned = True
                self.warn(self.message(rate))
            return
        self._slow = 0
        self.best = max(self.best, rate)

    def message(self, rate: float) -> str:
        gov = governor()
        cause = "another program is probably using the CPU"
        if gov.other_load is not None and gov.other_load >= 0.25:
            cause = f"other programs are using {gov.other_load:.1f} of the {gov.cores} cores"
        if gov.adaptive:
            action = f"gptlab now computes with {gov.target} thread(s) and follows the load"
        else:
            action = f"the thread count is fixed at {gov.target}; leave --threads out to follow the load"
        return (f"warning: throughput fell to {rate:,.0f} {self.unit} from {self.best:,.0f} earlier in this run: "
                f"{cause}; {action}")


_GOVERNOR: ThreadGovernor | None = None


def governor() -> ThreadGovernor:
    """This process's governor, made on first use (PyTorch's thread count is one setting per process)."""
    global _GOVERNOR
    if _GOVERNOR is None:
        _GOVERNOR = ThreadGovernor()
    return _GOVERNOR


def use_threads(threads: int | None) -> None:
    """A verb's `--threads`: a number fixes the count, None (the default) follows the machine's load."""
    governor().fix(threads)


def tick(device: torch.device) -> None:
    """One step of work on `device` done: on a CPU, let the thread count follow the load."""
    if device.type == "cpu":
        governor().tick()

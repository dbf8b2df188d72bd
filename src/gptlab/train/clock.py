"""The run's budget: max_steps, or under max_minutes the share of the time spent (agreed by every process).

Under a time budget the learning-rate schedule is laid out over the time, not the steps, so a slow or busy
machine still finishes its decay on time; each fifth of the budget also marks an evaluation and a checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gptlab.train.config import TrainConfig
from gptlab.train.optim import lr_at, lr_at_time

BUDGET_MARKS = 5
"""Under max_minutes, a run also evaluates and saves each time another fifth of its budget is spent."""


class Clock:
    """Steps done and budget spent; `spent` seconds were spent before this process started (a resumed run's).

    `agree` turns one process's elapsed time into the one all processes act on (`Runtime.mean`), so that
    they end the run, and mark fifths, at the same step. `now` is the time source.
    """

    def __init__(self, config: TrainConfig, step: int, spent: float, agree: Callable[[float], float] = float,
                 now: Callable[[], float] = time.perf_counter) -> None:
        self.config, self.step = config, step
        self.budget = config.max_minutes * 60 if config.max_minutes is not None else None
        self.spent, self._agree, self._now = spent, agree, now
        self._started = now()
        self.progress = spent / self.budget if self.budget else 0.0
        """The share of the time budget spent; 0 without one."""
        self._marks = int(self.progress * BUDGET_MARKS)
        self.at_mark = False
        """Whether the last step crossed into another fifth of the budget."""

    def elapsed(self) -> float:
        """Seconds of training so far, a resumed run's earlier ones included (checkpoints keep it)."""
        return self.spent + self._now() - self._started

    def lr(self) -> float:
        """The learning rate of the next step."""
        peak = self.config.lr
        return lr_at_time(self.step, self.progress, self.config, peak) if self.budget else lr_at(self.step, self.config, peak)

    def tick(self) -> None:
        """Count a finished step; under a time budget, read the time (a collective: every process calls it)."""
        self.step += 1
        if self.budget:
            self.progress = self._agree(self.elapsed()) / self.budget
        marks = int(self.progress * BUDGET_MARKS)
        self.at_mark, self._marks = marks > self._marks, marks

    @property
    def done(self) -> bool:
        return self.step >= self.config.max_steps or self.progress >= 1

"""The wall-clock budget of a training run (``--minutes``): when to stop, and how many steps the
poly schedule spans (see :mod:`rtseg.train.pipeline`)."""

from __future__ import annotations

import math
import time


class TimeBudget:
    """Wall-clock budget bookkeeping: when to stop, and how many steps the poly schedule spans."""

    def __init__(self, minutes: float | None, elapsed_before: float) -> None:
        self.seconds = None if minutes is None else minutes * 60.0
        self.t0 = time.perf_counter()
        self.before = elapsed_before
        self.step_time: float | None = None
        self.val_time: float | None = None

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def remaining(self) -> float:
        return math.inf if self.seconds is None else self.seconds - self.elapsed()

    def should_stop(self) -> bool:
        if self.seconds is None:
            return False
        reserve = self.val_time if self.val_time is not None else 0.0
        return self.remaining() <= reserve

    def total_steps(self, step: int, steps_per_epoch: int, max_total: int) -> int:
        if self.seconds is None or self.step_time is None:
            return max_total
        val_per_step = (self.val_time or 0.0) / max(1, steps_per_epoch)  # one validation per epoch
        more = max(0.0, self.remaining() - (self.val_time or 0.0)) / (self.step_time + val_per_step)
        return int(min(max_total, step + max(1, math.floor(more))))

"""The speed reference: one operator timed beside every measurement, so timings taken minutes apart
on a machine whose speed drifts can still be added up and compared.

Why: on a CPU shared with other tenants the same operator runs at very different speeds from one
minute to the next, and a thread-CPU-time clock does not help, because the slowdown comes from
contention for the core's caches and memory, not from being descheduled; a network's time drifts
far more than its ratio to an operator timed beside it (the figures measured on a shared CPU are in
``docs/luts.md``, "The speed reference"). A LUT whose entries were measured at one speed
and a network timed at another disagree by that drift whatever the cost model.

So every LUT entry, skeleton and end-to-end timing records ``ref_ms``: the reference operator's
median over a short block timed right before and right after it. The LUT charges each entry at
the run's typical speed, ``median_ms * base_ms / ref_ms`` (``base_ms``: the median of all entries'
``ref_ms``), and ``lut validate`` scales its prediction by the speed the reference shows while
each arch is timed. On a steady device (a dedicated GPU) ``ref_ms`` barely moves and nothing
changes. The reference is the LUT's probe operator (:func:`rtseg.latency.entries.probe_signature`).
"""

from __future__ import annotations

import statistics
from typing import Any, Callable, Sequence, TypeVar

from rtseg.ops import OpSignature, build_op, op_class

#: Reference runs timed before and after each measurement (the block's median is its ``ref_ms``).
DEFAULT_BLOCK = 3

T = TypeVar("T")


class SpeedReference:
    """The reference operator prepared once on a timer and kept, so a block costs a few of its runs."""

    def __init__(self, timer: Any, sig: OpSignature, block: int = DEFAULT_BLOCK) -> None:
        self.sig = sig
        self.block = max(1, int(block))
        self._timer = timer
        self._prepared: Any = None  # prepared on first use: a refused run builds nothing

    def samples(self, n: int | None = None) -> list[float]:
        """``n`` back-to-back reference runs (ms), after one untimed run that refills its caches."""
        if self._prepared is None:
            cls = op_class(self.sig.type)
            self._prepared = self._timer.prepare(build_op(self.sig.spec), [tuple(cls.example_inputs(self.sig, batch=self._timer.batch))])
            self._prepared.samples(3, 1)  # the first runs pay for one-time setup
        return self._prepared.samples(1, n or self.block)

    def bracket(self, measure: Callable[[], T]) -> tuple[T, float]:
        """Run ``measure()`` between two reference blocks; returns its result and the blocks' median (ms)."""
        before = self.samples()
        result = measure()
        after = self.samples()
        return result, float(statistics.median(before + after))

    def close(self) -> None:
        if self._prepared is not None:
            self._prepared.close()
            self._prepared = None

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.sig.key, "short": self.sig.short(), "block": self.block}


def measure_probe(timer: Any, sig: OpSignature) -> float:
    """A quick isolated median (ms) of the reference operator ``sig`` on ``timer``: what profile-ops
    records every few seconds and ``lut validate`` compares with (how steady, how fast the machine is)."""
    prepared = timer.prepare(build_op(sig.spec), [tuple(op_class(sig.type).example_inputs(sig, batch=timer.batch))])
    try:
        return float(statistics.median(prepared.samples(3, 15)))
    finally:
        prepared.close()


def speed_factor(ref_ms: float | None, base_ms: float | None) -> float:
    """``base / ref``: how much a timing taken while the reference ran in ``ref_ms`` is scaled to
    the LUT's typical speed (1.0 when either is missing)."""
    if not ref_ms or not base_ms or ref_ms <= 0 or base_ms <= 0:
        return 1.0
    return float(base_ms) / float(ref_ms)


def base_speed(ref_values: Sequence[float]) -> float | None:
    """The LUT's typical reference time: the median of its entries' ``ref_ms`` (None without any)."""
    vals = [float(v) for v in ref_values if v and float(v) > 0]
    return float(statistics.median(vals)) if vals else None

"""How rtseg times anything: the one measurement protocol shared by profile-ops, lut validate and bench.

Protocol: warm up, synchronize, then time each repeat separately (CUDA events on a GPU, a monotonic
clock on the CPU), and report the median with p10/p90/p99 so the spread is visible. When the inputs
of a call would sit in the last-level cache across repeats, callers pass several input sets and
:func:`time_fn` rotates through them, so an operator is not timed on warm caches it would never see
inside a network.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np

from rtseg.backends.device import device_kind

#: ``wall``: a monotonic wall clock (CUDA events on a GPU), what a user of the device waits; the
#: default. ``thread``: the CPU time of the calling thread (``CLOCK_THREAD_CPUTIME_ID``), for
#: single-threaded CPU measurements on a machine shared with other work: time the thread spends
#: descheduled is not counted, so a 20 ms network is not charged for the other processes that ran
#: in between its slices (sub-millisecond operators mostly fit in one slice and would not be, which
#: skews wall-clock predictions on a busy machine). On a dedicated core the two clocks agree.
CLOCKS = ("wall", "thread")


@dataclass
class TimingStats:
    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_samples(samples_ms: Sequence[float]) -> "TimingStats":
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise ValueError("no timing samples")
        p10, p90, p99 = np.percentile(a, [10, 90, 99])
        return TimingStats(
            median_ms=float(statistics.median(a.tolist())),
            mean_ms=float(a.mean()),
            p10_ms=float(p10),
            p90_ms=float(p90),
            p99_ms=float(p99),
            min_ms=float(a.min()),
            n=int(a.size),
        )


def time_samples(
    fn: Callable[..., Any],
    inputs: Sequence[tuple[Any, ...]] = ((),),
    warmup: int = 10,
    repeats: int = 50,
    device: Any = "cpu",
    min_time_s: float = 0.0,
    max_repeats: int | None = None,
) -> list[float]:
    """The raw per-call times (ms) behind :func:`time_fn`, for callers that pool samples across
    interleaved rounds. ``device="thread"`` reads the calling thread's CPU time instead of the wall
    clock (see :data:`CLOCKS`) (``lut validate`` measures every arch in several rounds, so a burst of load
    from another process lands on all archs alike instead of on one)."""
    if not inputs:
        inputs = ((),)
    cuda = device_kind(device) == "cuda"
    clock = time.thread_time if str(device) == "thread" else time.perf_counter
    if cuda:
        import torch

        sync = torch.cuda.synchronize
    else:
        sync = None
    for i in range(max(0, warmup)):
        fn(*inputs[i % len(inputs)])
    if sync:
        sync()
    samples: list[float] = []
    limit = max(max_repeats or 0, repeats)
    total = 0.0
    i = 0
    while i < repeats or (total < min_time_s * 1000.0 and i < limit):
        args = inputs[i % len(inputs)]
        if cuda:
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(*args)
            end.record()
            end.synchronize()
            ms = float(start.elapsed_time(end))
        else:
            t0 = clock()
            fn(*args)
            ms = (clock() - t0) * 1000.0
        samples.append(ms)
        total += ms
        i += 1
    return samples


def time_fn(
    fn: Callable[..., Any],
    inputs: Sequence[tuple[Any, ...]] = ((),),
    warmup: int = 10,
    repeats: int = 50,
    device: Any = "cpu",
    min_time_s: float = 0.0,
    max_repeats: int | None = None,
) -> TimingStats:
    """Time ``fn(*inputs[i % len(inputs)])`` per call and summarize.

    ``device`` selects the clock: for ``cuda*`` each call is bracketed by CUDA events on the current
    stream and the device is synchronized before reading them; otherwise ``time.perf_counter`` is
    used (the function must be synchronous, which CPU torch and onnxruntime are). ``min_time_s``
    keeps repeating (up to ``max_repeats``) until that much time has been measured, which steadies
    the median of very fast operators.
    """
    return TimingStats.from_samples(time_samples(fn, inputs, warmup, repeats, device, min_time_s, max_repeats))


def median_ci(samples_ms: Sequence[float], z: float = 1.96) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics (ranks
    n/2 -+ z*sqrt(n)/2), so the sampler can tell a settled median from one that needs more runs."""
    a = sorted(samples_ms)
    n = len(a)
    if n == 0:
        raise ValueError("no timing samples")
    half = z * math.sqrt(n) / 2.0
    lo = max(0, int(math.floor(n / 2.0 - half)))
    hi = min(n - 1, int(math.ceil(n / 2.0 + half)))
    return a[lo], a[hi]


def sample_until_stable(
    take: Callable[[int, int], list[float]],
    warmup: int,
    repeats: int,
    rel_ci: float = 0.05,
    max_repeats: int = 400,
    max_s: float | None = None,
) -> list[float]:
    """Call ``take(warmup, n)`` for ``repeats`` samples, then keep adding batches of ``repeats`` (no
    warm-up) until the median's confidence interval is within ``rel_ci`` of the median, ``max_repeats``
    samples are taken or ``max_s`` seconds of samples are spent. On a quiet machine the first batch
    settles it; when another process steals the CPU for a while, the extra samples outvote the
    disturbed ones instead of the entry being whatever that moment looked like."""
    samples = list(take(warmup, repeats))
    spent = sum(samples) / 1000.0
    step = max(1, repeats)
    while len(samples) < max_repeats and (max_s is None or spent < max_s):
        lo, hi = median_ci(samples)
        med = statistics.median(samples)
        if med <= 0 or (hi - lo) <= rel_ci * med:
            break
        more = take(0, min(step, max_repeats - len(samples)))
        samples += more
        spent += sum(more) / 1000.0
    return samples

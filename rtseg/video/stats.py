"""What the demo measures, and exactly how (the numbers users keep confusing, deploy.md sec. 5.2).

Two frame rates, always both, always labelled:

* **inference FPS** = frames / (sum of the time spent in ``runner.infer`` for those frames): the
  network alone, host copies included, as a caller of the runner waits for it (the same thing
  ``Runner.benchmark`` and ``rtseg bench`` time);
* **end-to-end FPS** = frames / (wall time from the moment the first frame was decoded to the
  moment the last frame was written or shown): capture, preprocessing, inference, colorizing,
  blending and output, with the pipeline's overlap counted as the user sees it.

Warm-up runs happen before the clock starts and are not counted. Per-stage latencies are kept per
frame and summarized with :meth:`rtseg.backends.timing.TimingStats.from_samples`; the rolling
figures drawn on the overlay use the last ``window`` frames.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from rtseg.backends.timing import TimingStats

#: Stages in pipeline order. ``capture`` is decode (or render, for the synthetic source) in the
#: capture thread; ``latency`` is one frame's age from decoded to written/shown.
STAGES: tuple[str, ...] = ("capture", "preprocess", "inference", "postprocess", "output", "latency")

STAGE_HELP: dict[str, str] = {
    "capture": "decode one frame (render, for synthetic), capture thread",
    "preprocess": "resize to the model input, BGR->RGB, normalize",
    "inference": "the runner call (network, host copies included)",
    "postprocess": "argmax, colorize, blend, FPS text",
    "output": "write to the video file and/or show",
    "latency": "frame age from decoded to written/shown",
}


class PipelineStats:
    """Per-stage samples (ms) and per-frame timestamps, written by the pipeline's threads.

    Each stage list is appended to by exactly one thread, and ``list.append`` is atomic in CPython,
    so no lock is needed there; the rolling window has its own lock because the overlay reads it.
    """

    def __init__(self, window: int = 30) -> None:
        self.samples: dict[str, list[float]] = {s: [] for s in STAGES}
        self.frames = 0
        self.first_in: float | None = None
        self.last_out: float | None = None
        self.inference_total_ms = 0.0
        self._lock = threading.Lock()
        self._out_times: deque[float] = deque(maxlen=max(2, window))
        self._infer_ms: deque[float] = deque(maxlen=max(1, window))

    def add(self, stage: str, ms: float) -> None:
        self.samples[stage].append(float(ms))

    def frame_done(self, t_in: float, t_out: float, inference_ms: float) -> None:
        """Record one frame leaving the pipeline (``t_in`` when it was decoded, perf_counter seconds)."""
        with self._lock:
            self.frames += 1
            if self.first_in is None or t_in < self.first_in:
                self.first_in = t_in
            self.last_out = t_out
            self.inference_total_ms += inference_ms
            self._out_times.append(t_out)
            self._infer_ms.append(inference_ms)
        self.samples["latency"].append((t_out - t_in) * 1000.0)

    def rolling(self) -> tuple[float, float]:
        """(inference FPS, end-to-end FPS) over the last ``window`` frames; 0.0 until defined."""
        with self._lock:
            inf_ms = sum(self._infer_ms)
            inf = len(self._infer_ms) * 1000.0 / inf_ms if inf_ms > 0 else 0.0
            t = self._out_times
            e2e = (len(t) - 1) / (t[-1] - t[0]) if len(t) >= 2 and t[-1] > t[0] else 0.0
        return inf, e2e

    @property
    def wall_s(self) -> float:
        if self.first_in is None or self.last_out is None:
            return 0.0
        return max(0.0, self.last_out - self.first_in)

    @property
    def inference_fps(self) -> float:
        total = self.inference_total_ms
        return self.frames * 1000.0 / total if total > 0 else 0.0

    @property
    def end_to_end_fps(self) -> float:
        w = self.wall_s
        return self.frames / w if w > 0 else 0.0

    def stage_stats(self) -> dict[str, TimingStats]:
        return {s: TimingStats.from_samples(v) for s, v in self.samples.items() if v}

    def summary(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "wall_s": self.wall_s,
            "inference_fps": self.inference_fps,
            "end_to_end_fps": self.end_to_end_fps,
            "stages": {k: v.to_dict() for k, v in self.stage_stats().items()},
        }

"""The runner interface shared by bench, lut validate and the live demo.

A runner owns one loaded model on one backend and device, at a fixed input size and batch. It
takes preprocessed float32 NCHW numpy batches (the normalization recorded with the model) and
returns class logits or labels as numpy, so callers never depend on the backend's tensor type and
a deployed demo on TensorRT needs no PyTorch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtseg.backends.timing import TimingStats, time_samples


@dataclass
class RunnerInfo:
    backend: str  # "torch" | "onnxruntime" | "tensorrt"
    backend_version: str
    device: str  # human-readable device name (GPU model or CPU model)
    precision: str  # "fp32" | "fp16"
    input_hw: tuple[int, int]
    batch: int
    num_classes: int
    extra: dict[str, Any] = field(default_factory=dict)


class Runner(ABC):
    info: RunnerInfo

    @classmethod
    def open(cls, artifact: Any, *, input_hw: tuple[int, int] | None, batch: int, device: str, precision: str | None,
             threads: int | None, cuda_graphs: bool, memory: str | None, num_classes: int | None,
             extra: dict[str, Any]) -> "Runner":
        """The runner for ``artifact`` (what its backend ``takes`` in :data:`rtseg.backends.TABLE`),
        given every option :func:`rtseg.runtime.load_runner` knows; each backend uses those that
        apply to it. ``precision``/``num_classes`` are None for a file run as it is (it says them).
        A backend's runner in the table must define it; a runner a caller writes (a test double, a
        custom demo model) need not."""
        raise NotImplementedError(f"{cls.__name__} cannot be opened through rtseg.runtime.load_runner")

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) preprocessed input -> float32 (N, C, H, W) logits, on the host."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N, 3, H, W) -> int (N, H, W) class labels. Backends may argmax on the device."""
        return self.infer(batch).argmax(axis=1).astype(np.uint8)

    def warmup(self, n: int = 10) -> None:
        x = np.zeros((self.info.batch, 3, *self.info.input_hw), dtype=np.float32)
        for _ in range(n):
            self.infer(x)

    #: ``wall`` or ``thread``: the clock :meth:`samples` reads on a CPU (see :data:`rtseg.backends.timing.CLOCKS`)
    clock: str = "wall"

    def samples(self, warmup: int = 10, repeats: int = 100) -> list[float]:
        """Per-call network latency (ms per batch) over 4 rotating random inputs, host copies included
        (what a caller of :meth:`infer` waits), on :attr:`clock`; a runner is a network made ready for
        :func:`rtseg.backends.measure.measure_networks`."""
        rng = np.random.default_rng(0)
        xs = [(rng.standard_normal((self.info.batch, 3, *self.info.input_hw)).astype(np.float32),) for _ in range(4)]
        return time_samples(self.infer, xs, warmup=warmup, repeats=repeats, device="thread" if self.clock == "thread" else "cpu")

    def benchmark(self, warmup: int = 10, iters: int = 100) -> TimingStats:
        """Network latency per batch (see :meth:`samples`)."""
        return TimingStats.from_samples(self.samples(warmup, iters))

    def close(self) -> None:  # pragma: no cover - backends with resources override
        pass

"""PyTorch runner: CPU or CUDA, FP32 or FP16, optionally replayed as a CUDA graph.

On CUDA, :meth:`TorchRunner.samples` times the network only (the input already on the GPU, CUDA
events around each call through :func:`rtseg.backends.timing.time_samples`), the way the LUT profiler
times operators; :meth:`infer` includes the host copies and is what the demo calls. CUDA graphs
(static shapes only) capture the whole forward once and replay it, which removes the per-kernel
launch overhead that dominates small real-time nets at batch 1.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.backends.timing import time_samples
from rtseg.backends.runner import Runner, RunnerInfo
from rtseg.backends.device import device_name, device_kind

PRECISIONS = ("fp32", "fp16")


def place(module: nn.Module, input_sets: Sequence[tuple[torch.Tensor, ...]], device: str, dtype: torch.dtype,
          channels_last: bool = False) -> tuple[nn.Module, list[tuple[torch.Tensor, ...]]]:
    """``module`` in eval mode and ``input_sets`` on the device, in the dtype (and, with
    ``channels_last``, the NHWC memory format cuDNN's tensor-core kernels prefer) this backend runs
    them in: once, before anything is timed. The runner places its network this way and the
    latency timer of this backend its operators."""
    module = module.eval().to(device, dtype=dtype)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)

    def move(t: torch.Tensor) -> torch.Tensor:
        t = t.to(device, dtype=dtype)
        return t.contiguous(memory_format=torch.channels_last) if channels_last and t.dim() == 4 else t

    return module, [tuple(move(t) for t in s) for s in input_sets]


class TorchRunner(Runner):
    def __init__(
        self,
        module: nn.Module,
        input_hw: tuple[int, int],
        batch: int = 1,
        device: str = "cpu",
        precision: str = "fp32",
        cuda_graphs: bool = False,
        num_classes: int | None = None,
        threads: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise RtsegError(f"unknown precision {precision!r}; choose fp32 or fp16")
        cuda = device_kind(device) == "cuda"
        if cuda and not torch.cuda.is_available():
            raise RtsegError(f"device {device!r} asked for, but this PyTorch has no CUDA GPU; use --device cpu")
        if not cuda and precision == "fp16":
            raise RtsegError("fp16 on the CPU is not a deployment target of the torch backend; use --precision fp32 or --device cuda")
        if cuda_graphs and not cuda:
            raise RtsegError("CUDA graphs need a CUDA device (--device cuda)")
        if threads is not None and not cuda:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device)
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        if cuda:
            torch.backends.cudnn.benchmark = True
        self.module, _ = place(module, [], str(self.device), self.dtype)
        self.cuda = cuda
        self._graph: Any = None
        self._static_in: torch.Tensor | None = None
        self._static_out: torch.Tensor | None = None
        if num_classes is None:
            arch = getattr(module, "arch", None)
            num_classes = int(arch.num_classes) if arch is not None else 0
        timed = ("network only: input resident on the GPU, CUDA events per call" if cuda
                 else "network incl. host copies: numpy in, numpy out, monotonic clock")
        self.info = RunnerInfo(
            backend="torch",
            backend_version=torch.__version__,
            device=device_name(device),
            precision=precision,
            input_hw=(int(input_hw[0]), int(input_hw[1])),
            batch=int(batch),
            num_classes=num_classes,
            extra={"cuda_graphs": bool(cuda_graphs), "threads": torch.get_num_threads() if not cuda else None,
                   "timed": timed, "device_id": str(self.device), **(extra or {})},
        )
        if cuda_graphs:
            self._capture()

    @classmethod
    def open(cls, artifact: Any, *, input_hw: tuple[int, int] | None, batch: int, device: str, precision: str | None,
             threads: int | None, cuda_graphs: bool, memory: str | None, num_classes: int | None,
             extra: dict[str, Any]) -> "TorchRunner":
        assert input_hw is not None
        return cls(artifact, input_hw, batch, device=device, precision=precision or "fp32", cuda_graphs=cuda_graphs,
                   num_classes=num_classes, threads=threads, extra=extra)

    # -- device-side forward --------------------------------------------------------------------
    @torch.no_grad()
    def _capture(self) -> None:
        shape = (self.info.batch, 3, *self.info.input_hw)
        self._static_in = torch.zeros(shape, device=self.device, dtype=self.dtype)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm up (cuDNN autotuning, allocations) off the capture stream
            for _ in range(3):
                self.module(self._static_in)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._static_out = self.module(self._static_in)
        self._graph = graph

    @torch.no_grad()
    def forward_device(self, x: torch.Tensor) -> torch.Tensor:
        """Run on a tensor already on the runner's device and dtype (graph replay when captured)."""
        if self._graph is not None:
            assert self._static_in is not None and self._static_out is not None
            self._static_in.copy_(x)
            self._graph.replay()
            return self._static_out
        return self.module(x)

    # -- Runner -----------------------------------------------------------------------------------
    def _check(self, batch: np.ndarray) -> None:
        want = (self.info.batch, 3, *self.info.input_hw)
        if self._graph is not None and tuple(batch.shape) != want:
            raise RtsegError(f"input shape {tuple(batch.shape)} does not match the captured CUDA graph's {want}")
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise RtsegError(f"expected a float32 batch of shape (N, 3, H, W), got {tuple(batch.shape)}")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._check(batch)
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, self.dtype, non_blocking=False)
        y = self.forward_device(x)
        return y.float().cpu().numpy()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Argmax on the device: only an (N, H, W) uint8 map crosses back to the host."""
        self._check(batch)
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, self.dtype)
        return self.forward_device(x).argmax(dim=1).to(torch.uint8).cpu().numpy()

    def samples(self, warmup: int = 10, repeats: int = 100) -> list[float]:
        if not self.cuda:
            return super().samples(warmup, repeats)
        g = torch.Generator(device="cpu").manual_seed(0)
        xs = [(torch.randn(self.info.batch, 3, *self.info.input_hw, generator=g).to(self.device, self.dtype),) for _ in range(4)]
        return time_samples(self.forward_device, xs, warmup=warmup, repeats=repeats, device=str(self.device))

    def close(self) -> None:
        self._graph = None
        self._static_in = self._static_out = None

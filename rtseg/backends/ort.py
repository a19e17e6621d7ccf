"""ONNX Runtime runner (CPU provider, or CUDA where onnxruntime-gpu provides it).

Sessions come from :func:`rtseg.backends.ort_session.make_session`, the same factory the LUT profiler
uses, so a network is timed with the graph optimizations and threads its operators were timed with.
The model's input shape is checked against the batch a caller sends, so a wrong input size is a
one-line error rather than an ONNX Runtime stack trace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from rtseg.errors import RtsegError
from rtseg.backends.runner import Runner, RunnerInfo
from rtseg.backends.device import cuda_index, device_kind, device_name
from rtseg.backends.onnx_int8 import onnx_precision
from rtseg.backends.ort_session import make_session

_ORT_FLOAT = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OrtRunner(Runner):
    def __init__(
        self,
        model: str | Path | bytes,
        input_hw: tuple[int, int] | None = None,
        batch: int | None = None,
        device: str = "cpu",
        threads: int | None = None,
        precision: str | None = None,
        num_classes: int | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        import onnxruntime as ort

        self.session = make_session(model, device=device, threads=threads)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise RtsegError(f"{model if not isinstance(model, bytes) else 'the model'} has {len(inputs)} inputs; rtseg runners take one image batch")
        inp = inputs[0]
        self.input_name = inp.name
        self.output_name = outputs[0].name
        self.input_dtype = _ORT_FLOAT.get(inp.type)
        if self.input_dtype is None:
            raise RtsegError(f"the ONNX model's input is {inp.type}; rtseg runners feed float images")
        shape = list(inp.shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise RtsegError(f"the ONNX model's input has shape {shape}; expected (N, 3, H, W)")
        self.static_shape = shape  # ints for static axes, strings/None for dynamic ones
        n = self._fix(shape[0], batch, "batch size")
        h = self._fix(shape[2], input_hw[0] if input_hw else None, "input height")
        w = self._fix(shape[3], input_hw[1] if input_hw else None, "input width")
        if precision is None:
            precision = onnx_precision(model)
        out_shape = outputs[0].shape
        if num_classes is None:
            num_classes = out_shape[1] if len(out_shape) == 4 and isinstance(out_shape[1], int) else 0
        so_threads = threads if threads is not None else "onnxruntime default (one per physical core)"
        self.info = RunnerInfo(
            backend="onnxruntime",
            backend_version=ort.__version__,
            device=device_name(device),
            precision=precision,
            input_hw=(h, w),
            batch=n,
            num_classes=int(num_classes),
            extra={"providers": self.session.get_providers(), "threads": so_threads,
                   "timed": "session.run incl. host I/O (numpy in, numpy out), "
                            + ("CUDA provider copies included" if device_kind(device) == "cuda" else "monotonic clock"),
                   **(extra or {})},
        )

    @classmethod
    def open(cls, artifact: Any, *, input_hw: tuple[int, int] | None, batch: int, device: str, precision: str | None,
             threads: int | None, cuda_graphs: bool, memory: str | None, num_classes: int | None,
             extra: dict[str, Any]) -> "OrtRunner":
        return cls(artifact, input_hw=input_hw, batch=batch, device=device, threads=threads, precision=precision,
                   num_classes=num_classes, extra=extra)

    @staticmethod
    def _fix(dim: Any, want: int | None, what: str) -> int:
        if isinstance(dim, int):
            if want is not None and int(want) != dim:
                raise RtsegError(f"this ONNX model has a fixed {what} of {dim}, not {want}; re-export with --input/--batch or --dynamic")
            return dim
        if want is None:
            raise RtsegError(f"this ONNX model has a dynamic {what}; give it (--input HxW / --batch N)")
        return int(want)

    def _check(self, batch: np.ndarray) -> None:
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise RtsegError(f"expected a float32 batch of shape (N, 3, H, W), got {tuple(batch.shape)}")
        for axis, dim in enumerate(self.static_shape):
            if isinstance(dim, int) and batch.shape[axis] != dim:
                raise RtsegError(
                    f"input shape {tuple(batch.shape)} does not match the ONNX model's {tuple(self.static_shape)}; "
                    "resize the frames to the model's input or re-export with --dynamic"
                )

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._check(batch)
        x = np.ascontiguousarray(batch, dtype=self.input_dtype)
        y = self.session.run([self.output_name], {self.input_name: x})[0]
        return y if y.dtype == np.float32 else y.astype(np.float32)


def session_calls(session: Any, feeds: list[dict[str, np.ndarray]], device: str) -> tuple[Callable[..., Any], list[tuple[Any, ...]], list[Any]]:
    """``(fn, args, keep)``: ``fn(*args[i])`` runs ``session`` on ``feeds[i]`` with nothing but the
    run itself to wait for. On the CPU that is ``session.run``; on CUDA the inputs are uploaded once
    and the inputs and outputs bound to device memory (I/O binding), so no host copy is timed.
    ``Run`` returns when the work is done, so a host clock times either. ``keep`` holds what must
    live as long as the calls (the bindings). The latency timer of this backend times these calls."""
    if device_kind(device) != "cuda":
        def run(feed: dict[str, Any]) -> Any:
            return session.run(None, feed)

        return run, [(f,) for f in feeds], []
    import onnxruntime as ort

    idx = cuda_index(device)
    bindings = []
    for feed in feeds:
        b = session.io_binding()
        for n, a in feed.items():
            b.bind_ortvalue_input(n, ort.OrtValue.ortvalue_from_numpy(a, "cuda", idx))
        for o in session.get_outputs():
            b.bind_output(o.name, "cuda", idx)
        bindings.append(b)

    def run_bound(b: Any) -> Any:
        return session.run_with_iobinding(b)

    return run_bound, [(b,) for b in bindings], [bindings]

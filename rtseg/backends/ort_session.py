"""One way to open an ONNX Runtime session, shared by the onnxruntime profiler, ``lut validate``,
bench and the ONNX Runtime runner, so the operators in a LUT and the network they predict run
with the same graph optimizations, execution provider and thread count.

Graph optimization is ``ORT_ENABLE_ALL`` (the fusions a deployed model gets). A CUDA device asks
for the CUDA execution provider and refuses, rather than silently timing the CPU, when ONNX Runtime
was installed without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rtseg.backends.device import cuda_index
from rtseg.errors import MissingDependencyError, RtsegError


def session_options(threads: int | None = None) -> Any:
    """SessionOptions with full graph optimization and an explicit intra-op thread count."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: keep warnings about unused initializers off the console
    if threads is not None:
        if threads < 1:
            raise RtsegError(f"threads must be a positive integer, got {threads}")
        so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
    return so


def providers_for(device: str = "cpu") -> list[Any]:
    """Execution providers for ``device``; raises when CUDA is asked for but not available."""
    import onnxruntime as ort

    idx = cuda_index(device)
    if idx is None:
        return ["CPUExecutionProvider"]
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise MissingDependencyError(
            f"ONNX Runtime here has no CUDA execution provider (available: {', '.join(available)}); "
            "install onnxruntime-gpu on the GPU machine or use --device cpu"
        )
    return [("CUDAExecutionProvider", {"device_id": idx}), "CPUExecutionProvider"]


def make_session(path_or_bytes: str | os.PathLike | bytes, device: str = "cpu", threads: int | None = None) -> Any:
    """Open an ``onnxruntime.InferenceSession`` on ``device`` (``cpu``, ``cuda``, ``cuda:N``).

    ``path_or_bytes`` is an ONNX file or a serialized model. A missing or corrupt file, or an
    unavailable provider, raises :class:`RtsegError` with one sentence on how to fix it.
    """
    import onnxruntime as ort

    providers = providers_for(device)
    if isinstance(path_or_bytes, (bytes, bytearray)):
        model: Any = bytes(path_or_bytes)
        where = "the in-memory ONNX model"
    else:
        p = Path(path_or_bytes)
        if not p.exists():
            raise RtsegError(f"ONNX file not found: {p} (check the path, or export it with rtseg export)")
        if p.is_dir():
            raise RtsegError(f"expected an ONNX file, got a directory: {p}")
        model = str(p)
        where = str(p)
    try:
        sess = ort.InferenceSession(model, sess_options=session_options(threads), providers=providers)
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/InvalidProtobuf types
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RtsegError(f"ONNX Runtime cannot load {where}: {msg} (re-export the model or check the file)") from None
    if cuda_index(device) is not None and "CUDAExecutionProvider" not in sess.get_providers():
        raise MissingDependencyError(
            f"ONNX Runtime could not start the CUDA execution provider for {where} (CUDA/cuDNN libraries missing?); "
            "fix the onnxruntime-gpu install or use --device cpu"
        )
    return sess

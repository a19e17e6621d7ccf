"""Runners: one interface over PyTorch, ONNX Runtime and TensorRT (see :mod:`rtseg.runtime.base`).

:func:`load_runner` is the one entry point the demo, bench and the LUT validator use: give it a
checkpoint, an arch JSON or built-in name, an ONNX file or an engine, and a backend (default: the
natural one for the file), and get a warmed-up-able :class:`Runner`. A checkpoint or arch asked to
run on ONNX Runtime or TensorRT is exported on the fly (to memory or a temporary folder) through the
same export code ``rtseg export`` uses. ``runner.info.extra["data_info"]`` carries the model's
preprocessing (mean/std, class names, palette) so callers never hard-code it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from rtseg.errors import RtsegError
from rtseg.runtime.base import Runner, RunnerInfo

BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEFAULT_INPUT_HW = (512, 1024)
_BACKEND_ALIASES = {"ort": "onnxruntime", "onnx": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}


def normalize_backend(name: str) -> str:
    b = _BACKEND_ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if b not in BACKENDS:
        raise RtsegError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return b


def default_backend(kind: str) -> str:
    return {"onnx": "onnxruntime", "engine": "tensorrt"}.get(kind, "torch")


def _export_to(src: Any, folder: Path, input_hw: tuple[int, int], batch: int, precision: str) -> Path:
    """Export a checkpoint/arch source to ``folder/model[.fp16].onnx`` as ``rtseg export`` would
    (TorchScript exporter, onnxslim, FP16 pass) but without the parity gates: bench/demo only."""
    import torch

    from rtseg.export.onnx import convert_fp16, export_onnx, simplify_onnx
    from rtseg.runtime.source import build_module

    module = build_module(src)
    path = export_onnx(module, (torch.zeros(batch, 3, *input_hw),), folder / "model.onnx")
    simplify_onnx(path)  # the same graph rtseg export writes
    if precision == "fp16":
        path = convert_fp16(path, folder / "model.fp16.onnx")
    return path


def load_runner(
    model: str | Path,
    backend: str | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    input_hw: tuple[int, int] | None = None,
    batch: int = 1,
    *,
    cuda_graphs: bool = False,
    threads: int | None = None,
    memory: str | None = None,
) -> Runner:
    """Load ``model`` (.pt checkpoint, .json arch or built-in name, .onnx, .engine/.plan) on ``backend``."""
    from rtseg.arch import deploy_note
    from rtseg.io import parse_hw
    from rtseg.runtime.source import build_module, resolve_model, size_divisor

    src = resolve_model(model)
    b = normalize_backend(backend) if backend else default_backend(src.kind)
    if precision not in ("fp32", "fp16"):
        raise RtsegError(f"unknown precision {precision!r}; choose fp32 or fp16")
    if batch < 1:
        raise RtsegError(f"batch must be a positive integer, got {batch}")
    extra = {"model": src.name, "source": src.ref, "source_kind": src.kind, "data_info": src.data_info or None,
             "trained": src.trained, "deploy_note": deploy_note(src.arch, b, device)}
    if src.kind == "engine" and b != "tensorrt":
        raise RtsegError(f"{src.ref} is a TensorRT engine; it runs only on the tensorrt backend")
    if src.kind == "onnx" and b == "torch":
        raise RtsegError(f"{src.ref} is an ONNX file; run it with --backend onnxruntime (or tensorrt), or give the checkpoint/arch for torch")

    hw = input_hw or src.input_hw
    if b in ("torch",) or (src.kind not in ("onnx", "engine")):
        hw = parse_hw(hw or DEFAULT_INPUT_HW, size_divisor(src))

    if b == "torch":
        from rtseg.runtime.torch_runner import TorchRunner

        return TorchRunner(build_module(src), hw, batch, device=device, precision=precision, cuda_graphs=cuda_graphs,
                           num_classes=src.num_classes, threads=threads, extra=extra)

    if b == "onnxruntime":
        from rtseg.runtime.ort_runner import OrtRunner

        if src.kind == "onnx":
            return OrtRunner(src.path, input_hw=hw, batch=batch, device=device, threads=threads, extra=extra)  # type: ignore[arg-type]
        tmp = Path(tempfile.mkdtemp(prefix="rtseg-ort-"))
        try:
            path = _export_to(src, tmp, hw, batch, precision)  # type: ignore[arg-type]
            data = path.read_bytes()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return OrtRunner(data, input_hw=hw, batch=batch, device=device, threads=threads, precision=precision,
                         num_classes=src.num_classes, extra={**extra, "exported": "on the fly (TorchScript exporter)"})

    # tensorrt
    from rtseg.export.tensorrt import build_engine, import_tensorrt

    import_tensorrt()  # the clear missing-dependency error before any work
    from rtseg.runtime.tensorrt import TensorRTRunner

    if src.kind == "engine":
        return TensorRTRunner(src.path, input_hw=input_hw, batch=batch, memory=memory, device=device if device != "cpu" else "cuda", extra=extra)  # type: ignore[arg-type]
    tmp = Path(tempfile.mkdtemp(prefix="rtseg-trt-"))  # pragma: no cover - needs TensorRT
    try:
        onnx_path = src.path if src.kind == "onnx" else _export_to(src, tmp, hw, batch, "fp32")  # type: ignore[arg-type]
        engine = build_engine(onnx_path, tmp / "model.engine", fp16=precision == "fp16", progress=False)  # type: ignore[arg-type]
        return TensorRTRunner(engine, input_hw=input_hw, batch=batch, memory=memory, extra={**extra, "exported": "engine built on the fly"})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["BACKENDS", "Runner", "RunnerInfo", "default_backend", "load_runner", "normalize_backend"]

"""Runners: one interface over PyTorch, ONNX Runtime and TensorRT (see :mod:`rtseg.backends.runner`).

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

from rtseg.arch import deploy_note
from rtseg.backends import BACKENDS, Backend, default_backend, device_kind, get_backend, normalize_backend
from rtseg.backends.runner import Runner, RunnerInfo
from rtseg.errors import RtsegError
from rtseg.io import parse_hw
from rtseg.runtime.source import ModelSource, build_module, resolve_model, size_divisor

DEFAULT_INPUT_HW = (512, 1024)


def _export_to(src: Any, folder: Path, input_hw: tuple[int, int], batch: int, precision: str) -> Path:
    """Export a checkpoint/arch source to ``folder/model[.fp16].onnx`` as ``rtseg export`` would
    (TorchScript exporter, onnxslim, FP16 pass) but without the parity gates: bench/demo only."""
    import torch

    from rtseg.backends.onnx_export import export_onnx, simplify_onnx
    from rtseg.backends.onnx_fp16 import convert_fp16

    module = build_module(src)
    path = export_onnx(module, (torch.zeros(batch, 3, *input_hw),), folder / "model.onnx")
    simplify_onnx(path)  # the same graph rtseg export writes
    if precision == "fp16":
        path = convert_fp16(path, folder / "model.fp16.onnx")
    return path


def _artifact(src: ModelSource, spec: Backend, hw: tuple[int, int] | None, batch: int, precision: str, tmp: Path) -> tuple[Any, dict[str, Any]]:
    """What ``spec``'s runner is handed for ``src`` (its ``takes``), converted on the fly when the
    source is not already that: a PyTorch module, an ONNX model (bytes, exported here) or an engine
    (built here by the backend's converter). Returns it and what the conversion adds to the record."""
    if spec.takes == "module":
        return build_module(src), {}
    if src.kind == spec.takes:
        return src.path, {}
    if spec.takes == "onnx":
        return _export_to(src, tmp, hw, batch, precision).read_bytes(), {"exported": "on the fly (TorchScript exporter)"}  # type: ignore[arg-type]
    onnx_path = src.path if src.kind == "onnx" else _export_to(src, tmp, hw, batch, "fp32")  # type: ignore[arg-type]  # pragma: no cover - needs TensorRT
    from rtseg.backends.onnx_int8 import onnx_precision  # pragma: no cover

    int8 = onnx_precision(onnx_path) == "int8"  # a QDQ model builds as an explicitly quantized engine  # pragma: no cover
    engine = spec.load("converter")(onnx_path, tmp / spec.artifact, fp16=precision == "fp16" or int8, int8=int8, progress=False)  # pragma: no cover
    return engine, {"exported": "engine built on the fly"}  # pragma: no cover


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
    """Load ``model`` (.pt checkpoint, .json arch or built-in name, .onnx, .engine/.plan) on ``backend``
    (default: the one that runs the file as it is). The backend's row of :data:`rtseg.backends.TABLE`
    checks the flags before anything is built, says what its runner takes (converting the model on
    the fly when needed) and names the runner class."""
    src = resolve_model(model)
    spec = get_backend(backend) if backend else get_backend(default_backend(src.kind))
    if src.kind == "engine" and spec.name != "tensorrt":
        raise RtsegError(f"{src.ref} is a TensorRT engine; it runs only on the tensorrt backend")
    if src.kind == "onnx" and spec.name == "torch":
        raise RtsegError(f"{src.ref} is an ONNX file; run it with --backend onnxruntime (or tensorrt), or give the checkpoint/arch for torch")
    if "cpu" not in spec.devices and device_kind(device) == "cpu":
        device = spec.devices[0]  # a GPU-only backend asked for with the default device: its GPU
    spec.check(device, precision, src.kind)
    if precision == "int8" and src.kind not in ("onnx", "engine"):
        raise RtsegError(f"an INT8 model is calibrated on your images first: rtseg export {src.ref} --int8 writes model-int8.onnx; "
                         "run that file (its precision is read from it)")
    if batch < 1:
        raise RtsegError(f"batch must be a positive integer, got {batch}")
    extra = {"model": src.name, "source": src.ref, "source_kind": src.kind, "data_info": src.data_info or None,
             "trained": src.trained, "deploy_note": deploy_note(src.arch, spec.name, device)}
    hw = input_hw or src.input_hw
    if spec.takes == "module" or src.kind not in ("onnx", "engine"):
        hw = parse_hw(hw or DEFAULT_INPUT_HW, size_divisor(src))
    tmp = Path(tempfile.mkdtemp(prefix=f"rtseg-{spec.name}-"))
    try:
        artifact, converted = _artifact(src, spec, hw, batch, precision, tmp)
        native = not converted and spec.takes != "module"  # a file run as it is describes itself (precision, classes)
        return spec.load("runner").open(
            artifact, input_hw=input_hw if spec.takes == "engine" else hw, batch=batch, device=device,
            precision=None if native else precision, threads=threads, cuda_graphs=cuda_graphs, memory=memory,
            num_classes=None if native else src.num_classes, extra={**extra, **converted})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["BACKENDS", "Runner", "RunnerInfo", "default_backend", "load_runner", "normalize_backend"]

"""PyTorch -> ONNX, the single code path used by ``rtseg export``, the onnxruntime profiler and bench.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer). Our networks are static
feed-forward graphs with no data-dependent control flow, which is what the tracer handles well; it
needs no extra dependency (the dynamo exporter needs onnxscript) and yields plain Conv/Resize/Pool
graphs that ONNX Runtime and TensorRT parse. The result is always checked with ``onnx.checker``.
"""

from __future__ import annotations

import io
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Sequence

import onnx
import torch
from torch import nn

from rtseg.errors import RtsegError

DEFAULT_OPSET = 17


def export_onnx(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] = ("logits",),
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> Path:
    """Export ``module`` (in eval mode, on CPU, fp32) to ``path`` and validate it with onnx.checker."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    inputs = tuple(example_inputs)
    names = list(input_names) if input_names else (["input"] if len(inputs) == 1 else [f"input{i}" for i in range(len(inputs))])
    sink = io.StringIO()
    with warnings.catch_warnings(), redirect_stdout(sink), redirect_stderr(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            do_constant_folding=True,
        )
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:  # pragma: no cover - would be an rtseg bug
        raise RtsegError(f"exported ONNX {path} failed onnx.checker: {exc}") from None
    return path

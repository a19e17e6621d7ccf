"""PyTorch -> ONNX, the single code path used by ``rtseg export``, the onnxruntime profiler and bench.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (the TorchScript tracer) first. Our networks are
static feed-forward graphs with no data-dependent control flow, which is what the tracer handles
well; its opset-17 Conv/Resize/Pool graphs are what TensorRT 10/11 and ONNX Runtime parse best
(deploy.md sec. 3.5-3.6; Ultralytics makes the same choice). When the tracer cannot export a module
(an operator it has no symbolic for, e.g. an antialiased resize), :func:`export_onnx` falls back to
the torch.export-based exporter (``dynamo=True``, opset >= 18, needs onnxscript) with a warning,
and records which exporter wrote the file. The result is always checked with ``onnx.checker``.

Also here, so every caller gets the same graph: :func:`simplify_onnx` (onnxslim, kept only when the
result is still valid and computes the same thing). The FP16 variant that strongly typed TensorRT builds
from is :func:`rtseg.backends.onnx_fp16.convert_fp16`.
"""

from __future__ import annotations

import io
import os
import warnings
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch
from torch import nn

from rtseg.backends.onnx_fp16 import KEEP_FP32_OPS
from rtseg.backends.ort_session import make_session
from rtseg.errors import RtsegError
from rtseg.io import atomic_write_bytes

DEFAULT_OPSET = 17
#: The dynamo exporter's operator library targets opset 18 at least.
DYNAMO_MIN_OPSET = 18
EXPORTERS = ("torchscript", "dynamo")


class ExporterFallbackWarning(UserWarning):
    """The preferred exporter failed and the other one wrote the file."""


@dataclass
class OnnxExport:
    """What :func:`export_onnx_info` wrote: the file, which exporter and opset made it, and why a
    fallback happened (None when the preferred exporter succeeded)."""

    path: Path
    exporter: str
    opset: int
    fallback_reason: str | None = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def _run_exporter(
    exporter: str,
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    path: Path,
    opset: int,
    names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]] | None,
) -> int:
    sink = io.StringIO()
    if exporter == "dynamo":
        opset = max(opset, DYNAMO_MIN_OPSET)
    with warnings.catch_warnings(), redirect_stdout(sink), redirect_stderr(sink), torch.no_grad():
        warnings.simplefilter("ignore")
        kwargs = dict(
            opset_version=opset,
            input_names=names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )
        if exporter == "torchscript":
            torch.onnx.export(module, inputs, str(path), dynamo=False, do_constant_folding=True, **kwargs)
        else:
            try:
                import onnxscript  # noqa: F401
            except ImportError:
                raise RtsegError("the dynamo ONNX exporter needs onnxscript: pip install onnxscript") from None
            torch.onnx.export(module, inputs, str(path), dynamo=True, external_data=False, **kwargs)
    return opset


def export_onnx_info(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] = ("logits",),
    dynamic_axes: dict[str, dict[int, str]] | None = None,
    exporter: str = "torchscript",
    fallback: bool = True,
) -> OnnxExport:
    """Export ``module`` (eval mode, CPU, fp32) to ``path`` with ``exporter``; on failure try the other
    exporter (``fallback``) with an :class:`ExporterFallbackWarning`. Validates with onnx.checker."""
    if exporter not in EXPORTERS:
        raise RtsegError(f"unknown ONNX exporter {exporter!r}; choose {' or '.join(EXPORTERS)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    inputs = tuple(example_inputs)
    names = list(input_names) if input_names else (["input"] if len(inputs) == 1 else [f"input{i}" for i in range(len(inputs))])
    order = [exporter] + ([e for e in EXPORTERS if e != exporter] if fallback else [])
    errors: list[str] = []
    used = None
    tmp = path.with_name(f".{path.name}.partial")  # written then renamed: no truncated file on a crash
    for exp in order:
        try:
            used_opset = _run_exporter(exp, module, inputs, tmp, opset, names, list(output_names), dynamic_axes)
            used = exp
            break
        except RtsegError as exc:
            errors.append(f"{exp}: {exc}")
        except Exception as exc:  # the exporters raise many types (UnsupportedOperatorError, TorchExportError...)
            errors.append(f"{exp}: {_first_line(exc)}")
    if used is None:
        tmp.unlink(missing_ok=True)
        raise RtsegError(f"ONNX export failed with every exporter ({'; '.join(errors)}); the model uses an operator ONNX cannot express")
    reason = None
    if used != exporter:
        reason = errors[0]
        warnings.warn(
            f"the {exporter} ONNX exporter failed ({reason}); exported with the {used} exporter (opset {used_opset}) instead",
            ExporterFallbackWarning,
            stacklevel=2,
        )
    try:
        onnx.checker.check_model(str(tmp))
    except onnx.checker.ValidationError as exc:  # pragma: no cover - would be an rtseg bug
        tmp.unlink(missing_ok=True)
        raise RtsegError(f"exported ONNX {path} failed onnx.checker: {exc}") from None
    os.replace(tmp, path)
    return OnnxExport(path=path, exporter=used, opset=used_opset, fallback_reason=reason)


def export_onnx(
    module: nn.Module,
    example_inputs: Sequence[torch.Tensor],
    path: str | Path,
    opset: int = DEFAULT_OPSET,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] = ("logits",),
    dynamic_axes: dict[str, dict[int, str]] | None = None,
) -> Path:
    """Export ``module`` (in eval mode, on CPU, fp32) to ``path`` and validate it with onnx.checker.

    TorchScript exporter first, the dynamo exporter as a fallback (see :func:`export_onnx_info`)."""
    return export_onnx_info(module, example_inputs, path, opset, input_names, output_names, dynamic_axes).path


# -- onnxslim -----------------------------------------------------------------------------------
def simplify_onnx(path: str | Path, check_input: np.ndarray | None = None, rtol: float = 1e-4) -> tuple[bool, str]:
    """Simplify ``path`` in place with onnxslim, but only keep the result if onnx.checker accepts it
    and (given ``check_input``) ONNX Runtime computes the same outputs. Returns (kept, note)."""
    path = Path(path)
    try:
        import onnxslim
    except ImportError:
        return False, "onnxslim is not installed"
    original = onnx.load(str(path))
    try:
        sink = io.StringIO()
        with warnings.catch_warnings(), redirect_stdout(sink), redirect_stderr(sink):
            warnings.simplefilter("ignore")
            slim = onnxslim.slim(original)
        if slim is None:
            return False, "onnxslim returned nothing"
        onnx.checker.check_model(slim)
    except Exception as exc:  # onnxslim can fail on exotic graphs: keep the exported file
        return False, f"onnxslim failed ({_first_line(exc)}); kept the unsimplified graph"
    if check_input is not None:
        name = original.graph.input[0].name
        a = make_session(original.SerializeToString()).run(None, {name: check_input})[0]
        b = make_session(slim.SerializeToString()).run(None, {name: check_input})[0]
        if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(np.abs(a).max()))):
            return False, "onnxslim changed the outputs; kept the unsimplified graph"
    before, after = len(original.graph.node), len(slim.graph.node)
    atomic_write_bytes(path, slim.SerializeToString())
    return True, f"onnxslim: {before} -> {after} nodes"


# -- FP16 -------------------------------------------------------------------------------------------
def fp32_op_block_list() -> list[str]:
    """The op types the FP16 variant keeps in FP32 (see :mod:`rtseg.backends.onnx_fp16`)."""
    return list(KEEP_FP32_OPS)

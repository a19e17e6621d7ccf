"""INT8 ONNX: the quantizer that writes it (:func:`quantize_onnx`), and what precision an ONNX file
computes in, read from the file itself (:func:`onnx_precision`; no PyTorch, no session).

Quantizer: ONNX Runtime's static quantizer (``onnxruntime.quantization.quantize_static``) in QDQ
form, unsigned 8-bit activations and signed 8-bit weights (the U8S8 pairing ONNX Runtime's x86
integer kernels are written for), after the integer-arithmetic-only scheme of Jacob et al.,
"Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference",
CVPR 2018. ``rtseg export --int8`` calibrates it on the user's images (:mod:`rtseg.export.int8`);
the onnxruntime operator timer on random inputs, since an operator's latency does not depend on
its ranges.

An INT8 model written by ``rtseg export --int8`` is in QDQ form: ``QuantizeLinear`` /
``DequantizeLinear`` pairs around the operators that run in 8 bits (the form ONNX Runtime fuses into
integer kernels on the CPU and TensorRT builds as an explicitly quantized engine). A model quantized
elsewhere in ONNX Runtime's operator form (``QLinearConv``, ``ConvInteger``...) is INT8 too. The
sidecar, when there is one, names the precision of each file it describes and is read first.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from rtseg.errors import MissingDependencyError, RtsegError

#: Operators that exist only in quantized graphs (QDQ pairs, or ONNX Runtime's QOperator form).
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger",
                           "MatMulInteger", "DynamicQuantizeLinear", "QLinearAdd", "QLinearMul", "QLinearConcat"})


#: Calibration methods by the name the CLI takes -> ``onnxruntime.quantization.CalibrationMethod`` member.
CALIBRATION_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
#: Chosen by measurement on a trained baseline1 (docs/export.md, "INT8"): percentile kept the most
#: mIoU, min-max close behind, entropy lost the most; per-channel and per-tensor weights were within noise.
DEFAULT_METHOD = "percentile"
DEFAULT_PER_CHANNEL = True
#: Operators kept in float by the "keep the first/last layers in float" suggestion besides the convolutions.
_BOUNDARY_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def is_int8_onnx(model: Any) -> bool:
    """Whether an ``onnx.ModelProto`` holds quantized operators (QDQ or QOperator form)."""
    return any(n.op_type in QUANTIZED_OPS for n in model.graph.node)


def onnx_precision(model: str | Path | bytes) -> str:
    """``int8``, ``fp16`` or ``fp32`` for an ONNX file (or serialized model): the sidecar's word for
    the file when it has one, else what its nodes say (quantized operators: int8; FP16 compute: fp16)."""
    import onnx

    from rtseg.backends.onnx_fp16 import is_fp16_onnx

    if not isinstance(model, (bytes, bytearray)):
        recorded = _sidecar_precision(Path(model))
        if recorded:
            return recorded
    try:
        m = onnx.load_from_string(bytes(model)) if isinstance(model, (bytes, bytearray)) else onnx.load(str(model), load_external_data=False)
    except Exception:  # the session already accepted the file; precision is only informational here
        return "fp32"
    if is_int8_onnx(m):
        return "int8"
    return "fp16" if is_fp16_onnx(m) else "fp32"


def _sidecar_precision(path: Path) -> str | None:
    from rtseg.backends.metadata import read_metadata
    from rtseg.errors import RtsegError

    try:
        meta = read_metadata(path)
    except RtsegError:  # a foreign or older sidecar: fall back to the nodes
        return None
    for art in (meta or {}).get("artifacts", {}).values():
        if isinstance(art, dict) and art.get("file") == path.name and art.get("precision") in ("fp32", "fp16", "int8"):
            return str(art["precision"])
    return None


def _quantization() -> Any:
    try:
        import onnxruntime.quantization as q
    except Exception:  # pragma: no cover - onnxruntime is a core dependency
        raise MissingDependencyError("INT8 export needs onnxruntime's quantization tools: pip install onnxruntime") from None
    return q


def quantize_onnx(fp32_onnx: str | Path, out: str | Path, calibration: Sequence[np.ndarray | Mapping[str, np.ndarray]], method: str = DEFAULT_METHOD,
                  per_channel: bool = DEFAULT_PER_CHANNEL, keep_float: Sequence[str] = (),
                  symmetric_activations: bool = False) -> tuple[Path, list[str]]:
    """Write the QDQ INT8 model of ``fp32_onnx`` to ``out``, its activation ranges calibrated on
    ``calibration`` (input batches of a one-input model, or feeds by input name). Returns the file
    and the names of the graph's first/last layers (:func:`float_boundary_nodes`), the candidates
    for ``keep_float``.

    The graph is first prepared as ONNX Runtime's quantization guide advises (shape inference, and
    its fusions: BatchNorm folded into the convolutions), and ``keep_float`` names nodes of that
    prepared graph, left in float; an unknown name is refused (a typo would silently quantize it).

    ``symmetric_activations`` writes int8 activations with zero point 0 instead of asymmetric uint8:
    the only activation quantization TensorRT builds (its explicit quantization is symmetric), at
    some cost in resolution for the one-sided ReLU outputs."""
    import onnx

    from rtseg.io import atomic_write_bytes

    q = _quantization()
    if method not in CALIBRATION_METHODS:
        raise RtsegError(f"unknown calibration method {method!r}; choose {', '.join(CALIBRATION_METHODS)}")
    if not calibration:
        raise RtsegError("INT8 calibration needs at least one image")
    with tempfile.TemporaryDirectory(prefix="rtseg-int8-") as tmp:
        prepared, quantized = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        with _quiet():
            q.quant_pre_process(str(fp32_onnx), str(prepared), skip_symbolic_shape=True)
        model = onnx.load(str(prepared))
        boundary = float_boundary_nodes(model)
        unknown = [n for n in keep_float if n not in {node.name for node in model.graph.node}]
        if unknown:
            raise RtsegError(f"--int8-keep-float: no node named {', '.join(map(repr, unknown))} in {Path(fp32_onnx).name}; "
                             f"the nodes at the ends of its graph are {','.join(boundary)}")
        input_name = model.graph.input[0].name

        class Reader(q.CalibrationDataReader):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                self.batches: Iterator[Any] = iter(calibration)

            def get_next(self) -> dict[str, np.ndarray] | None:
                x = next(self.batches, None)
                return None if x is None else dict(x) if isinstance(x, Mapping) else {input_name: x}

        calibrate_method = getattr(q.CalibrationMethod, CALIBRATION_METHODS[method])
        reader: Any = Reader()
        ranges: dict[str, Any] = {}
        with _quiet():
            if method == "entropy" and "calibration_cache_path" in inspect.signature(q.quantize_static).parameters:
                ranges["calibration_cache_path"] = _entropy_ranges(q, prepared, Path(tmp), reader)
                reader = None
            q.quantize_static(
                str(prepared), str(quantized), reader, quant_format=q.QuantFormat.QDQ, per_channel=per_channel,
                activation_type=q.QuantType.QInt8 if symmetric_activations else q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                calibrate_method=calibrate_method, nodes_to_exclude=list(keep_float), calibration_providers=["CPUExecutionProvider"],
                extra_options={"ActivationSymmetric": symmetric_activations, "WeightSymmetric": True}, **ranges,
            )
        return atomic_write_bytes(Path(out), quantized.read_bytes()), boundary


def _entropy_ranges(q: Any, prepared: Path, tmp: Path, reader: Any) -> Path:
    """Entropy (KL-divergence) ranges from a 2048-bin histogram, the resolution TensorRT's entropy
    calibrator uses (Migacz, "8-bit Inference with TensorRT", GTC 2017), written as ONNX Runtime's
    calibration cache. Why: ``quantize_static`` calibrates entropy on 128 bins with 128 quantized
    bins, where the only candidate threshold is the full range, i.e. min-max again."""
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(prepared, None, augmented_model_path=str(tmp / "augmented.onnx"),
                                   calibrate_method=q.CalibrationMethod.Entropy, providers=["CPUExecutionProvider"],
                                   extra_options={"num_bins": 2048, "num_quantized_bins": 128})
    calibrator.collect_data(reader)
    cache = tmp / "entropy-ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return cache


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the quantizer: its warnings go to the root logger and ONNX Runtime's log, and its
    histogram calibrators print progress to stdout (which carries ``--json``)."""
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # errors only, as rtseg's own sessions log (ort_session)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def float_boundary_nodes(model: Any) -> list[str]:
    """The names of the first and last compute layers (those reading the graph input, and those whose
    result reaches the output through no other compute layer) and every Resize: the nodes worth
    keeping in float when INT8 loses too much (``--int8-keep-float``)."""
    import onnx

    m = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    nodes = [n for n in m.graph.node if n.name]
    inputs = {i.name for i in m.graph.input}
    producer = {o: n for n in nodes for o in n.output}
    first = [n.name for n in nodes if n.op_type in _BOUNDARY_OPS and any(i in inputs for i in n.input)]
    last: list[str] = []
    todo, seen = [o.name for o in m.graph.output], set()
    while todo:  # walk back from the outputs to the nearest compute layer on each path
        t = todo.pop()
        n = producer.get(t)
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type in _BOUNDARY_OPS:
            last.append(n.name)
        else:
            todo.extend(n.input)
    resize = [n.name for n in nodes if n.op_type == "Resize"]
    return list(dict.fromkeys(first + last + resize))

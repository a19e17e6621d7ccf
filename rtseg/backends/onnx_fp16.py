"""The FP16 variant of an FP32 ONNX model, for TensorRT's strongly typed networks (and fp16 ORT).

Why our own pass rather than onnxconverter-common's ``convert_float_to_float16``: that converter
leaves the output FP16 (despite ``keep_io_types``) or fails outright ("The downstream node of the
second cast node should be graph output") when the last node is a kept-FP32 Resize, which is exactly
how every segmentation net here ends. The pass below is small because it only needs to handle
feed-forward CNN graphs (no control flow), and it keeps shape arithmetic exact:

* every float tensor is classified as an *activation* (it depends on a graph input through float
  ops) or *shape math* (floats computed from integer shapes, e.g. Resize sizes in a dynamic graph,
  and constants feeding only those); activations become FP16, shape math stays FP32 (FP16 holds
  integers exactly only up to 2048);
* ops in :data:`KEEP_FP32_OPS` (Resize first: ONNX Runtime's CPU provider has no FP16 Resize, and
  the final upsampling of the logits stays exact) run in FP32 behind Cast nodes;
* graph inputs and outputs stay FP32 (``keep_io_types``), with a Cast after each input and before
  each output; weights are rounded to FP16 (clipped to +-65504, so no Inf appears).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rtseg.errors import RtsegError
from rtseg.io import atomic_write_bytes

KEEP_FP32_OPS: tuple[str, ...] = ("Resize", "Upsample", "Range", "CumSum", "TopK", "NonMaxSuppression", "RoiAlign",
                                  "RandomUniformLike", "RandomNormalLike")
_FLOAT, _HALF = TensorProto.FLOAT, TensorProto.FLOAT16
_FP16_MAX = 65504.0


def is_fp16_onnx(model: onnx.ModelProto | str | Path) -> bool:
    """True when the graph computes in FP16 (FP16 initializers or casts to FP16)."""
    m = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model), load_external_data=False)
    if any(t.data_type == _HALF for t in m.graph.initializer):
        return True
    for n in m.graph.node:
        if n.op_type == "Cast" and any(a.name == "to" and a.i == _HALF for a in n.attribute):
            return True
        if n.op_type == "Constant" and any(a.name == "value" and a.t.data_type == _HALF for a in n.attribute):
            return True
    return False


def _to_half(arr: np.ndarray) -> np.ndarray:
    return np.clip(arr, -_FP16_MAX, _FP16_MAX).astype(np.float16)


def _constants_to_initializers(graph: onnx.GraphProto) -> None:
    """``Constant`` nodes holding a tensor become initializers, so weights are handled in one place."""
    keep = []
    for n in graph.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            graph.initializer.append(t)
        else:
            keep.append(n)
    del graph.node[:]
    graph.node.extend(keep)


def _classify(model: onnx.ModelProto) -> tuple[dict[str, int], set[str]]:
    """Element types of every tensor, and the float *activations*: tensors that reach back to a float
    graph input through float data (everything else that is float is weights or shape math)."""
    g = model.graph
    inferred = onnx.shape_inference.infer_shapes(model)
    types: dict[str, int] = {}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[v.name] = v.type.tensor_type.elem_type
    for t in g.initializer:
        types[t.name] = t.data_type
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    act = {v.name for v in g.input if v.type.tensor_type.elem_type == _FLOAT}
    for n in g.node:  # ONNX nodes are topologically sorted
        if any(i in act for i in n.input):
            for o in n.output:
                if types.get(o) == _FLOAT:
                    act.add(o)
    return types, act


def fp16_tensor_names(model: onnx.ModelProto, keep_fp32_ops: Sequence[str] = KEEP_FP32_OPS) -> list[str]:
    """Tensors of an FP32 model that its FP16 variant stores in FP16: every activation except the
    graph inputs and the graph outputs a kept-FP32 op produces. If any of them exceeds 65504 in
    magnitude, the FP16 model overflows there; :func:`rtseg.export.parity.activation_peak` checks."""
    _, act = _classify(model)
    keep = set(keep_fp32_ops)
    inputs = {v.name for v in model.graph.input}
    outputs = {v.name for v in model.graph.output}
    names = []
    for n in model.graph.node:
        for o in n.output:
            if o in act and o not in inputs and not (n.op_type in keep and o in outputs):
                names.append(o)
    return names


def convert_fp16_model(model: onnx.ModelProto, keep_fp32_ops: Sequence[str] = KEEP_FP32_OPS) -> onnx.ModelProto:
    """Return the FP16 variant of ``model`` (see the module docstring); ``model`` is not modified."""
    if is_fp16_onnx(model):
        raise RtsegError("the model is already FP16; convert the FP32 export instead")
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    for n in g.node:
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
            raise RtsegError(f"the FP16 pass does not handle control flow ({n.op_type} node {n.name!r})")
    _constants_to_initializers(g)
    types, act = _classify(m)
    # 2. rewrite: FP16 initializers for FP16 nodes, casts at the FP32/FP16 borders
    _HalfRewrite(g, types, act, set(keep_fp32_ops)).run()
    # drop FP32 initializers no node reads any more
    used = {i for n in g.node for i in n.input}
    for t in list(g.initializer):
        if t.name not in used:
            g.initializer.remove(t)
    del g.value_info[:]
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        onnx.checker.check_model(m)
    except Exception as exc:  # pragma: no cover - would be a bug of this pass
        raise RtsegError(f"the FP16 conversion produced an invalid model: {str(exc).splitlines()[0]}") from None
    return m


class _HalfRewrite:
    """Step 2 of the pass over graph ``g``, node by node in order: an FP16 node reads FP16 versions of
    its activations, initializers and shape inputs, an FP32 node FP32 versions; a Cast is emitted
    the first time a version is needed, and FP16 graph outputs are cast back to FP32."""

    def __init__(self, g: onnx.GraphProto, types: dict[str, int], act: set[str], keep: set[str]) -> None:
        self.g, self.types, self.act, self.keep = g, types, act, keep
        self.inits = {t.name: t for t in g.initializer}
        self.graph_outputs = {v.name for v in g.output if v.type.tensor_type.elem_type == _FLOAT}
        self.new_nodes: list[onnx.NodeProto] = []
        self.half_name: dict[str, str] = {}  # activation -> the name of its FP16 version
        # activation -> its FP32 version
        self.float_name: dict[str, str] = {v.name: v.name for v in g.input if v.type.tensor_type.elem_type == _FLOAT}
        self.half_inits: dict[str, str] = {}
        self.shape_casts: dict[str, str] = {}

    def run(self) -> None:
        for n in self.g.node:
            half = n.op_type not in self.keep and any(i in self.act for i in n.input)
            self._rewrite_inputs(n, half)
            if half and n.op_type == "Cast":
                for attr in n.attribute:
                    if attr.name == "to" and attr.i == _FLOAT:
                        attr.i = _HALF
            post = self._rewrite_outputs(n, half)
            self.new_nodes.append(n)
            for src, dst in post:
                self._emit_cast(src, dst, _FLOAT)
        del self.g.node[:]
        self.g.node.extend(self.new_nodes)

    def _emit_cast(self, src: str, dst: str, to: int) -> str:
        self.new_nodes.append(helper.make_node("Cast", [src], [dst], to=to, name=dst))
        return dst

    def _get_half(self, t: str) -> str:
        if t not in self.half_name:
            self.half_name[t] = self._emit_cast(self.float_name[t], f"{t}__fp16", _HALF)
        return self.half_name[t]

    def _get_float(self, t: str) -> str:
        if t not in self.float_name:
            self.float_name[t] = self._emit_cast(self.half_name[t], f"{t}__fp32", _FLOAT)
        return self.float_name[t]

    def _rewrite_inputs(self, n: onnx.NodeProto, half: bool) -> None:
        for idx, name in enumerate(n.input):
            if not name:
                continue
            if name in self.act:
                n.input[idx] = self._get_half(name) if half else self._get_float(name)
            elif half and name in self.inits and self.inits[name].data_type == _FLOAT:
                if name not in self.half_inits:
                    t = numpy_helper.from_array(_to_half(numpy_helper.to_array(self.inits[name])), name + "__fp16")
                    self.g.initializer.append(t)
                    self.half_inits[name] = t.name
                n.input[idx] = self.half_inits[name]
            elif half and self.types.get(name) == _FLOAT:  # shape math feeding an FP16 op
                if name not in self.shape_casts:
                    self.shape_casts[name] = self._emit_cast(name, f"{name}__fp16", _HALF)
                n.input[idx] = self.shape_casts[name]

    def _rewrite_outputs(self, n: onnx.NodeProto, half: bool) -> list[tuple[str, str]]:
        """Name the node's outputs; returns the (FP16, FP32) pairs of graph outputs to cast back after it."""
        post: list[tuple[str, str]] = []
        for idx, o in enumerate(n.output):
            if o not in self.act:
                continue
            if half:
                inner = o + "__fp16" if o in self.graph_outputs else o
                n.output[idx] = inner
                self.half_name[o] = inner
                if o in self.graph_outputs:
                    post.append((inner, o))
                    self.float_name[o] = o
            else:
                self.float_name[o] = o
        return post


def convert_fp16(src: str | Path | onnx.ModelProto, dst: str | Path, keep_fp32_ops: Sequence[str] | None = None) -> Path:
    """Write the FP16 variant of an FP32 ONNX file (FP32 I/O) to ``dst``; returns ``dst``."""
    model = src if isinstance(src, onnx.ModelProto) else onnx.load(str(src))
    m16 = convert_fp16_model(model, KEEP_FP32_OPS if keep_fp32_ops is None else keep_fp32_ops)
    return atomic_write_bytes(dst, m16.SerializeToString())

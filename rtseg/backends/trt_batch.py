"""Many one-operator graphs in one TensorRT engine, each timed per layer through ``IProfiler``.

Why: one engine per LUT entry costs a TensorRT build per entry, and the ``ssr`` space at 512x1024
has 1,631 entries (twice that with the recheck): thousands of builds whose fixed cost (parse,
graph optimization, serialization, a fresh builder) dwarfs the microseconds being measured. The
estimate is in ``docs/luts.md`` ("TensorRT profiling"). Here up to
:data:`DEFAULT_BATCH` independent subgraphs (each the module an entry would have been timed as:
the operator, or the stack of its copies, or a stack of identities) share one ONNX graph and one
engine; every subgraph keeps its own input and output, so no data flows between them.

* :func:`merge_subgraphs` prefixes every node, tensor and initializer of subgraph ``i`` with
  ``sg{i:04d}/`` (``onnx.compose.add_prefix``) and concatenates the graphs, so every TensorRT
  layer name (built from ONNX node names; fused layers join them with ``" + "``) says which
  subgraph it belongs to.
* The engine is built with ``max_aux_streams = 0``: layers then run one after another on one
  stream and their timings never overlap. ``IProfiler.report_layer_time`` (TensorRT docs,
  ``IExecutionContext.profiler``; with ``enqueue_emits_profile = False`` and
  ``report_to_profiler()`` after the stream sync) gives every layer's time per execution;
  :func:`split_layer_times` sums them per subgraph.
* A layer whose name names two subgraphs (a Myelin ``ForeignNode`` fusing across them) cannot be
  split: those subgraphs are re-timed in engines of their own, where every layer is theirs.

Between two executions of a subgraph the other subgraphs run, reading and writing their own
tensors, so a subgraph's input is not left waiting in the L2 cache (the rotation of input sets
the one-engine path needs is unnecessary here).

The ONNX side (merging, naming, attributing) is plain Python and tested without TensorRT; the
engine side needs TensorRT and a GPU.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

#: Subgraphs per engine, and the most input+output bytes one engine holds (activations besides).
DEFAULT_BATCH = 64
DEFAULT_MAX_IO_BYTES = 2 << 30
_PREFIX = "sg{:04d}/"
_PREFIX_RE = re.compile(r"sg(\d{4})/")


def subgraph_prefix(i: int) -> str:
    """The name prefix of subgraph ``i`` in a merged graph (``sg0007/``)."""
    return _PREFIX.format(int(i))


def subgraphs_in(name: str) -> set[int]:
    """The subgraphs a layer name mentions (a fused layer's name joins its nodes' names)."""
    return {int(m) for m in _PREFIX_RE.findall(name)}


def merge_subgraphs(models: Sequence[Any]) -> Any:
    """One ``onnx.ModelProto`` holding ``models`` side by side, subgraph ``i`` prefixed with
    :func:`subgraph_prefix`; inputs and outputs stay separate, in order. Every model must use the
    same opsets (they come from one exporter). Checked with ``onnx.checker``."""
    import onnx
    from onnx import compose, helper

    if not models:
        raise ValueError("merge_subgraphs needs at least one model")
    opsets = {o.domain: o.version for o in models[0].opset_import}
    nodes, inits, inputs, outputs, vinfo, functions = [], [], [], [], [], {}
    for i, m in enumerate(models):
        other = {o.domain: o.version for o in m.opset_import}
        if other != opsets:
            raise ValueError(f"subgraph {i} uses opsets {other}, subgraph 0 {opsets}; export them with one exporter and opset")
        p = compose.add_prefix(m, subgraph_prefix(i))
        g = p.graph
        init_names = {t.name for t in g.initializer}
        for k, n in enumerate(g.node):
            if n.name in ("", subgraph_prefix(i)):  # unnamed nodes still need a name TensorRT can report
                n.name = f"{subgraph_prefix(i)}{n.op_type}_{k}"
        nodes += list(g.node)
        inits += list(g.initializer)
        inputs += [x for x in g.input if x.name not in init_names]
        outputs += list(g.output)
        vinfo += list(g.value_info)
        for f in p.functions:
            functions.setdefault((f.domain, f.name), f)
    graph = helper.make_graph(nodes, "rtseg_subgraphs", inputs, outputs, initializer=inits, value_info=vinfo)
    merged = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()],
                               producer_name="rtseg", functions=list(functions.values()))
    merged.ir_version = max(m.ir_version for m in models)
    onnx.checker.check_model(merged)
    return merged


def subgraph_io(model: Any, n: int) -> list[tuple[list[str], list[str]]]:
    """Per subgraph ``(input names, output names)`` of a merged model, in graph order."""
    io: list[tuple[list[str], list[str]]] = [([], []) for _ in range(n)]
    for k, tensors in ((0, model.graph.input), (1, model.graph.output)):
        for x in tensors:
            for i in subgraphs_in(x.name):
                if 0 <= i < n:
                    io[i][k].append(x.name)
    return io


def split_layer_times(run: Mapping[str, float], n: int) -> tuple[list[float], set[int], float]:
    """One execution's layer times (ms, by layer name) summed per subgraph.

    Returns ``(per-subgraph ms, subgraphs sharing a layer with another, ms of layers naming no
    subgraph)``. A shared layer's time is charged to nobody: its subgraphs must be re-timed alone."""
    per = [0.0] * n
    shared: set[int] = set()
    other = 0.0
    for name, ms in run.items():
        ids = {i for i in subgraphs_in(name) if 0 <= i < n}
        if len(ids) == 1:
            per[next(iter(ids))] += float(ms)
        elif not ids:
            other += float(ms)
        else:
            shared |= ids
    return per, shared, other


def plan_chunks(io_bytes: Sequence[int], max_count: int = DEFAULT_BATCH, max_bytes: int = DEFAULT_MAX_IO_BYTES) -> list[list[int]]:
    """Consecutive groups of subgraph indices, each at most ``max_count`` subgraphs and (unless one
    subgraph alone is larger) ``max_bytes`` of inputs and outputs."""
    chunks: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for i, b in enumerate(io_bytes):
        if cur and (len(cur) >= max(1, max_count) or size + b > max_bytes):
            chunks.append(cur)
            cur, size = [], 0
        cur.append(i)
        size += int(b)
    if cur:
        chunks.append(cur)
    return chunks


def export_merged(modules: Sequence[Any], inputs: Sequence[tuple[Any, ...]], path: str | Path, opset: int | None = None,
                  device: str = "cpu") -> Path:
    """Export every module (fp32, with its example inputs) through :func:`rtseg.backends.onnx_export.export_onnx`,
    the exporter every other rtseg graph comes from, and write the merged graph to ``path``.

    ``device`` is where the tracer runs the modules: tracing runs each forward once at its real
    size, most of an export's time on a CPU (figure in ``docs/luts.md``, "TensorRT
    profiling"), so the TensorRT timer traces on its GPU; the graph is the
    same (the exporter copies the weights to the host). A failure there falls back to the CPU."""
    import onnx

    from rtseg.backends.onnx_export import DEFAULT_OPSET, export_onnx

    path = Path(path)
    models = []
    with tempfile.TemporaryDirectory(prefix="rtseg-sg-") as d:
        for i, (m, x) in enumerate(zip(modules, inputs)):
            target = Path(d) / f"{i}.onnx"
            m = m.eval().float()
            p = None
            if device != "cpu":
                try:
                    p = export_onnx(m.to(device), tuple(t.float().to(device) for t in x), target, opset=opset or DEFAULT_OPSET)
                except Exception:  # pragma: no cover - needs a GPU
                    p = None
            if p is None:
                p = export_onnx(m.cpu(), tuple(t.float().cpu() for t in x), target, opset=opset or DEFAULT_OPSET)
            models.append(onnx.load(str(p)))
    onnx.save(merge_subgraphs(models), str(path))
    return path


class _LayerTimes:  # pragma: no cover - needs TensorRT
    """Factory of an ``IProfiler`` that keeps one execution's layer times (ms by layer name)."""

    @staticmethod
    def make(trt: Any) -> Any:
        class LayerTimes(trt.IProfiler):
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)
                self.current: dict[str, float] = {}

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                self.current[layer_name] = self.current.get(layer_name, 0.0) + float(ms)

            def pop(self) -> dict[str, float]:
                out, self.current = self.current, {}
                return out

        return LayerTimes()


class SubgraphEngine:  # pragma: no cover - needs TensorRT and a GPU
    """A merged ONNX of ``n`` subgraphs built into one engine, executed with a per-layer profiler.

    :meth:`take` runs ``warmup`` untimed executions, then ``repeats`` timed ones, and returns each
    subgraph's per-execution time (the sum of its layers). Subgraphs that share a layer with
    another are re-timed in engines of their own (recorded in :attr:`refined`)."""

    def __init__(self, onnx_path: Path, n: int, inputs: Sequence[tuple[Any, ...]], folder: Path, fp16: bool, workspace_gb: float,
                 timing_cache: Path | None, device: str, builder: Any = None) -> None:
        import numpy as np
        import onnx

        from rtseg.backends.tensorrt_build import build_engine, import_tensorrt
        from rtseg.backends.tensorrt import TensorRTRunner

        trt = import_tensorrt()
        self.n = n
        self.refined: dict[int, "SubgraphEngine"] = {}
        self.unattributed_ms: list[float] = []
        self._args = (fp16, workspace_gb, timing_cache, device, builder)
        self._folder = folder
        self._onnx = onnx_path
        self._inputs = list(inputs)
        engine = folder / (onnx_path.stem + ".engine")
        if not engine.exists():  # built once; a second look (the recheck) loads it again
            build_engine(onnx_path, engine, fp16=fp16, workspace_gb=workspace_gb, timing_cache=timing_cache, progress=False,
                         builder=builder, max_aux_streams=0)
        self.runner = TensorRTRunner(engine, device=device)
        ctx = self.runner.context
        self.profiler = _LayerTimes.make(trt)
        ctx.profiler = self.profiler
        self._deferred = hasattr(ctx, "enqueue_emits_profile") and hasattr(ctx, "report_to_profiler")
        if self._deferred:
            ctx.enqueue_emits_profile = False  # enqueue stays asynchronous; report_to_profiler() after the sync
        names = subgraph_io(onnx.load(str(onnx_path), load_external_data=False), n)
        feed: dict[str, Any] = {}
        for i, (in_names, _) in enumerate(names):
            for name, t in zip(in_names, self._inputs[i]):
                feed[name] = t.detach().float().cpu().numpy().astype(np.float32)
        self.runner.upload(*(feed[name] for name in self.runner.inputs))  # every input once
        self.profiler.pop()

    def _execute(self) -> dict[str, float]:
        self.runner.execute()
        if self._deferred:
            self.runner.context.report_to_profiler()
        return self.profiler.pop()

    def take(self, warmup: int, repeats: int) -> list[list[float]]:
        for _ in range(max(0, warmup)):
            self._execute()
        out: list[list[float]] = [[] for _ in range(self.n)]
        shared: set[int] = set()
        for _ in range(max(1, repeats)):
            per, sh, other = split_layer_times(self._execute(), self.n)
            shared |= sh
            self.unattributed_ms.append(other)
            for i, ms in enumerate(per):
                out[i].append(ms)
        if self.n > 1:
            for i in sorted(shared):
                if i not in self.refined:
                    self.refined[i] = self._alone(i)
        for i, eng in self.refined.items():
            out[i] = eng.take(warmup, repeats)[0]
        return out

    def summary(self) -> dict[str, Any]:
        """What the engine did: subgraphs, those re-timed alone, the median time of layers naming no subgraph."""
        import statistics

        return {"subgraphs": self.n, "timed_alone": sorted(self.refined),
                "unattributed_ms": statistics.median(self.unattributed_ms) if self.unattributed_ms else 0.0}

    def _alone(self, i: int) -> "SubgraphEngine":
        import onnx

        fp16, ws, cache, device, builder = self._args
        single = self._folder / f"{self._onnx.stem}-alone{i:04d}.onnx"
        onnx.save(merge_subgraphs([_extract(onnx.load(str(self._onnx)), i)]), str(single))
        return SubgraphEngine(single, 1, [self._inputs[i]], self._folder, fp16, ws, cache, device, builder)

    def close(self) -> None:
        for eng in self.refined.values():
            eng.close()
        self.runner.close()


def _extract(merged: Any, i: int) -> Any:
    """Subgraph ``i`` of a merged model as a model of its own (prefix removed, so it can be merged again)."""
    import onnx
    from onnx import helper

    p = subgraph_prefix(i)

    def strip(s: str) -> str:
        return s[len(p):] if s.startswith(p) else s

    g = merged.graph
    keep_nodes = [n for n in g.node if n.name.startswith(p)]
    nodes = []
    for n in keep_nodes:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        c.name = strip(c.name)
        c.input[:] = [strip(x) for x in c.input]
        c.output[:] = [strip(x) for x in c.output]
        nodes.append(c)

    def copy_named(items: Any) -> list[Any]:
        out = []
        for t in items:
            if t.name.startswith(p):
                c = type(t)()
                c.CopyFrom(t)
                c.name = strip(c.name)
                out.append(c)
        return out

    graph = helper.make_graph(nodes, "rtseg_subgraph", copy_named(g.input), copy_named(g.output), initializer=copy_named(g.initializer),
                              value_info=copy_named(g.value_info))
    model = helper.make_model(graph, opset_imports=list(merged.opset_import), producer_name="rtseg", functions=list(merged.functions))
    model.ir_version = merged.ir_version
    return model


__all__ = ["DEFAULT_BATCH", "DEFAULT_MAX_IO_BYTES", "SubgraphEngine", "export_merged", "merge_subgraphs", "plan_chunks",
           "split_layer_times", "subgraph_io", "subgraph_prefix", "subgraphs_in"]

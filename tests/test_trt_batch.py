"""Many one-operator subgraphs in one graph (the TensorRT profiler's batching), checked with ONNX Runtime;
the TensorRT engine itself only where TensorRT and a GPU are present."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from rtseg.backends.trt_batch import (
    _extract,
    export_merged,
    merge_subgraphs,
    plan_chunks,
    split_layer_times,
    subgraph_io,
    subgraph_prefix,
    subgraphs_in,
)
from rtseg.ops import OpSignature, OpSpec, build_op, op_class


def _sig(spec: OpSpec, h: int, w: int) -> OpSignature:
    return OpSignature(spec, h, w)


SIGS = [
    _sig(OpSpec.make("nb1d", 16, 16, 1, dilation=2, spatial=1, c3x1=12, c1x3=8), 16, 32),
    _sig(OpSpec.make("nb1d", 16, 16, 1, dilation=1, spatial=2, c3x1=16, c1x3=16), 16, 32),
    _sig(OpSpec.make("db", 3, 16, 2), 32, 64),
]


def _modules_and_inputs() -> tuple[list[nn.Module], list[tuple[torch.Tensor, ...]]]:
    torch.manual_seed(0)
    mods: list[nn.Module] = [nn.Sequential(*(build_op(SIGS[0].spec) for _ in range(3))), build_op(SIGS[1].spec), build_op(SIGS[2].spec),
                             nn.Sequential(*(build_op(OpSpec.make("identity", 16, 16)) for _ in range(3)))]
    xs = [tuple(op_class(s.type).example_inputs(s, batch=1)) for s in SIGS] + [tuple(op_class(SIGS[0].type).example_inputs(SIGS[0], batch=1))]
    for m in mods:
        for bn in (x for x in m.modules() if isinstance(x, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
    return [m.eval() for m in mods], xs


def _ort(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def test_merged_graph_runs_every_subgraph_as_its_own_graph(tmp_path):
    mods, xs = _modules_and_inputs()
    path = export_merged(mods, xs, tmp_path / "merged.onnx")
    merged = onnx.load(str(path))
    onnx.checker.check_model(merged)
    io = subgraph_io(merged, len(mods))
    assert [len(i) for i, _ in io] == [1, 1, 1, 1] and [len(o) for _, o in io] == [1, 1, 1, 1]
    for i, (ins, outs) in enumerate(io):
        assert all(n.startswith(subgraph_prefix(i)) for n in ins + outs)
    # every node carries its subgraph's prefix, so every TensorRT layer name will
    assert all(len(subgraphs_in(n.name)) == 1 for n in merged.graph.node)
    feed = {io[i][0][0]: x[0].numpy() for i, x in enumerate(xs)}
    got = _ort(merged, feed)
    for i, (m, x) in enumerate(zip(mods, xs)):
        alone = onnx.load(str(export_merged([m], [x], tmp_path / f"alone{i}.onnx")))
        (ref,) = _ort(alone, {alone.graph.input[0].name: x[0].numpy()}).values()
        np.testing.assert_allclose(got[io[i][1][0]], ref, rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            np.testing.assert_allclose(ref, m(*x).numpy(), rtol=1e-4, atol=1e-4)


def test_a_subgraph_extracted_again_is_the_same_graph(tmp_path):
    mods, xs = _modules_and_inputs()
    merged = onnx.load(str(export_merged(mods, xs, tmp_path / "merged.onnx")))
    one = _extract(merged, 1)
    onnx.checker.check_model(one)
    assert not any(subgraphs_in(n.name) for n in one.graph.node)
    (a,) = _ort(one, {one.graph.input[0].name: xs[1][0].numpy()}).values()
    io = subgraph_io(merged, len(mods))
    b = _ort(merged, {io[i][0][0]: x[0].numpy() for i, x in enumerate(xs)})[io[1][1][0]]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # merging the extracted graph again (a subgraph re-timed alone) prefixes it as subgraph 0
    again = merge_subgraphs([one])
    assert all(subgraphs_in(n.name) == {0} for n in again.graph.node)


def test_merging_refuses_graphs_of_different_opsets(tmp_path):
    mods, xs = _modules_and_inputs()
    a = onnx.load(str(export_merged([mods[2]], [xs[2]], tmp_path / "a.onnx")))
    b = onnx.load(str(export_merged([mods[2]], [xs[2]], tmp_path / "b.onnx", opset=18)))
    with pytest.raises(ValueError, match="opsets"):
        merge_subgraphs([_extract(a, 0), _extract(b, 0)])


def test_layer_times_are_split_by_subgraph():
    run = {
        "sg0000//0/conv3x1/Conv + sg0000//0/Relu": 0.020,
        "sg0000//1/conv1x3/Conv + sg0000//1/Add + sg0000//1/Relu_1": 0.030,
        "Reformatting CopyNode for Input Tensor 0 to sg0001//conv/Conv": 0.004,
        "sg0001//conv/Conv": 0.010,
        "{ForeignNode[sg0002//Add...sg0003//Relu]}": 0.050,
        "sg0003//Cast": 0.001,
        "[trainStation1]": 0.002,
    }
    per, shared, other = split_layer_times(run, 4)
    assert per[0] == pytest.approx(0.050) and per[1] == pytest.approx(0.014)
    assert shared == {2, 3} and other == pytest.approx(0.002)
    assert subgraphs_in("sg0012/a + sg0012/b") == {12}


def test_chunks_respect_count_and_bytes():
    assert plan_chunks([1] * 10, max_count=4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert plan_chunks([3, 3, 3, 10, 1], max_count=64, max_bytes=7) == [[0, 1], [2], [3], [4]]


def test_profile_ops_in_batches_fills_the_same_entries(tmp_path):
    """The batched path of profile-ops (TensorRT's, here through the torch timer's interleaved
    batches): every entry, measured by the network method, checked once more, provenance says so."""
    from rtseg.latency.lut import load_lut
    from rtseg.latency.profile import profile_ops
    from rtseg.spaces import get_space

    space = get_space("ssr")
    sigs = space.candidate_signatures(32, 64, 19, heads=("classifier",))
    pick = [s for s in sigs if s.type == "nb1d"][:4] + [s for s in sigs if s.type != "nb1d"][:2]
    path = profile_ops("ssr", 32, 64, "torch", "cpu", warmup=1, repeats=3, out_path=tmp_path / "lut.json", signatures=pick,
                       heads=["classifier"], progress=False, threads=1, batch_entries=4, max_entry_s=0.02, calibration_archs=0,
                       speed_reference=False)
    lut = load_lut(path)
    assert lut.provenance["entries_per_batch"] == 4
    for s in pick:
        e = lut.entries[s.key]
        assert e["median_ms"] == e["median_ms"] and e["n"] >= 3 and e["checked"] is True and e["batched"] >= 2
        assert e["method"] == ("network" if s.type == "nb1d" else "isolated")
    nb = lut.entries[pick[0].key]
    assert nb["stack"] == 3 and nb["identity_ms"] >= 0


def test_tensorrt_engine_times_every_subgraph_per_layer(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except Exception:
        pytest.skip("TensorRT is not importable here (pip install 'rtseg[trt]' on a GPU machine)")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines need a CUDA GPU")
    from rtseg.backends.trt_batch import SubgraphEngine

    mods, xs = _modules_and_inputs()
    path = export_merged(mods, xs, tmp_path / "merged.onnx")
    eng = SubgraphEngine(path, len(mods), xs, tmp_path, fp16=True, workspace_gb=1.0, timing_cache=tmp_path / "timing.cache", device="cuda:0")
    try:
        samples = eng.take(3, 10)
    finally:
        eng.close()
    assert len(samples) == len(mods) and all(len(s) == 10 for s in samples)
    assert all(np.median(s) > 0 for s in samples[:3])  # the identity stack may be optimized away entirely

"""Measurement primitives: the timing protocol, devices, backends, the ONNX Runtime session, Kendall's tau."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from rtseg.errors import MissingDependencyError, RtsegError
from rtseg.backends import TABLE, get_backend
from rtseg.backends.timers import make_timer
from rtseg.backends.device import detect_device, device_slug, keeps_torch_threads, parse_device
from rtseg.backends.timing import TimingStats, median_ci, sample_until_stable, time_fn, time_samples
from rtseg.latency.validate import kendall_tau
from rtseg.ops import OpSpec, build_op, op_class

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def test_time_fn_counts_repeats_and_min_time():
    calls = []
    st = time_fn(lambda x: calls.append(x), [(1,), (2,)], warmup=3, repeats=5)
    assert st.n == 5 and len(calls) == 8 and calls == [1, 2, 1, 1, 2, 1, 2, 1]  # inputs rotate
    st = time_fn(lambda: sum(range(2000)), repeats=2, min_time_s=0.005, max_repeats=10_000)
    assert st.n > 2 and st.p10_ms <= st.median_ms <= st.p90_ms
    assert len(time_samples(lambda: None, repeats=7, warmup=0)) == 7


def test_median_ci_and_sampling_until_stable():
    lo, hi = median_ci([1.0] * 20 + [100.0] * 3)
    assert lo == hi == 1.0
    lo, hi = median_ci(list(range(1, 101)))
    assert 35 <= lo < 50 < hi <= 65
    # a noisy source keeps getting batches until max_repeats; a steady one stops after the first batch
    rng = np.random.default_rng(0)
    noisy = sample_until_stable(lambda wu, n: list(rng.uniform(1, 3, n)), 0, 10, rel_ci=0.01, max_repeats=60)
    steady = sample_until_stable(lambda wu, n: [1.0] * n, 0, 10, rel_ci=0.01, max_repeats=60)
    assert len(noisy) == 60 and len(steady) == 10


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # one swapped pair out of six: (5 - 1) / 6
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # tau-b with a tie in one ranking (scipy.stats.kendalltau gives 0.912870929175277)
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.912870929175277)


def test_device_detection_and_thread_restore():
    assert parse_device("cuda") == "cuda:0" and parse_device("CPU") == "cpu"
    with pytest.raises(RtsegError, match="unknown device"):
        parse_device("gpu0")
    prev = torch.get_num_threads()

    @keeps_torch_threads
    def f() -> dict:
        return detect_device("cpu", threads=1).to_dict()

    d = f()
    assert d["kind"] == "cpu" and d["threads"] == 1 and d["name"] and d["slug"] == device_slug("cpu")  # one folder per machine
    assert torch.get_num_threads() == prev
    if not torch.cuda.is_available():
        with pytest.raises(RtsegError, match="no CUDA device"):
            detect_device("cuda:0")


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here; this checks the message when it is not")
def test_tensorrt_missing_is_a_clear_error_never_a_fallback(tmp_path):
    with pytest.raises(MissingDependencyError, match=r"pip install 'rtseg\[trt\]'"):
        get_backend("trt").require()
    with pytest.raises(MissingDependencyError, match="tensorrt backend needs TensorRT"):
        make_timer("tensorrt", detect_device("cpu"), "fp16")
    from rtseg.latency.profile import profile_ops

    out = tmp_path / "lut.json"
    with pytest.raises(MissingDependencyError):
        profile_ops("ssr", 64, 128, backend="tensorrt", device="cuda", precision="fp16", out_path=out, progress=False)
    assert not out.exists()


def test_backend_table_is_the_one_declaration():
    # every backend is one row: its runner and timer load from it, and the flags are checked against it
    assert tuple(TABLE) == ("torch", "onnxruntime", "tensorrt") and get_backend("ORT").name == "onnxruntime"
    for spec in TABLE.values():
        assert {"fp32", "fp16"} <= set(spec.precisions) and spec.install and spec.runs
    # INT8 models are calibrated files: ONNX Runtime and TensorRT run them, PyTorch does not
    assert "int8" in TABLE["onnxruntime"].precisions and "int8" in TABLE["tensorrt"].precisions and "int8" not in TABLE["torch"].precisions
    assert TABLE["torch"].load("runner").__name__ == "TorchRunner" and TABLE["onnxruntime"].load("timer").__name__ == "OnnxRuntimeTimer"
    with pytest.raises(RtsegError, match="fp16 on the CPU is not a deployment target of the torch backend"):
        get_backend("torch").check("cpu", "fp16")
    with pytest.raises(RtsegError, match="unknown precision"):
        get_backend("onnxruntime").check("cpu", "int4")
    with pytest.raises(RtsegError, match="the torch backend runs fp32 or fp16, not int8; run an int8 model on onnxruntime or tensorrt"):
        get_backend("torch").check("cpu", "int8")
    get_backend("onnxruntime").check("cpu", "int8", "onnx")
    with pytest.raises(RtsegError, match="the torch backend cannot run this engine model"):
        get_backend("torch").check(kind="engine")
    get_backend("onnxruntime").check("cpu", "fp16", "onnx")  # an fp16 ONNX runs on the CPU provider


def test_timer_argument_errors():
    cpu = detect_device("cpu")
    with pytest.raises(RtsegError, match="fp16 is measured on a GPU"):
        make_timer("torch", cpu, "fp16")
    with pytest.raises(RtsegError, match="unknown backend"):
        make_timer("tvm", cpu)
    with pytest.raises(RtsegError, match="the torch timer measures fp32 or fp16, not 'int8'"):
        make_timer("torch", cpu, "int8")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_backends_time_a_real_operator(backend):
    sig = OpSpec.make("nb1d", 64, 64, 1, dilation=2, spatial=1, c3x1=48, c1x3=56).at(16, 32)
    timer = make_timer(backend, detect_device("cpu"), "fp32", batch=1)
    sets = [op_class("nb1d").example_inputs(sig) for _ in range(2)]
    st = timer.time_module(build_op(sig.spec), sets, warmup=1, repeats=5)
    assert isinstance(st, TimingStats) and st.n >= 5 and 0 < st.median_ms < 1000
    # multi-input operator (the aggregation head takes the 1/2, 1/4 and 1/8 features)
    agg = OpSpec.make("aggregation", 16, 19, 1, c4=64, c8=128, mid=64).at(32, 64)
    st = timer.time_module(build_op(agg.spec), [op_class("aggregation").example_inputs(agg)], warmup=1, repeats=3)
    assert st.median_ms > 0


def test_onnxruntime_int8_timer_quantizes_each_operator():
    """``--precision int8``: the operator's graph in QDQ form, calibrated on its timing inputs; the
    identity baseline has nothing to quantize and is timed as it is."""
    timer = make_timer("onnxruntime", detect_device("cpu", threads=1), "int8")
    assert "QDQ" in timer.settings()["quantization"]
    sig = OpSpec.make("nb1d", 32, 32, 1, dilation=2, spatial=1, c3x1=32, c1x3=32).at(16, 32)
    sets = [op_class("nb1d").example_inputs(sig) for _ in range(2)]
    assert timer.time_module(build_op(sig.spec), sets, warmup=1, repeats=3).median_ms > 0
    ident = build_op(OpSpec.make("identity", 32, 32))
    assert timer.time_module(ident, sets, warmup=1, repeats=3).median_ms > 0


def test_ort_session_errors(tmp_path):
    from rtseg.backends.onnx_export import export_onnx
    from rtseg.backends.ort_session import make_session

    path = export_onnx(torch.nn.Conv2d(3, 4, 3), (torch.randn(1, 3, 8, 8),), tmp_path / "c.onnx")
    sess = make_session(path, threads=1)
    out = sess.run(None, {sess.get_inputs()[0].name: np.zeros((1, 3, 8, 8), np.float32)})[0]
    assert out.shape == (1, 4, 6, 6)
    assert make_session(path.read_bytes()).get_providers() == ["CPUExecutionProvider"]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(RtsegError, match="cannot load"):
        make_session(bad)
    with pytest.raises(RtsegError, match="not found"):
        make_session(tmp_path / "missing.onnx")
    with pytest.raises(RtsegError, match="unknown device"):
        make_session(path, device="tpu")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(MissingDependencyError, match="no CUDA execution provider"):
            make_session(path, device="cuda")


@keeps_torch_threads
def test_thread_clock_counts_cpu_time_of_one_thread():
    import time

    st = time_fn(lambda: time.sleep(0.003), repeats=3, warmup=0, device="thread")
    assert st.median_ms < 1.0  # sleeping is not CPU time
    assert time_fn(lambda: time.sleep(0.003), repeats=3, warmup=0).median_ms >= 2.9
    with pytest.raises(RtsegError, match="--threads 1"):
        make_timer("torch", detect_device("cpu", threads=2), clock="thread")
    with pytest.raises(RtsegError, match="unknown clock"):
        make_timer("torch", detect_device("cpu", threads=1), clock="sundial")
    timer = make_timer("onnxruntime", detect_device("cpu", threads=1), clock="thread")
    sig = OpSpec.make("db", 16, 64, 2).at(32, 64)
    assert timer.time_module(build_op(sig.spec), [op_class("db").example_inputs(sig)], 1, 3).median_ms > 0

"""Runners and load_runner: dispatch on the model file, same outputs across backends, clear refusals."""

import json

import numpy as np
import pytest
import torch

import rtseg
from rtseg.errors import MissingDependencyError, RtsegError
from rtseg.runtime import load_runner
from rtseg.backends.cuda_memory import BACKENDS, available_backends, choose_backend, open_cuda_memory
from rtseg.backends.device import device_name, device_slug
from rtseg.backends.tensorrt import check_engine_compat

HW = (64, 128)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions

    out = tmp_path_factory.mktemp("exp")
    return export_model("baseline1", ExportOptions(input_hw=HW, out_dir=out, simplify=False))


def _x(batch=1, hw=HW, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 3, *hw)).astype(np.float32)


def test_builtin_arch_runs_on_torch_and_onnxruntime_alike():
    t = load_runner("erfnet", input_hw=HW)
    o = load_runner("erfnet", backend="onnxruntime", input_hw=HW)
    assert t.info.backend == "torch" and o.info.backend == "onnxruntime"
    assert t.info.num_classes == o.info.num_classes == 19
    x = _x()
    a, b = t.infer(x), o.infer(x)
    assert a.shape == b.shape == (1, 19, *HW) and a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    lab = t.predict(x)
    assert lab.shape == (1, *HW) and lab.dtype == np.uint8
    assert t.info.extra["data_info"]["name"] == "cityscapes"  # 19 classes -> the Cityscapes label space
    stats = o.benchmark(warmup=1, iters=3)
    assert stats.n == 3 and stats.median_ms > 0


def test_onnx_files_load_with_their_sidecar(exported):
    r32 = load_runner(exported.onnx)
    r16 = load_runner(exported.onnx_fp16)
    assert r32.info.backend == "onnxruntime" and r32.info.precision == "fp32" and r16.info.precision == "fp16"
    assert r32.info.input_hw == HW and r32.info.extra["model"] == "baseline1"
    assert r32.info.extra["data_info"]["mean"] == [0.485, 0.456, 0.406]
    x = _x(seed=3)
    agree = (r32.predict(x) == r16.predict(x)).mean()
    assert agree > 0.99


def test_arch_json_and_checkpoint_sources(tmp_path):
    from rtseg.checkpoint import save_checkpoint
    from rtseg.data.synthetic import synthetic_info

    arch = rtseg.load_arch("baseline1").with_(num_classes=10, name="b10")
    p = arch.save(tmp_path / "b10.json")
    r = load_runner(p, input_hw=HW, batch=2)
    assert r.info.num_classes == 10 and r.info.batch == 2 and r.infer(_x(2)).shape == (2, 10, *HW)
    torch.manual_seed(1)
    model = rtseg.build_model(arch).eval()
    ckpt = save_checkpoint(tmp_path / "b10.pt", model, arch, synthetic_info(), input_hw=(32, 64))
    rc = load_runner(ckpt)
    assert rc.info.input_hw == (32, 64)  # the training size by default
    assert rc.info.extra["trained"] is True and rc.info.extra["data_info"]["name"] == "synthetic"
    x = _x(hw=(32, 64))
    with torch.no_grad():
        np.testing.assert_allclose(rc.infer(x), model(torch.from_numpy(x)).numpy(), atol=1e-5)
    ro = load_runner(ckpt, backend="ort", precision="fp16")
    assert ro.info.precision == "fp16" and (ro.predict(x) == rc.predict(x)).mean() > 0.99


def test_dynamic_onnx_needs_and_accepts_a_size(tmp_path):
    from rtseg.backends.onnx_export import export_onnx

    model = rtseg.build_model("baseline1").eval()
    p = export_onnx(model, (torch.zeros(1, 3, *HW),), tmp_path / "dyn.onnx",
                    dynamic_axes={"input": {0: "N", 2: "H", 3: "W"}, "logits": {0: "N", 2: "H", 3: "W"}})
    with pytest.raises(RtsegError, match="dynamic"):
        load_runner(p)  # no sidecar: the size must be given
    r = load_runner(p, input_hw=(32, 96), batch=3)
    assert r.infer(_x(3, (32, 96))).shape == (3, 19, 32, 96)


def test_wrong_input_shapes_and_backends_are_refused(exported, tmp_path):
    with pytest.raises(RtsegError, match="fixed input height of 64"):
        load_runner(exported.onnx, input_hw=(128, 128))
    r = load_runner(exported.onnx)
    with pytest.raises(RtsegError, match="does not match"):
        r.infer(_x(hw=(32, 64)))
    with pytest.raises(RtsegError, match="ONNX file; run it with --backend onnxruntime"):
        load_runner(exported.onnx, backend="torch")
    with pytest.raises(RtsegError, match="unknown backend"):
        load_runner("baseline1", backend="tflite")
    with pytest.raises(RtsegError, match="fp16 on the CPU"):
        load_runner("baseline1", precision="fp16", input_hw=HW)
    if not torch.cuda.is_available():
        with pytest.raises(RtsegError, match="no CUDA GPU"):
            load_runner("baseline1", device="cuda", input_hw=HW)
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"\x00" * 64)
    with pytest.raises(RtsegError, match="only on the tensorrt backend"):
        load_runner(eng, backend="onnxruntime")
    with pytest.raises(RtsegError, match="cannot tell what"):
        (tmp_path / "model.bin").write_bytes(b"x")
        load_runner(tmp_path / "model.bin")


def test_corrupt_onnx_and_sidecar_are_refused(exported, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_text("definitely not protobuf")
    with pytest.raises(RtsegError, match="cannot load"):
        load_runner(bad)
    copy = tmp_path / "model.onnx"
    copy.write_bytes(exported.onnx.read_bytes())
    (tmp_path / "model.json").write_text(json.dumps({"format": "rtseg.export", "schema_version": 99}))
    with pytest.raises(RtsegError, match="schema_version"):
        load_runner(copy)


def test_engine_compat_refuses_other_tensorrt_or_gpu(tmp_path):
    meta = {"artifacts": {"engine": {"tensorrt": "10.3.0", "compute_capability": "8.9", "gpu": "NVIDIA L4"}}}
    p = tmp_path / "m.engine"
    check_engine_compat(meta, "10.3.0", {"name": "NVIDIA L4", "compute_capability": "8.9"}, p)  # fine
    with pytest.raises(RtsegError, match="built with TensorRT 10.3.0 but this machine has TensorRT 11.1.0"):
        check_engine_compat(meta, "11.1.0", None, p)
    with pytest.raises(RtsegError, match="compute capability 8.9"):
        check_engine_compat(meta, "10.3.0", {"name": "NVIDIA H100", "compute_capability": "9.0"}, p)
    check_engine_compat(None, "11.1.0", None, p)  # a foreign engine without sidecar: TensorRT decides


def test_cuda_memory_adapter_selection():
    assert choose_backend(None, ["cuda-python", "pycuda"]) == "cuda-python"  # TensorRT's samples' choice first
    assert choose_backend(None, ["pycuda"]) == "pycuda"
    assert choose_backend("pycuda", ["cuda-python", "pycuda"]) == "pycuda"
    assert choose_backend("cuda_python", ["cuda-python"]) == "cuda-python"
    with pytest.raises(MissingDependencyError, match=r"pip install 'rtseg\[trt\]'"):
        choose_backend(None, [])
    with pytest.raises(MissingDependencyError, match="pycuda is not installed"):
        choose_backend("pycuda", ["cuda-python"])
    with pytest.raises(RtsegError, match="unknown CUDA memory backend"):
        choose_backend("cupy", BACKENDS)


def test_missing_device_memory_packages_name_the_extra(monkeypatch):
    if available_backends():
        pytest.skip("cuda-python or pycuda is installed here")
    monkeypatch.delenv("RTSEG_CUDA_MEMORY", raising=False)
    with pytest.raises(MissingDependencyError, match=r"neither is installed: pip install 'rtseg\[trt\]'"):
        open_cuda_memory()
    monkeypatch.setenv("RTSEG_CUDA_MEMORY", "pycuda")
    with pytest.raises(MissingDependencyError, match="pycuda"):
        open_cuda_memory()


def test_device_names():
    from rtseg.io import slugify
    from rtseg.backends.device import cpu_model

    assert device_slug("cpu") == slugify(cpu_model()) and "/" not in device_slug("cpu")
    assert "cores" in device_name("cpu")

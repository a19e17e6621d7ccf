"""TensorRT: the builder and runner need TensorRT and a GPU (skipped here with a reason); without
TensorRT every path that needs it fails with one clear message naming the trt extra."""

import importlib.util
import json

import numpy as np
import pytest

from rtseg.errors import MissingDependencyError

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
needs_no_trt = pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here: the missing-dependency path cannot be shown")


@needs_no_trt
def test_build_engine_without_tensorrt_names_the_extra(tmp_path):
    from rtseg.backends.tensorrt_build import build_engine

    with pytest.raises(MissingDependencyError, match=r"pip install 'rtseg\[trt\]'"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", fp16=True, workspace_gb=1, timing_cache=None)


@needs_no_trt
@pytest.mark.parametrize("args", [
    ("export", "baseline1", "--trt", "--input", "32x64"),
    ("export", "baseline1", "--profile", "trt-fp16"),
    ("bench", "baseline1", "--backend", "tensorrt", "--input", "32x64"),
])
def test_cli_without_tensorrt_is_one_line_naming_the_extra(cli, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    r = cli(*args)
    assert r.exit_code == 2
    assert "rtseg[trt]" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "engines").exists()  # refused before any work


@needs_no_trt
def test_engine_file_without_tensorrt(tmp_path):
    from rtseg.runtime import load_runner

    eng = tmp_path / "m.engine"
    eng.write_bytes(b"\x00" * 16)
    with pytest.raises(MissingDependencyError, match=r"rtseg\[trt\]"):
        load_runner(eng)


# -- with TensorRT (the user's GPU machine) ---------------------------------------------------------
def _gpu():
    pytest.importorskip("tensorrt", reason="TensorRT is not installable from the registries here; runs on a GPU machine with pip install 'rtseg[trt]'")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU")


def test_engine_round_trip_fp16_with_timing_cache(tmp_path):  # pragma: no cover - GPU machines only
    _gpu()
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions
    from rtseg.runtime import load_runner

    res = export_model("baseline1", ExportOptions(input_hw=(64, 128), trt=True, out_dir=tmp_path / "m"))
    assert res.engine.exists() and (tmp_path / "m" / "timing.cache").exists()
    meta = json.loads(res.metadata_path.read_text())
    eng = meta["artifacts"]["engine"]
    assert eng["fp16_mode"] in ("strongly-typed", "builder-flag") and eng["layer_precisions"].get("Half", 0) > 0
    assert meta["parity"]["engine"]["passed"]
    r = load_runner(res.engine)
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 128)).astype(np.float32)
    assert r.infer(x).shape == (1, 19, 64, 128)
    assert r.benchmark(warmup=2, iters=5).n == 5


def test_engine_refuses_wrong_shape_and_corrupt_file(tmp_path):  # pragma: no cover - GPU machines only
    _gpu()
    from rtseg.errors import RtsegError
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions
    from rtseg.runtime import load_runner

    res = export_model("baseline1", ExportOptions(input_hw=(64, 128), trt=True, out_dir=tmp_path / "m"))
    with pytest.raises(RtsegError, match="was built for input"):
        load_runner(res.engine, input_hw=(128, 128))
    bad = tmp_path / "bad.engine"
    bad.write_bytes(b"garbage" * 100)
    with pytest.raises(RtsegError, match="cannot load"):
        load_runner(bad)


def test_dynamic_engine_profile(tmp_path):  # pragma: no cover - GPU machines only
    _gpu()
    from rtseg.errors import RtsegError
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions
    from rtseg.runtime import load_runner

    res = export_model("baseline1", ExportOptions(input_hw=(64, 128), trt=True, dynamic=True, out_dir=tmp_path / "d"))
    r = load_runner(res.engine, input_hw=(96, 192))
    assert r.infer(np.zeros((1, 3, 96, 192), np.float32)).shape == (1, 19, 96, 192)
    with pytest.raises(RtsegError, match="optimization profile"):
        load_runner(res.engine, input_hw=(512, 1024))


def test_precision_plan_for_tensorrt_10_and_11():
    from rtseg.backends.tensorrt_build import precision_plan

    # INT8 is explicit quantization from the QDQ ONNX: TensorRT 10 sets INT8 (+FP16 for the float layers), 11 has no flags
    assert precision_plan(10, False, True, int8=True) == {"convert_fp16": False, "strongly_typed": False, "flags": ["INT8", "FP16"],
                                                          "mode": "int8 explicit (QDQ), builder flags INT8 + FP16"}
    assert precision_plan(11, False, True, int8=True)["flags"] == [] and precision_plan(11, False, True, int8=True)["strongly_typed"]
    # FP16 as before: 11 converts an FP32 ONNX and types strongly; 10 uses the FP16 flag for an FP32 ONNX
    assert precision_plan(11, False, True) == {"convert_fp16": True, "strongly_typed": True, "flags": [], "mode": "strongly-typed"}
    assert precision_plan(10, False, True)["flags"] == ["FP16"] and precision_plan(10, True, True)["mode"] == "strongly-typed"
    assert precision_plan(10, False, False) == {"convert_fp16": False, "strongly_typed": False, "flags": [], "mode": "fp32"}


def test_int8_engine_from_the_qdq_model(tmp_path):  # pragma: no cover - GPU machines only
    _gpu()
    from rtseg.backends.tensorrt_build import build_engine
    from rtseg.errors import RtsegError
    from rtseg.export.int8 import Int8Options
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions
    from rtseg.runtime import load_runner

    res = export_model("baseline1", ExportOptions(input_hw=(64, 128), trt=True, int8=True, out_dir=tmp_path / "m",
                                                  int8_options=Int8Options(calib_images=4, val_images=2, max_drop=100.0)))
    meta = json.loads(res.metadata_path.read_text())
    eng = meta["artifacts"]["engine_int8"]
    assert res.engine_int8.name == "model-int8.engine" and eng["precision"] == "int8" and eng["layer_precisions"].get("Int8", 0) > 0
    assert eng["parsed_onnx"] == "model-int8.trt.onnx" and meta["artifacts"]["onnx_int8_trt"]["activations"].startswith("int8")
    assert eng["gate"]["passed"]
    r = load_runner(res.engine_int8)
    assert r.info.precision == "int8"
    assert r.infer(np.zeros((1, 3, 64, 128), np.float32)).shape == (1, 19, 64, 128)
    with pytest.raises(RtsegError, match="no QuantizeLinear/DequantizeLinear"):
        build_engine(res.onnx, tmp_path / "x.engine", int8=True)

"""INT8 export: a QDQ model calibrated on the dataset's images, the sidecar that describes it, the mIoU
gate that refuses it in one line, and bench/runners that run it like any other ONNX file."""

import json
import shutil

import numpy as np
import onnx
import pytest

from rtseg.errors import RtsegError
from rtseg.backends.onnx_int8 import float_boundary_nodes
from rtseg.export.int8 import INT8_ARTIFACT, Int8GateError, Int8Options, miou_points
from rtseg.export.pipeline import export_model
from rtseg.export.profiles import ExportOptions, load_profile

HW = (64, 128)


def _options(out, **int8) -> ExportOptions:
    i8 = Int8Options(calib_images=2, val_images=2, **int8)
    return ExportOptions(input_hw=HW, fp16=False, int8=True, simplify=False, out_dir=out, int8_options=i8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_model("baseline1", _options(tmp_path_factory.mktemp("int8")))


def test_int8_export_writes_a_qdq_model_and_describes_it(exported):
    path = exported.onnx_int8
    assert path is not None and path.name == INT8_ARTIFACT and path.exists()
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    art = json.loads(exported.metadata_path.read_text())["artifacts"]["onnx_int8"]
    assert art["precision"] == "int8" and art["format"].startswith("QDQ") and art["per_channel"] is True
    assert art["calibration"] == {"data": "synthetic", "chosen_by": "default (no training data recorded)", "split": "train",
                                  "images": 2, "seed": 0, "method": "percentile"}
    gate = art["gate"]
    assert gate["split"] == "val" and gate["images"] == 2 and gate["passed"] is True and gate["max_drop"] == 1.0
    assert 0.0 <= gate["agreement"] <= 1.0 and gate["drop"] == pytest.approx(gate["miou_fp32"] - gate["miou_int8"])
    # the layers a refused export suggests keeping in float: the first conv, the classifier, the upsampling
    assert art["float_boundary_nodes"][0] == "/db1/conv/Conv" and "/upsample/Resize" in art["float_boundary_nodes"]
    assert exported.to_dict()["int8_gate"]["passed"] is True


def test_runners_know_an_int8_file_from_its_sidecar_or_its_nodes(exported, tmp_path):
    from rtseg.backends.onnx_int8 import onnx_precision
    from rtseg.runtime import load_runner

    assert onnx_precision(exported.onnx_int8) == "int8" and onnx_precision(exported.onnx) == "fp32"
    foreign = tmp_path / "renamed.onnx"  # no sidecar: the QDQ nodes say it
    shutil.copy(exported.onnx_int8, foreign)
    assert onnx_precision(foreign) == "int8" and onnx_precision(foreign.read_bytes()) == "int8"
    runner = load_runner(foreign)
    assert runner.info.precision == "int8" and runner.info.backend == "onnxruntime"
    x = np.random.default_rng(0).standard_normal((1, 3, *HW)).astype("float32")
    assert runner.infer(x).shape == (1, 19, *HW)


def test_bench_puts_fp32_and_int8_side_by_side(exported, cli):
    r = cli("bench", exported.onnx, exported.onnx_int8, "--input", "x".join(map(str, HW)), "--warmup", "1", "--iters", "2",
            "--threads", "1", "--json")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)["results"]
    assert [(x["backend"], x["precision"]) for x in rows] == [("onnxruntime", "fp32"), ("onnxruntime", "int8")]
    # two files of one model: the file names tell the rows apart
    assert [x["model"] for x in rows] == ["baseline1 (model.onnx)", f"baseline1 ({INT8_ARTIFACT})"]


def test_the_gate_refuses_in_one_line_and_removes_the_file(tmp_path):
    out = tmp_path / "refused"
    with pytest.raises(Int8GateError) as err:
        export_model("baseline1", _options(out, max_drop=-100.0))  # no model can gain 100 mIoU points
    msg = str(err.value)
    assert "--int8-max-drop -100" in msg and "--calib-images" in msg and "--int8-keep-float /db1/conv/Conv," in msg
    assert "\n" not in msg and not (out / INT8_ARTIFACT).exists()
    art = json.loads((out / "model.json").read_text())["artifacts"]["onnx_int8"]
    assert art["file"] is None and art["gate"]["passed"] is False
    # --no-check measures the same figures and keeps the file
    kept = export_model("baseline1", _options(tmp_path / "kept", max_drop=-100.0).with_(check=False))
    assert kept.onnx_int8.exists() and kept.int8.passed is False


def test_cli_int8_export_and_its_refusal(cli, tmp_path):
    common = ("export", "baseline1", "--input", "64x128", "--fp32", "--no-simplify", "--int8", "--calib", "synthetic",
              "--calib-images", "2", "--int8-val-images", "2")
    out = tmp_path / "ok"
    r = cli(*common, "--out", out, "--per-tensor", "--calib-method", "minmax",
            "--int8-keep-float", "/db1/conv/Conv,/upsample/Resize", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["onnx_int8"].endswith(INT8_ARTIFACT) and "INT8 gate" in r.stderr
    art = json.loads((out / "model.json").read_text())["artifacts"]["onnx_int8"]
    assert art["per_channel"] is False and art["calibration"]["method"] == "minmax" and art["calibration"]["chosen_by"] == "--calib"
    assert art["keep_float"] == ["/db1/conv/Conv", "/upsample/Resize"]
    kept = {n.name: n for n in onnx.load(str(out / INT8_ARTIFACT)).graph.node}
    assert kept["/db1/conv/Conv"].input[0] == "input"  # read straight from the float input, not a DequantizeLinear

    r = cli(*common, "--out", tmp_path / "no", "--int8-max-drop", "-100")
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert r.exit_code != 0 and len(errors) == 1 and "Traceback" not in r.output and "--int8-keep-float" in errors[0]


@pytest.mark.parametrize("args, needle", [
    (("--calib-method", "magic"), "unknown calibration method"),
    (("--calib", "imagenet"), "unknown dataset"),
    (("--int8-keep-float", "nope"), "no node named 'nope'"),
])
def test_bad_int8_options_are_one_line_errors(cli, tmp_path, args, needle):
    r = cli("export", "baseline1", "--input", "32x64", "--fp32", "--no-simplify", "--int8", "--calib-images", "1",
            "--int8-val-images", "1", "--out", tmp_path, *args)
    assert r.exit_code != 0 and needle in r.output and "Traceback" not in r.output


def test_tensorrt_twin_has_symmetric_int8_activations(exported, tmp_path):
    """TensorRT's explicit quantization has no zero point: the twin's activations are int8 around 0."""
    from onnx import numpy_helper

    from rtseg.backends.metadata import sidecar_path
    from rtseg.backends.onnx_int8 import quantize_onnx
    from rtseg.export.int8 import INT8_TRT_ONNX, load_split

    calib = load_split("synthetic", "train", HW, 1)
    path, _ = quantize_onnx(exported.onnx, tmp_path / INT8_TRT_ONNX, calib.inputs, symmetric_activations=True)
    g = onnx.load(str(path)).graph
    zero_points = {t.name: numpy_helper.to_array(t) for t in g.initializer if t.name.endswith("_zero_point")}
    acts = [n.input[2] for n in g.node if n.op_type == "QuantizeLinear"]
    assert acts and all(zero_points[z].dtype == np.int8 and not zero_points[z].any() for z in acts)
    assert sidecar_path(path).name == "model.json"


def test_int8_profile_and_helpers():
    opts = load_profile("onnx-int8")
    assert opts.int8 and not opts.fp16 and opts.int8_options.method == "percentile" and opts.int8_options.max_drop == 1.0
    assert miou_points(np.array([[3, 1], [0, 4]])) == pytest.approx((3 / 4 + 4 / 5) / 2 * 100)
    m = onnx.helper.make_model(onnx.helper.make_graph(
        [onnx.helper.make_node("Conv", ["x", "w"], ["a"], name="first"), onnx.helper.make_node("Relu", ["a"], ["b"], name="r"),
         onnx.helper.make_node("Conv", ["b", "w2"], ["c"], name="last"), onnx.helper.make_node("Sigmoid", ["c"], ["y"], name="s")],
        "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)]))
    assert float_boundary_nodes(m) == ["first", "last"]
    with pytest.raises(RtsegError, match="calibration method"):
        Int8Options(method="kl").check()

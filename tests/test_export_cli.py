"""``rtseg export`` end to end through the CLI: files, --json, profiles, a failing gate, bad input."""

import json

import pytest
import torch

import rtseg


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_export_json_writes_onnx_fp16_and_sidecar(cli, tmp_path):
    out = tmp_path / "b1"
    r = cli("export", "baseline1", "--input", "64x128", "--out", out, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["passed"] is True and d["exporter"] == "torchscript" and d["opset"] == 17
    assert {p["name"] for p in d["parity"]} == {"onnx fp32", "onnx fp16"}
    for key in ("onnx", "onnx_fp16", "metadata"):
        assert (out / d[key].split("/")[-1]).exists()
    assert d["engine"] is None
    assert all((out / f).stat().st_mode & 0o044 for f in ("model.onnx", "model.fp16.onnx", "model.json"))  # shareable
    meta = json.loads((out / "model.json").read_text())
    assert meta["input"]["shape"] == [1, 3, 64, 128] and meta["input"]["layout"] == "NCHW"
    assert meta["parity"]["onnx_fp32"]["agreement"] >= 0.9999
    assert "agreement" in r.stderr and "model.fp16.onnx" in r.stderr  # the rich tables


def test_default_output_folder_is_engines_device_model(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli("export", "erfnet", "--input", "64x128", "--fp32", "--no-simplify")
    assert r.exit_code == 0, r.output
    folders = list((tmp_path / "engines").glob("*/erfnet"))
    assert len(folders) == 1
    assert (folders[0] / "model.onnx").exists() and not (folders[0] / "model.fp16.onnx").exists()
    stale = folders[0] / "model.engine"
    stale.write_bytes(b"an engine from an earlier export")
    r = cli("export", "erfnet", "--input", "32x64", "--fp32", "--no-simplify")
    assert r.exit_code == 0 and not stale.exists()  # the sidecar describes every file in the folder


def test_profile_file_and_overrides(cli, tmp_path):
    prof = tmp_path / "small.json"
    prof.write_text(json.dumps({"format": "rtseg.export-profile", "schema_version": 1, "precision": "fp32",
                                "input": "32x64", "dynamic": True, "outputs": ["onnx"]}))
    r = cli("export", "baseline1", "--profile", prof, "--out", tmp_path / "o", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["onnx_fp16"] is None
    assert any(p["name"].startswith("onnx fp32 @") for p in d["parity"])  # dynamic: checked at a second size
    meta = json.loads((tmp_path / "o" / "model.json").read_text())
    assert meta["input"]["shape"] == ["N", 3, "H", "W"] and meta["input"]["export_hw"] == [32, 64]
    r = cli("export", "baseline1", "--profile", prof, "--input", "64x64", "--fp16", "--static", "--out", tmp_path / "p", "--json")
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "p" / "model.json").read_text())
    assert meta["input"]["shape"] == [1, 3, 64, 64] and "onnx_fp16" in meta["artifacts"]


def test_shipped_profiles_load_from_any_directory(tmp_path, monkeypatch):
    from rtseg.export.profiles import ExportOptions, load_profile, profile_names

    monkeypatch.chdir(tmp_path)  # no ./export here: the profiles come from the package, as in an installed wheel
    names = profile_names()
    assert {"default", "trt-fp16", "trt-fp16-dynamic", "onnx-fp32", "cityscapes-full-fp16"} <= set(names)
    assert load_profile("trt-fp16").trt and load_profile("trt-fp16-dynamic").dynamic_max_hw == (1024, 2048)
    assert load_profile("default").input_hw is None  # the checkpoint's own training size
    # one definition of "default": the shipped default.json states exactly ExportOptions' defaults
    assert load_profile("default") == ExportOptions(profile="default") == load_profile()


def test_a_profile_in_the_working_directory_overrides_the_shipped_one(tmp_path, monkeypatch):
    from rtseg.export.profiles import load_profile, profile_names

    monkeypatch.chdir(tmp_path)
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "trt-fp16.json").write_text(json.dumps(
        {"format": "rtseg.export-profile", "schema_version": 1, "precision": "fp32", "outputs": ["onnx"]}))
    (tmp_path / "export" / "team.json").write_text(json.dumps({"format": "rtseg.export-profile", "schema_version": 1}))
    assert not load_profile("trt-fp16").trt and not load_profile("trt-fp16").fp16
    assert {"team", "trt-fp16", "default"} <= set(profile_names())
    assert load_profile("team").fp16 and load_profile("team").profile == "team"


def test_failing_gate_prints_the_figures_and_exits_2(cli, tmp_path):
    from rtseg.checkpoint import save_checkpoint
    from rtseg.data.synthetic import synthetic_info

    arch = rtseg.load_arch("baseline1").with_(num_classes=10, name="hot")
    model = rtseg.build_model(arch)
    with torch.no_grad():
        model.head.conv.weight.mul_(1e5)  # logits beyond FP16's range
    ckpt = save_checkpoint(tmp_path / "hot.pt", model, arch, synthetic_info(), input_hw=(32, 64))
    r = cli("export", ckpt, "--out", tmp_path / "o")
    assert r.exit_code == 2
    assert "FAIL" in r.output and "agreement" in r.output  # the parity table
    err_lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert len(err_lines) == 1 and "FP16" in err_lines[0] and "Traceback" not in r.output
    r = cli("export", ckpt, "--out", tmp_path / "o2", "--no-check", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["passed"] is False


@pytest.mark.parametrize("args,needle", [
    (("export", "nonexistent-arch"), "neither a model file"),
    (("export", "missing.pt"), "not found"),
    (("export", "baseline1", "--input", "60x100"), "multiple of 16"),
    (("export", "baseline1", "--input", "big"), "bad input size"),
    (("export", "baseline1", "--profile", "nope"), "unknown export profile"),
    (("export", "baseline1", "--exporter", "tf", "--input", "32x64"), "unknown ONNX exporter"),
])
def test_bad_arguments_are_one_line_errors(cli, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    r = cli(*args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output

"""``rtseg doctor``: the checks on this machine, a torch-free run of them, and ``--run`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rtseg.doctor import STATUSES, collect
from rtseg.doctor_run import RunConfig, make_plan, run_doctor, space_entries

ROOT = Path(__file__).resolve().parents[1]


def test_doctor_json_lists_every_component_with_its_fix(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the engines/ folder is looked up relative to the working directory
    r = cli("doctor", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["format"] == "rtseg.doctor" and d["ok"] is True
    rows = {row["component"]: row for row in d["rows"]}
    for name in ("Python", "numpy", "torch", "onnx", "onnxruntime", "onnxslim", "fvcore", "TensorRT", "cuda-python / pycuda",
                 "OpenCV", "OpenCV window", "video codecs", "camera backends", "engines/ folder"):
        assert name in rows, name
    assert all(row["status"] in STATUSES for row in d["rows"])
    assert rows["torch"]["version"] and rows["onnxruntime"]["status"] == "ok"
    assert "CPUExecutionProvider" in rows["onnxruntime"]["detail"]
    for row in d["rows"]:  # anything not ok says how to fix it and what it costs meanwhile
        if row["status"] != "ok":
            assert row["fix"], row
    trt = rows["TensorRT"]
    try:
        import tensorrt  # noqa: F401
    except Exception:
        assert trt["status"] == "missing" and "rtseg[trt]" in trt["fix"] and "export --trt" in trt["disables"]
    # the codecs row names what OpenCV really wrote and read back here
    assert rows["video codecs"]["status"] == "ok" and (".avi MJPG" in rows["video codecs"]["detail"] or "mp4v" in rows["video codecs"]["detail"])


def test_doctor_lists_what_the_engines_folder_holds(tmp_path):
    from rtseg.backends.device import device_slug

    mine = tmp_path / "engines" / device_slug("cpu")
    mine.mkdir(parents=True)
    (mine / "lut-ssr-torch-fp32-64x128-1t.json").write_text("{}")
    other = tmp_path / "engines" / "nvidia-h100" / "baseline1"
    other.mkdir(parents=True)
    (other / "model.engine").write_bytes(b"x")
    (other / "model.onnx").write_bytes(b"x")
    row = next(r for r in collect(tmp_path / "engines").rows if r.component == "engines/ folder")
    assert row.status == "ok"
    assert f"{mine.name} (this machine): 1 LUT(s) lut-ssr-torch-fp32-64x128-1t.json, 0 engine(s)" in row.detail
    assert "nvidia-h100: 0 LUT(s), 1 engine(s), 1 ONNX" in row.detail


def test_doctor_runs_without_torch(tmp_path):
    """A deploy machine may have no torch: the doctor says so in a row instead of failing."""
    code = textwrap.dedent("""
        import importlib.abc, json, sys
        class NoTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, NoTorch())
        from rtseg.doctor import collect
        r = collect()
        print(json.dumps({"ok": r.ok, "device": r.device, "rows": {x.component: x.to_dict() for x in r.rows},
                          "torch_loaded": "torch" in sys.modules}))
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout.strip().splitlines()[-1])
    torch_row = d["rows"]["torch"]
    assert torch_row["status"] == "missing" and "pip install torch" in torch_row["fix"] and "train" in torch_row["disables"]
    assert d["ok"] is True and d["device"] == "cpu"  # onnxruntime can still run models here
    assert d["torch_loaded"] is False


def test_plan_scales_with_the_budget_and_refuses_bad_options():
    from rtseg.errors import RtsegError

    small, big = make_plan(RunConfig(minutes=2), False), make_plan(RunConfig(minutes=16), False)
    assert small.device == "cpu" and small.precision == "fp32" and small.input_hw == (64, 128) and small.threads == 1
    assert big.validate_repeats > small.validate_repeats and big.bench_iters > small.bench_iters
    with pytest.raises(RtsegError, match="torch sees no CUDA device"):
        make_plan(RunConfig(device="cuda"), False)
    with pytest.raises(RtsegError, match="multiple of 16|multiples of 16"):
        make_plan(RunConfig(input_hw=(30, 64)), False)
    assert space_entries(64, 128) == space_entries(512, 1024) == 1631  # 1627 NB-1D and fixed entries, 4 STDC layers


def test_a_spent_budget_skips_every_step_and_says_so(tmp_path):
    out = tmp_path / "doc"
    state = run_doctor(RunConfig(out=out, minutes=1e-9, input_hw=(32, 64)), say=lambda m: None, checks=collect())
    assert state["steps"] and all(s["status"] == "skipped" for s in state["steps"])
    assert "budget" in state["steps"][0]["error"]  # the rest: the budget, or a part this machine lacks (a GPU)
    assert state["failed"] == []
    assert json.loads((out / "doctor.json").read_text())["steps"][0]["status"] == "skipped"


@pytest.mark.slow
def test_a_failing_step_is_a_row_and_the_run_goes_on(tmp_path):
    out = tmp_path / "doc"
    (out / "lut.json").mkdir(parents=True)  # a folder where the LUT file must go: the profile step fails
    state = run_doctor(RunConfig(out=out, minutes=1.0, input_hw=(32, 64), overwrite=True), say=lambda m: None, checks=collect())
    steps = {s["name"]: s for s in state["steps"]}
    assert steps["profile"]["status"] == "failed" and steps["profile"]["error"]
    assert steps["profile"]["where"].startswith("rtseg/")
    assert steps["lut validate"]["status"] == "skipped"  # it needs the LUT
    assert any(s["status"] == "ok" for s in state["steps"][2:])  # the steps that do not need it still ran
    assert state["failed"] == ["profile"]
    md = (out / "doctor.md").read_text()
    assert "| profile | failed |" in md and "## Checks" in md
    assert json.loads((out / "doctor.json").read_text())["steps"][0]["status"] == "failed"


@pytest.mark.slow
def test_doctor_run_on_the_cpu_at_a_tiny_input(cli, tmp_path):
    out = tmp_path / "doc"
    r = cli("doctor", "--run", "--out", out, "--minutes", "1", "--input", "32x64", "--json")
    d = json.loads(r.stdout)
    steps = {s["name"]: s for s in d["steps"]}
    assert r.exit_code == 0, [(s["name"], s["error"]) for s in d["steps"] if s["status"] == "failed"]
    assert d["plan"]["device"] == "cpu" and d["plan"]["input_hw"] == [32, 64]
    prof = steps["profile"]["summary"]
    assert steps["profile"]["status"] == "ok" and prof["entries"] > 10 and prof["space_entries"] == 1631
    assert prof["whole_space_s_extrapolated"] > 0
    val = steps["lut validate"]["summary"]
    assert val["samples"] == 2 and val["mape"] >= 0 and len(val["rows"]) == 2
    assert steps["export"]["status"] == "ok" and all(p["passed"] for p in steps["export"]["summary"]["parity"])
    assert steps["bench torch eager"]["summary"]["median_ms"] > 0
    assert steps["bench onnxruntime CPUExecutionProvider"]["summary"]["median_ms"] > 0
    for name in ("bench torch CUDA graphs", "bench onnxruntime CUDAExecutionProvider", "export --trt", "bench TensorRT engine"):
        assert steps[name]["status"] == "skipped" and steps[name]["error"], name
    demo = steps["demo"]["summary"]
    assert demo["backend"] == "onnxruntime" and demo["output"]["frames_read_back"] == demo["frames"] > 0
    assert (out / "doctor.md").is_file() and (out / d["steps"][-1]["summary"]["output"]["path"]).name.startswith("demo")

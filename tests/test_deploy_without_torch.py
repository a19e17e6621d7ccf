"""The deploy path runs where PyTorch is not installed (``pip install 'rtseg[deploy]'``).

Each check runs the real CLI in a fresh interpreter in which the packages of the ``torch`` extra
cannot be imported (a ``sys.meta_path`` finder raises ModuleNotFoundError for them, exactly what a
missing package raises), and asserts that none of them was imported. The ONNX files are exported
first, with PyTorch, in this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rtseg

#: The top-level modules the ``torch`` extra installs (pyproject.toml); the deploy path needs none.
TORCH_EXTRA = ("torch", "torchvision", "fvcore", "onnxslim", "onnxscript", "matplotlib")

_PRELUDE = f"""
import json, sys
BLOCKED = {TORCH_EXTRA!r}

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""

_RUN_CLI = _PRELUDE + """
import rtseg.cli
sys.argv = ["rtseg", *json.loads(sys.argv[1])]
try:
    rtseg.cli.main()
    code = 0
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
print("IMPORTED=" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)), file=sys.stderr)
sys.exit(code)
"""


def _env() -> dict[str, str]:
    src = str(Path(rtseg.__file__).resolve().parents[1])  # the rtseg under test, installed or not
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")


def rtseg_without_torch(*args: object, timeout: float = 120) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run ``rtseg ARGS`` with the torch extra unimportable; returns the process and what it imported of it."""
    proc = subprocess.run([sys.executable, "-c", _RUN_CLI, json.dumps([str(a) for a in args])],
                          capture_output=True, text=True, timeout=timeout, env=_env())
    marker = [line for line in proc.stderr.splitlines() if line.startswith("IMPORTED=")]
    assert marker, proc.stderr[-3000:]
    return proc, json.loads(marker[-1][len("IMPORTED="):])


def test_importing_the_deploy_modules_imports_no_torch() -> None:
    code = ("import sys, rtseg, rtseg.cli, rtseg.runtime, rtseg.runtime.bench, rtseg.backends.ort, "
            "rtseg.backends.tensorrt, rtseg.video, rtseg.data.synthetic; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {TORCH_EXTRA!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env(), check=True)
    assert out.stdout.strip() == "[]"  # torch is installed here: nothing imported it


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("IMPORTED=") and line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[-1].startswith("error:"), proc.stderr[-3000:]
    return lines[-1]


def test_cli_without_torch(tmp_path: Path) -> None:
    proc, imported = rtseg_without_torch("--help")
    assert proc.returncode == 0 and "demo" in proc.stdout and imported == []
    # a command that needs PyTorch names the extra that installs it, in one line, exit 2
    proc, _ = rtseg_without_torch("demo", "--model", "baseline1", "--frames", "1", "--no-show")
    assert "rtseg[all]" in _one_error_line(proc)
    if importlib.util.find_spec("tensorrt") is not None:  # pragma: no cover - a GPU machine
        return
    # an engine goes as far as importing TensorRT (not installed here) without touching torch
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not read before TensorRT is imported")
    proc, imported = rtseg_without_torch("demo", "--model", engine, "--frames", "1", "--no-show")
    assert "rtseg[trt]" in _one_error_line(proc) and imported == []


@pytest.mark.slow
def test_demo_and_bench_on_exported_onnx_without_torch(cli, tmp_path: Path) -> None:
    out = tmp_path / "b1"
    r = cli("export", "baseline1", "--input", "64x128", "--out", out, "--no-simplify", "--json")
    assert r.exit_code == 0, r.output
    onnx32, onnx16 = out / "model.onnx", out / "model.fp16.onnx"
    assert onnx32.exists() and onnx16.exists()

    video = tmp_path / "street.mp4"
    proc, imported = rtseg_without_torch("demo", "--model", onnx32, "--source", "synthetic", "--frames", "6", "--no-show",
                                         "--save", video, "--threads", "1", "--warmup", "1", "--baseline", "2", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert imported == []
    rec = json.loads(proc.stdout)
    assert rec["frames"] == 6 and rec["backend"] == "onnxruntime" and rec["output"]["frames_read_back"] == 6
    assert video.stat().st_size > 0

    proc, imported = rtseg_without_torch("bench", onnx32, onnx16, "--backend", "onnxruntime", "--input", "64x128",
                                         "--warmup", "1", "--iters", "3", "--threads", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert imported == []
    rep = json.loads(proc.stdout)
    assert [(r["backend"], r["precision"]) for r in rep["results"]] == [("onnxruntime", "fp32"), ("onnxruntime", "fp16")]
    assert all(r["median_ms"] > 0 for r in rep["results"])


def test_int8_onnx_runs_without_torch(tmp_path: Path) -> None:
    from rtseg.export.int8 import Int8Options
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions

    res = export_model("baseline1", ExportOptions(input_hw=(64, 128), fp16=False, int8=True, simplify=False, out_dir=tmp_path / "b1",
                                                  int8_options=Int8Options(calib_images=1, val_images=1)))
    proc, imported = rtseg_without_torch("bench", res.onnx, res.onnx_int8, "--input", "64x128", "--warmup", "1", "--iters", "2",
                                         "--threads", "1", "--json")
    assert proc.returncode == 0 and imported == [], proc.stderr[-3000:]
    assert [r["precision"] for r in json.loads(proc.stdout)["results"]] == ["fp32", "int8"]
    proc, imported = rtseg_without_torch("demo", "--model", res.onnx_int8, "--source", "synthetic", "--frames", "2", "--no-show",
                                         "--threads", "1", "--warmup", "1", "--json")
    assert proc.returncode == 0 and imported == [], proc.stderr[-3000:]
    assert json.loads(proc.stdout)["backend"] == "onnxruntime"

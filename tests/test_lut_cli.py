"""The latency commands end to end through the CLI: profile-ops, lut show, lut validate, arch show --lut."""

from __future__ import annotations

import importlib.util
import json

import pytest
from typer.testing import CliRunner

from rtseg.cli import app

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.fixture(scope="module")
def full_lut(tmp_path_factory):
    """The whole ssr space at 64x128 (classifier head), one timed run per operator: fast, not precise."""
    out = tmp_path_factory.mktemp("cli") / "lut.json"
    r = CliRunner().invoke(app, ["profile-ops", "--space", "ssr", "--input", "64x128", "--backend", "torch", "--device", "cpu",
                                 "--precision", "fp32", "--threads", "1", "--warmup", "0", "--repeats", "1", "--min-time", "0",
                                 "--method", "isolated", "--head", "classifier", "--no-recheck", "--calibration-archs", "2",
                                 "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    return out, json.loads(r.stdout)


@pytest.mark.slow
def test_profile_ops_writes_a_complete_lut(full_lut):
    out, summary = full_lut
    assert summary["complete"] and summary["entries"] == summary["expected_entries"] == 1629  # 2 x 10 x 9 x 9 NB-1D blocks + 4 STDC layers + 5 fixed
    assert summary["skeleton_measured"] and summary["provenance"]["device"]["threads"] == 1
    assert "recheck" not in summary["provenance"]  # --no-recheck
    cal = summary["calibration"] or summary["calibration_rejected"]  # one timed run per entry may be far off
    assert cal["archs"] == 2 and cal["scale"] > 0 and "rows" not in cal
    doc = json.loads(out.read_text())
    assert doc["provenance"]["input"] == [64, 128] and len(doc["entries"]) == 1629


@pytest.mark.slow
def test_lut_show(cli, full_lut):
    out, _ = full_lut
    r = cli("lut", "show", out, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["entries"] == 1629 and len(d["fastest"]) == 5 and len(d["slowest"]) == 5
    assert d["fastest"][0]["median_ms"] <= d["slowest"][0]["median_ms"] and d["profiling_s"] > 0
    r = cli("lut", "show", out)
    assert r.exit_code == 0 and "fastest operators" in r.output and "threads" in r.output and "layer calibration" in r.output
    assert "speed reference" in r.output and d["speed"]["base_ms"] > 0 and d["speed"]["p10"] <= 1.0 <= d["speed"]["p90"]


@pytest.mark.slow
def test_lut_validate_json_and_plot(cli, full_lut, tmp_path):
    out, _ = full_lut
    png = tmp_path / "v.png"
    r = cli("lut", "validate", out, "--samples", "3", "--seed", "1", "--warmup", "1", "--repeats", "2", "--rounds", "1",
            "--plot", png, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["samples"] == 3 and len(d["rows"]) == 3
    for key in ("mape", "within_10pct", "kendall_tau"):
        assert isinstance(d[key], float)
    assert 0 <= d["within_10pct"] <= 1 and d["mape"] >= 0
    assert d["headline"] in ("corrected", "raw") and d["speed_corrected"] == (d["headline"] == "corrected")
    assert {"mape", "within_10pct", "kendall_tau", "mean_error"} <= set(d["uncorrected"]) & set(d["corrected"])
    assert all(r["predicted_ms"] == pytest.approx(r["predicted_at_base_ms"] * r["speed"]) for r in d["rows"])
    assert png.exists() and png.stat().st_size > 1000


@pytest.mark.slow
def test_arch_show_with_lut(cli, full_lut):
    out, _ = full_lut
    r = cli("arch", "show", "baseline1", "--input", "64x128", "--lut", out, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["predicted_latency_ms"] > 0 and d["lut"] == str(out)
    from rtseg.spaces import load_arch
    from rtseg.latency.lut import load_lut

    assert d["predicted_latency_ms"] == pytest.approx(load_lut(out).predict(load_arch("baseline1")).total_ms)
    r = cli("arch", "show", "baseline1", "--input", "64x128", "--lut", out)
    assert r.exit_code == 0 and "predicted latency" in r.output
    # a LUT of another input size is refused in one line
    r = cli("arch", "show", "baseline1", "--input", "128x256", "--lut", out)
    assert r.exit_code == 2 and r.output.strip().startswith("error:") and "64x128" in r.output and "Traceback" not in r.output
    r = cli("arch", "show", "baseline1", "--input", "64x128", "--classes", "7", "--lut", out)
    assert r.exit_code == 2 and "classes" in r.output


@pytest.mark.slow
def test_profile_ops_refuses_a_mismatched_existing_lut(cli, full_lut):
    out, _ = full_lut
    r = cli("profile-ops", "--input", "64x128", "--threads", "1", "--warmup", "3", "--head", "classifier", "--out", out)
    assert r.exit_code == 2 and "other settings" in r.output and "--force" in r.output


def test_cli_user_errors_are_one_line(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2")
    cases = [
        ("lut", "show", tmp_path / "missing.json"),
        ("lut", "show", bad),
        ("lut", "validate", bad),
        ("profile-ops", "--input", "60x100", "--out", tmp_path / "x.json"),
        ("profile-ops", "--method", "fancy", "--out", tmp_path / "x.json"),
        ("profile-ops", "--precision", "fp16", "--device", "cpu", "--out", tmp_path / "x.json"),
        ("arch", "show", "baseline1", "--lut", bad),
    ]
    for args in cases:
        r = cli(*args)
        assert r.exit_code == 2, (args, r.output)
        assert r.output.strip().startswith("error:") and "Traceback" not in r.output, (args, r.output)
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_cli_tensorrt_missing_names_the_extra(cli, tmp_path):
    r = cli("profile-ops", "--backend", "tensorrt", "--device", "cuda", "--precision", "fp16", "--out", tmp_path / "t.json")
    # a machine without a GPU refuses --device cuda first, while the command line is parsed
    import torch

    expected = "rtseg[trt]" if torch.cuda.is_available() else "no CUDA GPU here"
    assert r.exit_code == 2 and expected in r.output and not (tmp_path / "t.json").exists(), r.output

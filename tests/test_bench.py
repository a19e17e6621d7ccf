"""rtseg bench: one protocol for every model and backend, side by side, with a measurement record."""

import json

import pytest
import torch

from rtseg.errors import RtsegError
from rtseg.runtime.bench import plan, run_bench


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_run_bench_measures_every_pair_under_one_protocol():
    rep = run_bench(["baseline1", "erfnet"], input_hw=(32, 64), warmup=1, iters=3, threads=1)
    pairs = [(r.model, r.backend) for r in rep.rows]
    assert pairs == [("baseline1", "torch"), ("baseline1", "onnxruntime"), ("erfnet", "torch"), ("erfnet", "onnxruntime")]
    for r in rep.rows:
        assert r.stats.n == 3 and r.stats.median_ms > 0
        assert r.fps == pytest.approx(1000.0 / r.stats.median_ms)
        assert r.stats.p90_ms >= r.stats.median_ms and r.timed
    rec = rep.record
    assert rec["iters"] == 3 and rec["warmup"] == 1 and rec["input"] == "32x64" and rec["threads"] == 1
    assert "cores" in rec["device"] and rec["protocol"] and rec["torch"] and rec["onnxruntime"]
    assert "Romera" in rec["peers"]["erfnet"]  # the hand-designed peer names its source


def test_bench_cli_json(cli, tmp_path):
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions

    res = export_model("baseline1", ExportOptions(input_hw=(32, 64), out_dir=tmp_path, simplify=False))
    r = cli("bench", "erfnet", res.onnx, "--input", "32x64", "--warmup", "1", "--iters", "3", "--threads", "1", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert [(x["model"], x["backend"]) for x in d["results"]] == [("erfnet", "torch"), ("erfnet", "onnxruntime"), ("baseline1", "onnxruntime")]
    for x in d["results"]:
        for key in ("model", "backend", "median_ms", "p90_ms", "p99_ms", "mean_ms", "fps", "precision", "batch", "timed"):
            assert key in x
    assert d["record"]["device"] and "load_average" in d["record"]
    assert "FPS" in r.stderr and "record:" in r.stderr


def test_impossible_pairs_are_skipped_not_fatal(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"")
    todo, skipped = plan(["baseline1", str(onnx_file)], ["torch"])
    assert todo == [("baseline1", "builtin", "torch")]
    assert skipped and skipped[0]["backend"] == "torch"
    with pytest.raises(RtsegError, match="no model can run"):
        plan([str(onnx_file)], ["torch"])


@pytest.mark.parametrize("args,needle", [
    (("bench", "nope-arch"), "neither a model file"),
    (("bench", "missing.onnx"), "not found"),
    (("bench", "baseline1", "--backend", "tflite"), "unknown backend"),
    (("bench", "baseline1", "--input", "63x64"), "multiple of 16"),
    (("bench", "baseline1", "--iters", "0", "--input", "32x64"), "iters"),
])
def test_bench_bad_arguments(cli, tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    r = cli(*args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_bench_puts_the_luts_prediction_beside_what_it_measures(cli, tmp_path):
    from rtseg.latency.lut import load_lut
    from rtseg.latency.profile import profile_ops
    from rtseg.spaces import load_arch

    from rtseg.spaces import get_space

    base = load_arch("baseline1").with_(num_classes=10)
    ops = get_space("ssr").signatures(base, 32, 64)  # a LUT of baseline1's operators only: seconds, not minutes
    lut_path = profile_ops("ssr", 32, 64, "onnxruntime", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1,
                           num_classes=10, heads=["classifier"], out_path=tmp_path / "lut.json", progress=False, threads=1,
                           recheck=False, signatures=ops, calibration_archs=0, speed_reference=False)
    rep = run_bench(["baseline1", "erfnet"], ["onnxruntime"], input_hw=(32, 64), warmup=1, iters=3, lut=lut_path)
    base_row, erf = rep.rows
    want = load_lut(lut_path).predict(base, 32, 64, force=True).total_ms
    assert base_row.extra["lut_predicted_ms"] == pytest.approx(want) and "lut_predicted_ms" not in erf.extra  # erfnet: another space
    assert rep.record["threads"] == 1  # the LUT's threads
    r = cli("bench", "baseline1", "--backend", "onnxruntime", "--input", "32x64", "--warmup", "1", "--iters", "2", "--lut", lut_path)
    assert r.exit_code == 0 and "LUT ms" in r.output, r.output
    r = cli("bench", "baseline1", "--input", "64x128", "--lut", lut_path)
    assert r.exit_code != 0 and "--input 32x64" in r.output and "Traceback" not in r.output


def test_bench_in_interleaved_rounds_times_every_pair_alike():
    rep = run_bench(["baseline1", "erfnet"], ["onnxruntime"], input_hw=(32, 64), warmup=1, iters=4, rounds=2, threads=1)
    assert [r.model for r in rep.rows] == ["baseline1", "erfnet"] and all(r.stats.n == 4 for r in rep.rows)
    assert rep.record["rounds"] == 2 and "interleaved rounds" in rep.record["protocol"]
    with pytest.raises(RtsegError, match="iters >= rounds"):
        run_bench(["baseline1"], ["onnxruntime"], input_hw=(32, 64), iters=2, rounds=3)


def test_bench_on_the_thread_clock_times_one_thread_cpu_runs_only():
    rep = run_bench(["baseline1"], ["onnxruntime"], input_hw=(32, 64), warmup=1, iters=3, clock="thread")
    assert rep.record["clock"] == "thread" and "thread's CPU-time clock" in rep.rows[0].timed and rep.rows[0].stats.median_ms > 0
    assert rep.record["threads"] == 1  # the thread clock runs one thread unless told otherwise (then it refuses)
    with pytest.raises(RtsegError, match="--threads 1"):
        run_bench(["baseline1"], ["onnxruntime"], input_hw=(32, 64), threads=2, clock="thread")
    with pytest.raises(RtsegError, match="unknown clock"):
        run_bench(["baseline1"], ["onnxruntime"], input_hw=(32, 64), clock="sundial")

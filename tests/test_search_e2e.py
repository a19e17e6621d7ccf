"""End-to-end search on a real (quickly measured) LUT and the synthetic dataset, at a tiny size."""

import json
from pathlib import Path

import pytest

import rtseg
from rtseg.errors import RtsegError
from rtseg.latency.lut import load_lut
from rtseg.latency.profile import profile_ops
from rtseg.search import SearchConfig, run_search

H, W = 32, 64
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lut_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("lut") / "lut.json"
    return profile_ops("ssr", H, W, "torch", "cpu", "fp32", warmup=0, repeats=1, min_time_s=0.0, max_repeats=1,
                       num_classes=10, heads=["classifier"], out_path=out, progress=False, threads=1, recheck=False)


def _cfg(lut_path, target, **kw):
    base = dict(space="ssr", lut=str(lut_path), latency_ms=target, input_hw=(H, W), epochs=2, batch=2, train_len=16,
                val_len=4, warmup_epochs=0, shrink_every=2, verify_latency=False)
    base.update(kw)
    return SearchConfig(**base)


def _target(lut_path, fraction=0.5):
    """A budget ``fraction`` of the way from the cheapest arch to baseline1 (at this tiny size the
    fixed parts dominate, so a plain fraction of baseline1 could be infeasible)."""
    from rtseg.spaces import get_space

    lut = load_lut(lut_path)
    cheapest = lut.predict(get_space("ssr").cheapest_arch(lut.cost, H, W, 10), H, W).total_ms
    base = lut.predict(rtseg.load_arch("baseline1").with_(num_classes=10), H, W).total_ms
    return cheapest + fraction * (base - cheapest)


def test_search_writes_a_buildable_arch_within_the_budget_band(lut_path, tmp_path):
    target = _target(lut_path)
    res = run_search(_cfg(lut_path, target), tmp_path / "run", progress=False)
    arch = rtseg.load_arch(tmp_path / "run" / "arch.json")
    model = rtseg.build_model(arch)
    assert arch.num_classes == 10 and model is not None
    pred = load_lut(lut_path).predict(arch, H, W).total_ms
    assert 0.8 * target <= pred <= target
    assert res.summary["predicted_latency_ms"] == pytest.approx(pred)
    log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").read_text().splitlines()]
    assert len(log) == 2
    for key in ("expected_latency_ms", "expected_flops_g", "total_entropy", "candidates_left", "supernet_val_miou"):
        assert key in log[-1]
    for png in ("entropy.png", "trajectories.png"):
        assert (tmp_path / "run" / png).stat().st_size > 1000


def test_the_searched_arch_records_its_runtime_and_other_runtimes_say_so(lut_path, tmp_path):
    from rtseg.arch import deploy_note
    from rtseg.runtime import load_runner

    res = run_search(_cfg(lut_path, _target(lut_path)), tmp_path / "run", progress=False)
    arch = rtseg.load_arch(tmp_path / "run" / "arch.json")
    lut = load_lut(lut_path)
    rec = arch.meta["searched_with"]
    assert rec["lut_backend"] == lut.backend == res.summary["runtime"]["lut_backend"] == "torch"
    assert rec["lut_device_kind"] == "cpu" and rec["lut_device_name"]
    assert deploy_note(arch, "torch", "cpu") is None  # the LUT's own runtime: nothing to say
    note = deploy_note(arch, "onnxruntime", "cpu")
    assert "torch" in note and "onnxruntime" in note and "\n" not in note
    assert deploy_note(arch, "torch", "cuda") is not None and deploy_note(rtseg.load_arch("baseline1"), "tensorrt") is None
    runner = load_runner(tmp_path / "run" / "arch.json", backend="onnxruntime", input_hw=(H, W))
    try:
        assert runner.info.extra["deploy_note"] == note
    finally:
        runner.close()


def test_flops_budget_is_honoured(lut_path, tmp_path):
    from rtseg.flops import sum_op_flops
    from rtseg.spaces import get_space

    target = _target(lut_path, 0.9)
    flops_g = 0.8 * sum_op_flops(get_space("ssr").signatures(rtseg.load_arch("baseline1").with_(num_classes=10), H, W)) / 1e9
    res = run_search(_cfg(lut_path, target, flops_g=flops_g, epochs=1), tmp_path / "run", progress=False)
    assert res.summary["flops"] <= flops_g * 1e9


def test_resume_continues_from_the_last_epoch(lut_path, tmp_path):
    target = _target(lut_path)
    run_search(_cfg(lut_path, target, epochs=1), tmp_path / "run", progress=False)
    res = run_search(_cfg(lut_path, target, epochs=2), tmp_path / "run", resume=True, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "search_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1]
    assert res.summary["epochs_run"] == 2
    assert log[1]["elapsed_s"] > log[0]["elapsed_s"] and res.summary["wall_time_s"] >= log[1]["elapsed_s"]  # the whole search's time


def test_infeasible_budget_is_refused_with_the_cheapest_latency(lut_path, tmp_path):
    with pytest.raises(RtsegError, match=r"infeasible: the cheapest ssr arch .* is predicted at"):
        run_search(_cfg(lut_path, 1e-6), tmp_path / "run", progress=False)


def test_cli_search_json_and_errors(cli, lut_path, tmp_path):
    target = _target(lut_path)
    r = cli("search", "--strategy", "gradient", "--lut", lut_path, "--latency-ms", f"{target:.6f}", "--input", f"{H}x{W}", "--epochs", "1",
            "--batch", "2", "--train-len", "8", "--val-len", "2", "--warmup-epochs", "0", "--no-verify",
            "--out", tmp_path / "run", "--json")
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["target_latency_ms"] == pytest.approx(target, rel=1e-5)
    r = cli("search", "--lut", lut_path, "--latency-ms", "1", "--input", "64x128", "--out", tmp_path / "x")
    assert r.exit_code == 2 and "was measured at 32x64" in r.output
    r = cli("search", "--lut", tmp_path / "nope.json", "--latency-ms", "1", "--out", tmp_path / "y")
    assert r.exit_code == 2 and r.output.startswith("error:")


def test_search_under_torchrun_keeps_replicas_identical(torchrun, lut_path, tmp_path):
    """2 CPU processes (gloo) with a time limit: every rank stops at the same step, the supernets stay
    bit-identical (gradients averaged by hand, BN statistics synced) and decode the same arch."""
    target = _target(lut_path)
    out = tmp_path / "ddp"
    r = torchrun("search", "--strategy", "gradient", "--lut", lut_path, "--latency-ms", f"{target:.6f}", "--input", f"{H}x{W}", "--epochs", "20",
                 "--batch", "2", "--train-len", "16", "--val-len", "4", "--warmup-epochs", "0", "--minutes", "0.05",
                 "--workers", "0", "--device", "cpu", "--no-verify", "--out", out, "--json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads(r.stdout[r.stdout.index("{"):])  # rank 0 alone prints
    assert s["world_size"] == 2 and [x["rank"] for x in s["ranks"]] == [0, 1] and s["ranks_agree"]
    arch = rtseg.load_arch(out / "arch.json")
    assert 0.8 * target <= load_lut(lut_path).predict(arch, H, W).total_ms <= target


def test_reg_comparison_reaches_its_report(lut_path, tmp_path):
    """The recipe's report formats every column (a search record holds the list of budget-fit changes)."""
    import argparse
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("reg_comparison", Path(__file__).resolve().parents[1] / "search" / "reg_comparison.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    args = argparse.Namespace(lut=str(lut_path), fraction=0.9, epochs=1, train_len=8, seed=0, out=str(tmp_path / "reg"))
    mod.run_one(args, "ssr")
    for name in mod.VARIANTS:  # one real run stands for the four: the report is what is tested here
        if name != "ssr":
            shutil.copytree(tmp_path / "reg" / "ssr", tmp_path / "reg" / name)
    mod.report(args)
    rows = json.loads((tmp_path / "reg" / "reg_comparison.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == list(mod.VARIANTS) and isinstance(rows[0]["budget_fit_changes"], list)

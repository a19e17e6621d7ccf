"""`rtseg train` and `rtseg eval` run unchanged under torchrun: 2 CPU processes with gloo."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_ddp_two_cpu_processes_agree(tmp_path, cli, torchrun):
    out = tmp_path / "ddp"
    r = torchrun("train", "--arch", "baseline1", "--input", "32x64", "--epochs", "2", "--batch", "2",
                  "--train-len", "8", "--val-len", "5", "--workers", "0", "--device", "cpu", "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2 and len(s["ranks"]) == 2
    # both replicas end bit-identical and report the same (all-reduced) validation mIoU
    assert s["ranks"][0]["weights"] == s["ranks"][1]["weights"] and s["ranks_agree"]
    assert s["ranks"][0]["miou"] == s["ranks"][1]["miou"]
    # 8 items over 2 ranks with batch 2: 2 steps per epoch, 4 images per step
    assert s["steps"] == 4
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert (out / "best.pt").is_file() and (out / "metrics" / "epoch_002.json").is_file()
    # sharded evaluation (5 images: 3 on rank 0, 2 on rank 1) equals a single-process evaluation
    r = torchrun("eval", "--checkpoint", str(out / "last.pt"), "--val-len", "5", "--batch", "2", "--workers", "0", "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    ddp_eval = json.loads(r.stdout[r.stdout.index("{"):])
    single = cli("eval", "--checkpoint", out / "last.pt", "--val-len", "5", "--batch", "2", "--workers", "0", "--device", "cpu", "--json")
    assert single.exit_code == 0, single.output
    one = json.loads(single.stdout)
    assert ddp_eval["pixels"] == one["pixels"] == 5 * 32 * 64
    assert ddp_eval["miou"] == pytest.approx(one["miou"], abs=1e-12)
    assert ddp_eval["miou"] == pytest.approx(s["ranks"][0]["miou"], abs=1e-12)

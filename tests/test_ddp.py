"""`rtseg train` and `rtseg eval` run unchanged under torchrun: 2 CPU processes with gloo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _rtseg_script() -> str:
    cand = Path(sys.executable).parent / "rtseg"
    found = str(cand) if cand.is_file() else shutil.which("rtseg")
    if not found:
        pytest.skip("the rtseg console script is not installed (pip install -e .)")
    return found


def _torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", _rtseg_script(), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_ddp_two_cpu_processes_agree(tmp_path, cli):
    out = tmp_path / "ddp"
    r = _torchrun("train", "--arch", "baseline1", "--input", "32x64", "--epochs", "2", "--batch", "2",
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
    r = _torchrun("eval", "--checkpoint", str(out / "last.pt"), "--val-len", "5", "--batch", "2", "--workers", "0", "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    ddp_eval = json.loads(r.stdout[r.stdout.index("{"):])
    single = cli("eval", "--checkpoint", out / "last.pt", "--val-len", "5", "--batch", "2", "--workers", "0", "--device", "cpu", "--json")
    assert single.exit_code == 0, single.output
    one = json.loads(single.stdout)
    assert ddp_eval["pixels"] == one["pixels"] == 5 * 32 * 64
    assert ddp_eval["miou"] == pytest.approx(one["miou"], abs=1e-12)
    assert ddp_eval["miou"] == pytest.approx(s["ranks"][0]["miou"], abs=1e-12)

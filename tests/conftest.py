from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# One intra-op thread: the suite's tensors are tiny (threading costs more than it gains) and an
# OpenMP pool that oversubscribes a busy 2-core machine slows such runs 10x or more.
torch.set_num_threads(1)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli():
    """Invoke the CLI in-process: ``cli("arch", "show", "baseline1")`` -> result."""
    from typer.testing import CliRunner

    from rtseg.cli import app

    r = CliRunner()

    def invoke(*args: str, **kw):
        return r.invoke(app, [str(a) for a in args], **kw)

    return invoke


def randomize_bn(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)


@pytest.fixture
def torchrun():
    """Run ``rtseg ARGS`` as 2 CPU processes under torchrun (gloo): ``torchrun("train", ...)`` -> CompletedProcess."""
    cand = Path(sys.executable).parent / "rtseg"
    script = str(cand) if cand.is_file() else shutil.which("rtseg")
    if not script:
        pytest.skip("the rtseg console script is not installed (pip install -e .)")

    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script, *map(str, args)]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)

    return run


def cityscapes_tree(root: Path, h: int, w: int, n_train: int = 4, n_val: int = 2) -> Path:
    """A tiny Cityscapes tree in the official layout (two cities, random images, two label ids)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    label = np.where(np.arange(h)[:, None] < h // 2, 7, 26).astype(np.uint8) + np.zeros((h, w), np.uint8)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            city = f"city{i % 2}"
            stem = f"{city}_000000_{i:06d}"
            for path, arr in ((root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8)),
                              (root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label)):
                path.parent.mkdir(parents=True, exist_ok=True)
                assert cv2.imwrite(str(path), arr)
    return root

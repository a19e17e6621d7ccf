"""Training runs as jobs for a process pool, and the figure a search reads from their summaries.

The proxy search (:mod:`rtseg.search.proxy`) and experiments such as ``search/pareto.py`` train
several small runs at a time, one thread each, through :func:`train_one_thread`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from rtseg.arch import Arch
from rtseg.io import read_json
from rtseg.reporting import SilentReporter
from rtseg.rundir import MARKER
from rtseg.train.config import TrainConfig
from rtseg.train.pipeline import train


def final_miou(summary: dict[str, Any]) -> float:
    """The last validation's mIoU of a run summary (not the best epoch's: no selection on the validation set)."""
    return float((summary.get("final") or {}).get("miou", summary.get("best_miou")))


def train_one_thread(job: dict[str, Any]) -> dict[str, Any]:
    """One CPU training run on one thread, for a process pool (experiments and the proxy search run
    several at a time): ``job`` holds ``run`` (folder), ``arch`` (dict), ``data``, ``input_hw`` and
    TrainConfig fields. Resumable: a finished run's summary is read back, an interrupted one resumes.
    The summary gains ``wall_s``, this call's wall time. ``isolated`` (a job run in a worker process
    of a torchrun rank) makes the run a single process of its own: the rank's process-group variables
    are dropped from the worker's environment, so the run does not try to join its parent's group."""
    if job.get("isolated"):
        for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK", "MASTER_ADDR", "MASTER_PORT",
                    "TORCHELASTIC_RUN_ID", "GROUP_WORLD_SIZE", "ROLE_WORLD_SIZE"):
            os.environ.pop(var, None)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    run = Path(job["run"])
    if (run / "summary.json").exists():
        return read_json(run / "summary.json", "run summary")
    t0 = time.monotonic()
    fields = {k: v for k, v in job.items() if k not in ("run", "arch", "data", "input_hw", "isolated")}
    cfg = TrainConfig(**{"workers": 0, "device": "cpu", "progress": False, **fields}, resume=(run / "last.pt").exists() or (run / MARKER).exists())
    summary = train(Arch.from_dict(job["arch"]), job["data"], tuple(job["input_hw"]), cfg, run, reporter=SilentReporter())
    summary["wall_s"] = time.monotonic() - t0
    return summary

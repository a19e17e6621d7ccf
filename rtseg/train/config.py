"""What a training run is asked to do: :class:`TrainConfig` and its defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rtseg.errors import RtsegError
from rtseg.train.loader import default_workers


def default_lr(optimizer: str) -> float:
    """Adam 2e-3 (a short-budget choice; the seed retrains with 5e-4 for 200 epochs), SGD 1e-2."""
    return 2e-3 if optimizer == "adam" else 1e-2


@dataclass
class TrainConfig:
    epochs: int = 50
    batch: int = 8  # per process
    lr: float | None = None  # None: default_lr(optimizer)
    optimizer: str = "adam"  # adam | sgd
    weight_decay: float | None = None  # None: 1e-4 (adam, the SSR paper) / 5e-4 (sgd)
    amp: bool = False  # CUDA only
    ohem: bool = False
    workers: int | None = None  # None: default_workers()
    seed: int = 0
    device: str | None = None  # None: cuda if available else cpu
    minutes: float | None = None  # wall-clock budget (training + validation)
    train_len: int | None = None  # synthetic: items per split (default 2000/200); files: first N
    val_len: int | None = None
    data_seed: int = 0  # which synthetic world
    # validate on this held-out fraction of the training split instead of the validation split
    # (rtseg.data.selection): what a search's proxy trainings do, so their choice never sees it
    holdout: float | None = None
    resume: bool = False
    overwrite: bool = False  # replace a finished or foreign run in the folder (see rtseg.rundir)
    progress: bool = True
    log_every: int = 10  # steps between loss samples in the metrics
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        c = TrainConfig(**asdict(self))
        if c.optimizer not in ("adam", "sgd"):
            raise RtsegError(f"unknown optimizer {c.optimizer!r}; choose adam or sgd")
        c.lr = float(c.lr) if c.lr is not None else default_lr(c.optimizer)
        c.weight_decay = float(c.weight_decay) if c.weight_decay is not None else (1e-4 if c.optimizer == "adam" else 5e-4)
        c.workers = default_workers() if c.workers is None else int(c.workers)
        if c.epochs < 1:
            raise RtsegError(f"--epochs must be at least 1, got {c.epochs}")
        if c.batch < 1:
            raise RtsegError(f"--batch must be at least 1, got {c.batch}")
        if c.lr <= 0:
            raise RtsegError(f"--lr must be positive, got {c.lr}")
        if c.minutes is not None and c.minutes <= 0:
            raise RtsegError(f"--minutes must be positive, got {c.minutes}")
        return c

"""Training: the pipeline ``rtseg train`` runs, and the pieces the searches and experiments share.

* :mod:`rtseg.train.pipeline`: :func:`train`, the ``rtseg train`` pipeline (run folder, checkpoints,
  resume, summary; alone or under torchrun);
* :mod:`rtseg.train.config`: :class:`TrainConfig`, what a run is asked to do;
* :mod:`rtseg.train.budget` and :mod:`rtseg.train.curve`: the ``--minutes`` budget and ``curve.png`` of a run;
* :mod:`rtseg.train.evaluation`: :func:`evaluate_checkpoint`, ``rtseg eval``;
* :mod:`rtseg.train.loader`: the data loaders and the CPU thread budget;
* :mod:`rtseg.train.step`: the learning-rate schedule, the losses, the optimizer, the weight digest;
* :mod:`rtseg.train.device`: the ``--device`` option and the machine's name;
* :mod:`rtseg.train.workers`: :func:`train_one_thread`, a run as a process-pool job, and
  :func:`final_miou`, the figure a search reads from a run summary.

The names below are re-exported for users; code inside rtseg imports from the module that owns a name.
"""

from __future__ import annotations

from rtseg.train.loader import cpu_threads, default_workers, make_loader
from rtseg.train.config import TrainConfig, default_lr
from rtseg.train.step import OhemCELoss, build_loss, poly_lr, weights_digest
from rtseg.train.device import resolve_device
from rtseg.train.pipeline import train
from rtseg.train.evaluation import evaluate_checkpoint
from rtseg.train.workers import final_miou, train_one_thread

__all__ = [
    "OhemCELoss",
    "TrainConfig",
    "build_loss",
    "cpu_threads",
    "default_lr",
    "default_workers",
    "evaluate_checkpoint",
    "final_miou",
    "make_loader",
    "poly_lr",
    "resolve_device",
    "train",
    "train_one_thread",
    "weights_digest",
]

"""What one optimisation step is made of: the poly learning-rate schedule, the losses (cross-entropy,
OHEM) and the optimizer; and the weight digest that proves replicas equal.

Shared by ``rtseg train`` (:mod:`rtseg.train.pipeline`) and the searches that train weights themselves.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rtseg.checkpoint import unwrap
from rtseg.train.config import TrainConfig


def poly_lr(base: float, step: int, total: int, power: float = 0.9) -> float:
    """Poly decay: ``base * (1 - step/total) ** power``, 0 from ``total`` on."""
    if total <= 0:
        return base
    return base * max(0.0, 1.0 - min(step, total) / total) ** power


class OhemCELoss(nn.Module):
    """Online hard example mining cross-entropy (BiSeNet / SSR): average the loss over the pixels
    whose true-class probability is below ``thresh`` (0.7), but over at least the ``n_min`` hardest
    labelled pixels (default: a sixteenth of the batch's labelled pixels) so easy batches still
    teach something."""

    def __init__(self, thresh: float = 0.7, ignore_index: int = 255, n_min: int | None = None, min_fraction: float = 1 / 16) -> None:
        super().__init__()
        self.loss_thresh = -math.log(thresh)
        self.ignore_index = ignore_index
        self.n_min = n_min
        self.min_fraction = min_fraction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index, reduction="none").flatten()
        valid = (target.flatten() != self.ignore_index)
        loss = loss[valid]
        if loss.numel() == 0:
            return logits.sum() * 0.0
        n_min = self.n_min if self.n_min is not None else max(1, int(loss.numel() * self.min_fraction))
        n_min = min(n_min, loss.numel())
        hard = loss[loss > self.loss_thresh]
        if hard.numel() >= n_min:
            return hard.mean()
        return torch.topk(loss, n_min, sorted=False).values.mean()


class CELoss(nn.Module):
    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not bool((target != self.ignore_index).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float(), target, ignore_index=self.ignore_index)


def build_loss(ohem: bool, ignore_index: int = 255, thresh: float = 0.7, n_min: int | None = None) -> nn.Module:
    """Cross-entropy over full-resolution logits (labels equal to ``ignore_index`` skipped), or OHEM."""
    return OhemCELoss(thresh, ignore_index, n_min) if ohem else CELoss(ignore_index)


def build_optimizer(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)  # type: ignore[arg-type]
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)  # type: ignore[arg-type]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr

def weights_digest(model: nn.Module) -> str:
    """A short SHA-256 of every parameter and buffer: equal digests mean bit-identical replicas."""
    h = hashlib.sha256()
    for k, v in sorted(unwrap(model).state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()[:16]

"""Segmentation metrics from an accumulated confusion matrix.

Convention (the Cityscapes one, and torchmetrics' ``MulticlassJaccardIndex(average="macro",
ignore_index=...)`` since 1.x): pixels whose label is ``ignore_index`` are not counted at all;
per-class IoU = TP / (TP + FP + FN); a class that appears in neither the labels nor the predictions
has no IoU (``NaN``, ``null`` in JSON) and is left out of the mean, so mIoU is the mean over classes
with a non-empty union. Pixel accuracy = correctly labelled pixels / labelled pixels. Predictions are
taken at the label's resolution: logits are bilinearly upsampled to the label size when they differ
(the SSR paper's protocol of scoring at the original resolution).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F

from rtseg.distributed import all_reduce_sum


class ConfusionMatrix:
    """``mat[t, p]`` counts pixels of true class ``t`` predicted as ``p`` (int64, on any device)."""

    def __init__(self, num_classes: int, ignore_index: int = 255, device: str | torch.device = "cpu") -> None:
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.mat = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` and ``target`` are integer class maps of the same shape.

        Target values equal to ``ignore_index`` are skipped; any other target outside
        ``[0, num_classes)`` is an error (a label/class-count mismatch), not silently dropped."""
        if pred.shape != target.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        t = target.reshape(-1).to(self.mat.device, torch.int64)
        p = pred.reshape(-1).to(self.mat.device, torch.int64)
        keep = t != self.ignore_index
        t, p = t[keep], p[keep]
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.num_classes):
            raise ValueError(f"label values must be in [0, {self.num_classes}) or {self.ignore_index}; got {int(t.min())}..{int(t.max())}")
        self.mat += torch.bincount(t * self.num_classes + p, minlength=self.num_classes**2).reshape(self.num_classes, self.num_classes)

    def all_reduce(self) -> "ConfusionMatrix":
        """Sum the matrix over DDP ranks (no-op in a single process)."""
        all_reduce_sum(self.mat)
        return self

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        self.mat += other.mat.to(self.mat.device)
        return self

    def compute(self, class_names: list[str] | None = None) -> dict[str, Any]:
        return metrics_from_confusion(self.mat, class_names)


def metrics_from_confusion(mat: torch.Tensor, class_names: list[str] | None = None) -> dict[str, Any]:
    """``{"miou", "per_class_iou", "pixel_accuracy", "mean_accuracy", "class_names", "pixels"}``; fractions in [0, 1]."""
    m = mat.detach().to("cpu", torch.float64)
    tp = m.diag()
    gt = m.sum(1)
    pr = m.sum(0)
    union = gt + pr - tp
    iou = torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))
    acc = torch.where(gt > 0, tp / gt.clamp(min=1), torch.full_like(tp, float("nan")))
    total = float(m.sum())
    valid = ~torch.isnan(iou)
    out: dict[str, Any] = {
        "miou": float(iou[valid].mean()) if bool(valid.any()) else float("nan"),
        "per_class_iou": [None if math.isnan(v) else float(v) for v in iou.tolist()],
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_accuracy": float(acc[~torch.isnan(acc)].mean()) if bool((~torch.isnan(acc)).any()) else float("nan"),
        "pixels": int(total),
    }
    if class_names is not None:
        out["class_names"] = list(class_names)
    return out


def predict(model: torch.nn.Module, images: torch.Tensor, out_hw: tuple[int, int] | None = None) -> torch.Tensor:
    """Class map of a batch: argmax of the logits, upsampled (bilinear, on logits) to ``out_hw`` if given."""
    logits = model(images)
    if out_hw is not None and tuple(logits.shape[-2:]) != tuple(out_hw):
        logits = F.interpolate(logits.float(), size=out_hw, mode="bilinear", align_corners=False)
    return logits.argmax(1)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    ignore_index: int = 255,
    device: str | torch.device = "cpu",
    amp: bool = False,
    class_names: list[str] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run ``model`` over ``loader`` and score it; under DDP each rank scores its shard and the
    confusion matrices are summed, so every rank returns the same numbers.

    ``on_batch(n_images)`` is called after each batch (progress bars)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(num_classes, ignore_index, device=device)
    use_amp = amp and device.type == "cuda"
    try:
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                pred = predict(model, images, tuple(labels.shape[-2:]))
            cm.update(pred, labels)
            if on_batch is not None:
                on_batch(int(images.shape[0]))
    finally:
        model.train(was_training)
    cm.all_reduce()
    out = cm.compute(class_names)
    out["confusion_matrix"] = cm.mat.cpu().tolist()
    return out

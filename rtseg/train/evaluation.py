"""``rtseg eval``: :func:`evaluate_checkpoint` scores a saved checkpoint on a split of a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rtseg import distributed as dist
from rtseg.checkpoint import load_model
from rtseg.data import build_dataset, dataset_info
from rtseg.errors import RtsegError
from rtseg.evaluate import evaluate
from rtseg.io import parse_hw
from rtseg.reporting import Reporter, SilentReporter
from rtseg.spaces import get_space
from rtseg.train.device import resolve_device
from rtseg.train.loader import cpu_threads, default_workers, make_loader


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str = "synthetic",
    input_hw: str | tuple[int, int] | None = None,
    split: str = "val",
    batch: int = 4,
    device: str | None = None,
    workers: int | None = None,
    val_len: int | None = None,
    native: bool = False,
    amp: bool = False,
    reporter: Reporter | None = None,
) -> dict[str, Any]:
    """``rtseg eval``: score a checkpoint on a split of ``data``; returns mIoU, per-class IoU, pixel
    and mean accuracy with what was scored (checkpoint, arch, split, input size, images, classes).

    ``input_hw`` defaults to the size the checkpoint was trained at; ``native`` scores at the labels'
    original resolution (logits upsampled). Joins a torchrun group when launched under one (each rank
    scores a shard, the confusion matrices are summed); the caller ends it (``dist.cleanup``)."""
    reporter = reporter or SilentReporter()
    dev = dist.init_distributed(str(resolve_device(device)) if device else None)
    info = dataset_info(data)
    model, meta = load_model(checkpoint, device=dev, num_classes=info.num_classes)
    arch = meta["arch_obj"]
    if input_hw is not None:
        hw = parse_hw(input_hw, get_space(arch.space).size_divisor)
    elif meta.get("input_hw"):
        hw = (int(meta["input_hw"][0]), int(meta["input_hw"][1]))
    else:
        raise RtsegError(f"{checkpoint} does not record its input size; pass --input HxW")
    ds = build_dataset(data, split, hw, augment=False, seed=0, length=val_len, native_labels=native)
    if native and batch > 1 and info.name != "synthetic":
        batch = 1  # native label sizes may differ between images
    w = default_workers() if workers is None else workers
    loader = make_loader(ds, batch, False, w, dist.world_size() > 1, pin_memory=dev.type == "cuda")
    bars = reporter if dist.is_main() else SilentReporter()
    with cpu_threads(dev, w), bars.task("eval", total=len(ds)) as bar:
        m = evaluate(model, loader, info.num_classes, info.ignore_index, dev, amp=amp and dev.type == "cuda",
                     class_names=info.class_names, on_batch=lambda n: bar.advance(n * dist.world_size()))
    return {
        "checkpoint": str(checkpoint),
        "arch": arch.name,
        "data": data,
        "split": split,
        "input_hw": list(hw),
        "images": len(ds),
        "native_labels": native,
        "miou": m["miou"],
        "per_class_iou": m["per_class_iou"],
        "pixel_accuracy": m["pixel_accuracy"],
        "mean_accuracy": m["mean_accuracy"],
        "class_names": info.class_names,
        "pixels": m["pixels"],
    }

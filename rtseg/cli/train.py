"""``rtseg train`` and ``rtseg eval``: thin layers over :func:`rtseg.train.pipeline.train` and
:func:`rtseg.train.evaluation.evaluate_checkpoint`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table

from rtseg.cli import params as P
from rtseg.cli._app import app, console, print_json
from rtseg.io import parse_hw

_DATA_HELP = "Dataset: synthetic (generated, offline), cityscapes:PATH or camvid:PATH."


def _metrics_table(title: str, m: dict[str, Any], class_names: list[str]) -> Table:
    t = Table(title=title or None)
    t.add_column("class")
    t.add_column("IoU (%)", justify="right")
    for name, v in zip(class_names, m["per_class_iou"]):
        t.add_row(name, "-" if v is None else f"{100 * v:.2f}")
    t.add_section()
    t.add_row("[bold]mIoU[/]", f"[bold]{100 * m['miou']:.2f}[/]")
    t.add_row("pixel accuracy", f"{100 * m['pixel_accuracy']:.2f}")
    return t


@app.command("train")
def train_cmd(
    arch: str = typer.Option(..., "--arch", help="Arch JSON path or built-in name (e.g. baseline1)."),
    data: str = typer.Option("synthetic", "--data", help=_DATA_HELP),
    input: str = typer.Option(..., "--input", help="Training input size HxW (e.g. 512x1024).", callback=P.hw_size),
    epochs: int = typer.Option(50, help="Epochs (an upper bound when --minutes is given).", callback=P.COUNT),
    batch: int = typer.Option(8, help="Images per step per process.", callback=P.BATCH),
    lr: Optional[float] = typer.Option(None, help="Base learning rate (default: adam 2e-3, sgd 1e-2), poly-decayed.", callback=P.POSITIVE),
    optimizer: str = typer.Option("adam", help="adam or sgd."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (CUDA only; ignored with a note on CPU)."),
    ohem: bool = typer.Option(False, "--ohem", help="Online hard example mining loss (p < 0.7, at least 1/16 of the pixels)."),
    minutes: Optional[float] = typer.Option(None, help="Wall-clock budget in minutes; the poly schedule is fitted to it.", callback=P.POSITIVE),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last.pt (refused if any setting but --epochs, --minutes, --workers or --device differs)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run --out holds (a finished, interrupted or foreign one); without it such a folder is refused."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Run folder (config, metrics, checkpoints, curve).", callback=P.output_dir),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N (default: cuda if available).", callback=P.device),
    workers: Optional[int] = typer.Option(None, help="Data-loading processes (default: CPU cores - 1, at most 8).", callback=P.WORKERS),
    seed: int = typer.Option(0, help="Seed of weights init, shuffling and augmentation.", callback=P.SEED),
    train_len: Optional[int] = typer.Option(None, help="synthetic: training scenes [default: 2000]; cityscapes/camvid: train on the first N images only [default: all].", callback=P.COUNT),
    val_len: Optional[int] = typer.Option(None, help="synthetic: validation scenes [default: 200]; cityscapes/camvid: validate on the first N images only [default: all].", callback=P.COUNT),
    json_out: bool = typer.Option(False, "--json", help="Print the run summary as one JSON object on stdout."),
) -> None:
    """Train an arch: poly LR, augmentation, per-epoch validation, atomic resumable checkpoints.

    Runs unchanged under torchrun for DistributedDataParallel, e.g.
    torchrun --nproc_per_node 2 $(which rtseg) train --arch baseline1 --input 128x256 ...
    """
    from rtseg import distributed as dist
    from rtseg.spaces import get_space, load_arch
    from rtseg.reporting import RichReporter
    from rtseg.train.config import TrainConfig
    from rtseg.train.pipeline import train

    a = load_arch(arch)
    hw = parse_hw(input, get_space(a.space).size_divisor)
    cfg = TrainConfig(
        epochs=epochs, batch=batch, lr=lr, optimizer=optimizer, amp=amp, ohem=ohem, workers=workers, seed=seed,
        device=device, minutes=minutes, train_len=train_len, val_len=val_len, resume=resume, overwrite=overwrite,
    )
    main = True
    try:
        summary = train(a, data, hw, cfg, out, reporter=RichReporter(console))
        main = dist.is_main()
    finally:
        dist.cleanup()
    if not main:
        return
    if json_out:
        print_json(summary)
        return
    final = summary.get("final")
    if final:
        console.print(_metrics_table(f"validation, epoch {summary['epochs']}", final, final.get("class_names", [str(i) for i in range(len(final["per_class_iou"]))])))
    best = summary["best_miou"]
    ips = summary["train_img_per_s"]
    console.print(
        f"best mIoU [bold]{100 * best:.2f}%[/] (epoch {summary['best_epoch']})" if best is not None else "no epoch finished",
        highlight=False,
    )
    console.print(
        f"{summary['steps']} steps in {summary['elapsed_s'] / 60:.1f} min, "
        + (f"{ips:.1f} img/s training on {summary['machine']}" if ips else "")
        + (f" x{summary['world_size']} processes" if summary["world_size"] > 1 else ""),
        highlight=False,
    )
    im = summary["images"]
    console.print(f"data {summary['data']}: " + " / ".join(f"{im[k]}" + (f" of {im[k + '_available']}" if k + "_available" in im else "") + f" {k}"
                                                         for k in ("train", "val")) + " images", highlight=False)
    files = [name for name, key in (("best.pt", "checkpoint"), ("last.pt", "last")) if summary.get(key)]
    console.print(f"run folder {summary['run']}: {', '.join(files + ['curve.png', 'metrics/']) if files else 'no epoch finished, no checkpoint written'}",
                  highlight=False)


@app.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A checkpoint written by rtseg train (best.pt / last.pt).", callback=P.input_file),
    data: str = typer.Option("synthetic", "--data", help=_DATA_HELP),
    input: Optional[str] = typer.Option(None, "--input", help="Input size HxW (default: the checkpoint's training size).", callback=P.hw_size),
    split: str = typer.Option("val", help="Split to score (train, val; camvid also test)."),
    batch: int = typer.Option(4, help="Images per batch.", callback=P.BATCH),
    device: Optional[str] = typer.Option(None, help="cpu, cuda or cuda:N (default: cuda if available).", callback=P.device),
    workers: Optional[int] = typer.Option(None, help="Data-loading processes.", callback=P.WORKERS),
    val_len: Optional[int] = typer.Option(None, help="synthetic: number of scenes (default 200); files: first N.", callback=P.COUNT),
    native: bool = typer.Option(False, "--native", help="Score at the labels' original resolution (logits upsampled)."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision inference (CUDA only)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """mIoU, per-class IoU and pixel accuracy of a checkpoint, from an accumulated confusion matrix."""
    from rtseg import distributed as dist
    from rtseg.reporting import RichReporter
    from rtseg.train.evaluation import evaluate_checkpoint

    main = True
    try:
        result = evaluate_checkpoint(checkpoint, data, input_hw=input, split=split, batch=batch, device=device, workers=workers,
                                     val_len=val_len, native=native, amp=amp, reporter=RichReporter(console))
        main = dist.is_main()
    finally:
        dist.cleanup()
    if not main:
        return
    if json_out:
        print_json({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.items()})
        return
    hw = result["input_hw"]
    console.print(f"{checkpoint} on {data} {split}: {result['images']} images at {hw[0]}x{hw[1]}", highlight=False)
    console.print(_metrics_table("", result, result["class_names"]))

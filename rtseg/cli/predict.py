"""``rtseg predict``: segment image files, folders and globs; overlays (and label PNGs) plus timings.

A thin layer over :func:`rtseg.predict.predict`: a progress bar over the images, one line per input
that is not an image, then a table of per-stage mean/p90 latency (or ``--json``). Inputs that could
not be segmented make the command exit 2 at the end, after everything else was written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rtseg.cli import params as P
from rtseg.cli._app import app, console, print_json
from rtseg.errors import RtsegError
from rtseg.io import parse_hw

#: Up to this many images, the table lists each one.
_LIST_IMAGES = 20


def _tables(rec: dict[str, Any]) -> list[Table]:
    from rtseg.predict import STAGE_HELP

    hw = rec["input_hw"]
    t = Table(title=f"rtseg predict: {rec['model']} on {rec['backend']} ({rec['device']}, {rec['precision']}) at {hw[0]}x{hw[1]}, "
              f"{rec['images_done']} images")
    for col, kw in (("stage", {}), ("what", {"style": "dim"}), ("mean ms", {"justify": "right"}), ("p90 ms", {"justify": "right"}),
                    ("n", {"justify": "right"})):
        t.add_column(col, **kw)
    for name, st in rec["stages"].items():
        t.add_row(name, STAGE_HELP.get(name, ""), f"{st['mean_ms']:.2f}", f"{st['p90_ms']:.2f}", str(st["n"]))
    tables = [t]
    if 0 < rec["images_done"] <= _LIST_IMAGES:
        per = Table(title="images")
        for col in ("image", "size", "inference ms", "total ms", "overlay"):
            per.add_column(col, justify="right" if col.endswith("ms") else "left")
        for im in rec["images"]:
            size = f"{im['size_hw'][0]}x{im['size_hw'][1]}"
            per.add_row(escape(im["source"]), size, f"{im['times_ms']['inference']:.2f}", f"{im['times_ms']['total']:.2f}",
                        escape(Path(im["overlay"]).name))
        tables.append(per)
    return tables


@app.command("predict")
def predict_cmd(
    model: str = typer.Argument(..., help="Engine (.engine/.plan), ONNX file (with its sidecar), checkpoint (.pt), arch JSON or built-in arch name."),
    sources: List[str] = typer.Argument(..., help="Image files, folders (their images) or glob patterns, quoted ('photos/**/*.jpg')."),
    out: Path = typer.Option(Path("rtseg-out/predict"), "--out", "-o", help="Folder for the overlays, masks/ and predict.json (files of the same name are replaced).", callback=P.output_dir),
    backend: Optional[str] = typer.Option(None, help="Runner backend: torch, onnxruntime or tensorrt (default: from the model file)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N.", callback=P.device),
    precision: str = typer.Option("fp32", help="fp32 or fp16 (torch/onnxruntime); an ONNX file or engine runs in its own precision (int8 included)."),
    input: Optional[str] = typer.Option(None, "--input", help="Model input size HxW; images are resized to it and the labels back (default: the model's, or 512x1024 for an arch or checkpoint without one).", callback=P.hw_size),
    save_mask: bool = typer.Option(False, "--save-mask", help="Also write masks/NAME.png (class ids, one channel) and masks_color/NAME.png (palette colours)."),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the class colours in the overlay, 0..1.", callback=P.between(0, 1)),
    threads: Optional[int] = typer.Option(None, "--threads", help="Intra-op threads for the runner (default: the backend's).", callback=P.THREADS),
    warmup: int = typer.Option(3, "--warmup", help="Untimed runner calls before the first image.", callback=P.NON_NEGATIVE),
    json_out: bool = typer.Option(False, "--json", help="Print the record (files written, per-stage timings) as one JSON object on stdout."),
) -> None:
    """Segment images (PNG, JPEG, BMP, TIFF... as OpenCV reads them) at their own resolution; report latency."""
    from rtseg.predict import collect_images, predict

    input_hw = parse_hw(input) if input else None
    paths = collect_images(sources)  # a wrong path fails before the model loads
    with Progress(
        SpinnerColumn(), TextColumn("[bold]predict[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True, disable=len(paths) < 2,
    ) as progress:
        task = progress.add_task("loading the model", total=len(paths))

        def on_image(i: int, n: int, res: Any) -> None:
            if res.skipped:
                progress.console.print(f"[yellow]skipped[/] {escape(res.source)}: {escape(res.skipped)}", soft_wrap=True)
            progress.update(task, completed=i + 1, description=escape(Path(res.source).name))

        result = predict(model, paths, out, backend=backend, device=device, precision=precision, input_hw=input_hw,
                         threads=threads, save_mask=save_mask, alpha=alpha, warmup=warmup, on_image=on_image)
    rec = result.record
    if json_out:
        print_json(rec)
    else:
        for t in _tables(rec):
            console.print(t)
        where = f"{out}" + (f" (labels in {out / 'masks'}, colours in {out / 'masks_color'})" if save_mask else "")
        console.print(f"{rec['images_done']} of {rec['images_total']} inputs segmented; wrote overlays to [bold]{escape(where)}[/]"
                      f" and the record to {escape(str(out / 'predict.json'))}")
        console.print(f"[dim]{rec['host']['cpu']}, {rec['host']['cpu_count']} cores, load {rec['host']['load_avg_1_5_15']}; "
                      f"threads {rec['threads']}[/]")
    skipped = rec["images_skipped"]
    if skipped:
        raise RtsegError(f"{skipped} of {rec['images_total']} inputs could not be segmented (listed above, and in predict.json); "
                         "the other results were written")

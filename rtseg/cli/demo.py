"""``rtseg demo``: segment a webcam, video file, stream or the synthetic street video live, with FPS.

A thin layer over :mod:`rtseg.video`: load the model through the runner interface, open the
source, run the pipelined loop with a progress bar, then print the summary table (or ``--json``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from rtseg.cli import params as P
from rtseg.cli._app import app, console, print_json
from rtseg.errors import RtsegError
from rtseg.io import atomic_write_json, check_not_input, check_replaceable_file, parse_hw

DEFAULT_SYNTHETIC_FRAMES = 300


def _load_runner(model: str, backend: Optional[str], device: str, precision: str, input_hw: Optional[tuple[int, int]], threads: Optional[int]) -> Any:
    from rtseg.runtime import load_runner

    kwargs: dict[str, Any] = dict(backend=backend, device=device, precision=precision, input_hw=input_hw, batch=1)
    if threads is not None:
        if "threads" not in inspect.signature(load_runner).parameters:
            raise RtsegError("--threads is not supported by this rtseg's runners")
        kwargs["threads"] = threads
    return load_runner(model, **kwargs)


def _summary_table(rec: dict[str, Any]) -> Table:
    from rtseg.video.stats import STAGE_HELP

    src = rec["source"]
    t = Table(title=f"rtseg demo: {rec['model']} on {rec['backend']} ({rec['device']}, {rec['precision']}) at "
              f"{rec['input_hw'][0]}x{rec['input_hw'][1]}, source {src['name']}")
    t.add_column("stage")
    t.add_column("what", style="dim")
    t.add_column("mean ms", justify="right")
    t.add_column("p90 ms", justify="right")
    t.add_column("n", justify="right")
    for name, st in rec["stages"].items():
        t.add_row(name, STAGE_HELP.get(name, ""), f"{st['mean_ms']:.2f}", f"{st['p90_ms']:.2f}", str(st["n"]))
    return t


def _print_summary(rec: dict[str, Any]) -> None:
    console.print(_summary_table(rec))
    console.print(
        f"frames: [bold]{rec['frames']}[/] out, {rec['frames_captured']} captured, "
        f"[bold]{rec['frames_dropped']}[/] dropped (policy: {rec['source']['policy']})"
    )
    console.print(f"inference FPS:  [bold]{rec['inference_fps']:.1f}[/] (frames / time in the runner call)")
    ratio = rec.get("end_to_end_over_inference")
    console.print(
        f"end-to-end FPS: [bold]{rec['end_to_end_fps']:.1f}[/] (frames / wall time, capture to output)"
        + (f", {100 * ratio:.0f}% of inference" if ratio else "")
    )
    waits = rec.get("inference_waits_s")
    if waits and rec.get("wall_s"):
        console.print(
            f"[dim]the inference thread spent {waits['for_input']:.2f} s taking frames and {waits['handing_on']:.2f} s handing them "
            f"to the output stage, of a {rec['wall_s']:.2f} s run[/]"
        )
    if rec.get("standalone_inference_fps"):
        alone = rec["standalone_inference_fps"]
        console.print(
            f"inference FPS measured alone before the run: {alone:.1f} "
            f"(end-to-end is {100 * rec['end_to_end_fps'] / alone:.0f}% of it; the other stages share the CPU)"
        )
    out = rec.get("output")
    if out:
        console.print(
            f"wrote [bold]{out['path']}[/] ({out['codec']}, {out['fps']} FPS, {out['size_hw'][1]}x{out['size_hw'][0]}): "
            f"{out['frames_written']} frames written, {out['frames_read_back']} read back"
        )
        if out["codec"] == "mp4v":
            console.print("[dim]note: mp4v (MPEG-4 Part 2) plays in VLC/ffplay but not in browsers; this OpenCV has no H.264 encoder[/]")
    load = rec["host"].get("load_avg_1_5_15")
    console.print(f"[dim]{rec['host']['cpu']}, {rec['host']['cpu_count']} cores, load {load}; threads {rec['threads']}[/]")
    reason = rec["end_reason"]
    style = "yellow" if ("early" in reason or "stopped delivering" in reason or "failed" in reason) else "dim"
    console.print(f"[{style}]ended: {reason}[/]")


@app.command("demo")
def demo(
    model: str = typer.Option(..., "--model", "-m", help="Engine (.engine/.plan), ONNX file, checkpoint (.pt), arch JSON or built-in arch name."),
    source: str = typer.Option("synthetic", "--source", "-s", help="Webcam index (0, 1...), video file, rtsp:// or http:// URL, or synthetic[:HxW]."),
    backend: Optional[str] = typer.Option(None, help="Runner backend: torch, onnxruntime or tensorrt (default: from the model file)."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N.", callback=P.device),
    precision: str = typer.Option("fp32", help="fp32 or fp16 (torch/onnxruntime); an ONNX file or engine runs in its own precision (int8 included)."),
    input: Optional[str] = typer.Option(None, "--input", help="Model input size HxW (default: the model's, or 512x1024 for an arch or checkpoint without one).", callback=P.hw_size),
    show: Optional[bool] = typer.Option(None, "--show/--no-show", help="Open a window (default: when OpenCV has GUI support and a display)."),
    save: Optional[Path] = typer.Option(None, "--save", help="Write the overlaid video here (.mp4, .avi, .mkv...).", callback=P.output_file),
    frames: Optional[int] = typer.Option(None, "--frames", help=f"Stop after N frames (synthetic default {DEFAULT_SYNTHETIC_FRAMES}; files: all; webcam: until q or Ctrl-C).", callback=P.COUNT),
    alpha: float = typer.Option(0.5, "--alpha", help="Weight of the class colors in the blend, 0..1.", callback=P.between(0, 1)),
    fps_text: bool = typer.Option(True, "--fps-text/--no-fps-text", help="Draw the rolling inference and end-to-end FPS on the frames."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Intra-op threads for the runner (default: the backend's).", callback=P.THREADS),
    warmup: int = typer.Option(5, "--warmup", help="Untimed runner calls before the clock starts.", callback=P.NON_NEGATIVE),
    baseline: int = typer.Option(20, "--baseline", help="Time the runner alone this many times before the run (0: skip).", callback=P.NON_NEGATIVE),
    seed: int = typer.Option(0, "--seed", help="Seed of the synthetic video.", callback=P.SEED),
    record: Optional[Path] = typer.Option(None, "--record", help="Also write the measurement record JSON here.", callback=P.output_file),
    json_out: bool = typer.Option(False, "--json", help="Print the measurement record as one JSON object on stdout."),
) -> None:
    """Segment a video, webcam or the synthetic street scene live; report inference and end-to-end FPS."""
    from rtseg.video import DemoOptions, model_meta, open_source

    input_hw = parse_hw(input) if input else None
    show = _check_outputs(model, source, save, record, show)

    synthetic = source.strip() == "synthetic" or source.strip().startswith("synthetic:")
    # A camera, file or stream is opened before the model loads, so a wrong source fails fast.
    src = None if synthetic else open_source(source)
    runner = None
    try:
        runner = _load_runner(model, backend, device, precision, input_hw, threads)
        meta = model_meta(runner, name=f"model {model}")
        if runner.info.extra.get("deploy_note"):
            console.print(f"[yellow]note:[/] {runner.info.extra['deploy_note']}")
        if src is None:
            src = open_source(
                source,
                synthetic_hw=tuple(meta.input_hw),  # type: ignore[arg-type]
                synthetic_frames=frames or DEFAULT_SYNTHETIC_FRAMES,
                seed=seed,
            )
        total = min(n for n in (frames, src.frame_count) if n) if (frames or src.frame_count) else None
        if not show and save is None:
            console.print("[dim]no window and no --save: measuring only (add --save out.mp4 to keep the overlaid video)[/]")
        options = DemoOptions(alpha=alpha, max_frames=frames, save=save, show=bool(show), fps_text=fps_text, warmup=warmup,
                              baseline_iters=baseline)
        result = _run_with_progress(src, runner, meta, options, model, total)
    finally:
        if src is not None:
            src.stop()  # idempotent; releases the device if the run never started
        if runner is not None:
            runner.close()
    rec = result.record
    if record is not None:
        atomic_write_json(record, rec)
    if json_out:
        print_json(rec)
    else:
        _print_summary(rec)
        if record is not None:
            console.print(f"[dim]record written to {record}[/]")


def _check_outputs(model: str, source: str, save: Path | None, record: Path | None, show: bool | None) -> bool:
    """Refuse outputs that would overwrite an input or another kind of file, or a video extension
    OpenCV cannot write, and a window OpenCV cannot open; returns whether to show one."""
    from rtseg.video.cvutil import gui_unavailable_reason
    from rtseg.video.pipeline import RECORD_FORMAT
    from rtseg.video.writer import CODECS

    check_not_input(save, [source, model], "--save")  # an overlay written over the video it is drawn from
    check_not_input(record, [source, model, save], "--record")
    check_replaceable_file(record, RECORD_FORMAT, "a demo record", name="--record")
    if save is not None and save.suffix.lower() not in CODECS:
        raise RtsegError(f"cannot write video {save}: unknown extension {save.suffix or '(none)'!r}; use one of {', '.join(CODECS)}")
    if show:
        reason = gui_unavailable_reason()
        if reason:
            raise RtsegError(reason)
        return True
    if show is None:
        return gui_unavailable_reason() is None
    return False


def _run_with_progress(src: Any, runner: Any, meta: Any, options: Any, model: str, total: int | None) -> Any:
    """:func:`rtseg.video.run_demo` under a progress bar that shows the rolling FPS."""
    from rtseg.video import run_demo

    with Progress(
        SpinnerColumn(), TextColumn("[bold]demo[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[fps]}"), TimeElapsedColumn(), console=console, transient=True,
    ) as progress:
        task = progress.add_task(src.name, total=total, fps="")

        def on_frame(stats: Any) -> None:
            inf, e2e = stats.rolling()
            progress.update(task, completed=stats.frames, fps=f"inference {inf:.1f} FPS, end-to-end {e2e:.1f} FPS")

        return run_demo(src, runner, meta, options, on_frame=on_frame, model_name=model)

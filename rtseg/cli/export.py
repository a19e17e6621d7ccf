"""``rtseg export`` (checkpoint/arch -> ONNX -> TensorRT, gated by parity) and ``rtseg bench``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rtseg.cli import params as P
from rtseg.cli._app import app, console, print_json
from rtseg.io import parse_hw
from rtseg.reporting import RichReporter


#: The opsets torch's ONNX exporters write: 7 (the TorchScript exporter's oldest) to 23 (the dynamo exporter's newest).
_OPSET = P.between(7, 23)
#: An mIoU difference in points, at most 100 (both mIoUs lie in 0..100); a negative limit demands that INT8 gain.
_MIOU_POINTS = P.number(hi=100)


def _parity_table(reports: list) -> Table:
    t = Table(title="parity: argmax pixel agreement is the gate")
    for col in ("check", "reference", "max |diff|", "agreement", "gate", "result"):
        t.add_column(col, justify="left" if col in ("check", "reference") else "right")
    for r in reports:
        result = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
        if not r.finite:
            result += " [red](overflow/NaN)[/]"
        t.add_row(r.name, r.reference, f"{r.max_abs_diff:.2g}", f"{r.agreement * 100:.3f} %", f">= {r.threshold * 100:.2f} %", result)
    peaks = [f"{r.name}: {r.max_activation:.3g}" for r in reports if r.max_activation is not None]
    if peaks:
        t.caption = "largest activation stored in FP16 (limit 65504): " + ", ".join(peaks)
    return t


def _int8_table(rep: Any) -> Table:
    t = Table(title=f"INT8 gate: mIoU on {rep.images} {rep.data} {rep.split} images (calibration-disjoint)")
    for col in ("mIoU fp32", "mIoU int8", "drop (points)", "allowed", "argmax agreement", "result"):
        t.add_column(col, justify="right")
    t.add_row(f"{rep.miou_fp32:.2f}", f"{rep.miou_int8:.2f}", f"{rep.drop:.2f}", f"<= {rep.max_drop:g}", f"{rep.agreement * 100:.2f} %",
              "[green]pass[/]" if rep.passed else "[red]FAIL[/]")
    return t


def _int8_what(meta: dict) -> str:
    art = meta["artifacts"].get("onnx_int8", {})
    cal = art.get("calibration", {})
    scales = "per-channel" if art.get("per_channel") else "per-tensor"
    return f"int8 QDQ, {cal.get('method')} calibration on {cal.get('images')} {cal.get('data')} images, {scales} weights"


def _files_table(res: Any) -> Table:
    """The files an export wrote: name, size and what each holds."""
    t = Table(title=f"{res.name} exported to {res.out_dir}/")
    t.add_column("file")
    t.add_column("size", justify="right")
    t.add_column("what")
    meta = res.metadata
    rows = [(res.onnx, f"fp32, {meta['export']['exporter']} exporter, opset {meta['export']['opset']}"),
            (res.onnx_fp16, "fp16, fp32 I/O (strongly typed TensorRT)"),
            (res.onnx_int8, _int8_what(meta)),
            (res.engine, f"TensorRT {meta['artifacts'].get('engine', {}).get('tensorrt', '')} engine"),
            (res.engine_int8, f"TensorRT INT8 engine ({meta['artifacts'].get('engine_int8', {}).get('fp16_mode', '')})"),
            (res.metadata_path, "sidecar: input, mean/std, classes, arch, parity")]
    for path, what in rows:
        if path is not None:
            t.add_row(Path(path).name, f"{Path(path).stat().st_size / 1e6:.2f} MB", what)
    return t


@app.command("export")
def export(
    model: str = typer.Argument(..., help="Checkpoint (.pt), arch JSON or built-in arch name (baseline1, erfnet...)."),
    onnx: bool = typer.Option(True, "--onnx", help="Write the ONNX files (always on: the engine is built from them)."),
    trt: Optional[bool] = typer.Option(None, "--trt/--no-trt", help="Also build a TensorRT engine (needs the trt extra and a GPU)."),
    fp16: Optional[bool] = typer.Option(None, "--fp16/--fp32", help="FP16 ONNX variant and FP16 engine (profile default: fp16)."),
    int8: Optional[bool] = typer.Option(None, "--int8/--no-int8", help="Also write model-int8.onnx (QDQ), calibrated on --calib images and gated by mIoU; with --trt an INT8 engine."),
    calib: Optional[str] = typer.Option(None, "--calib", help="INT8 calibration data: synthetic, cityscapes:PATH or camvid:PATH (default: the checkpoint's dataset, else synthetic)."),
    calib_images: Optional[int] = typer.Option(None, "--calib-images", help="INT8: training images that calibrate the activation ranges (default 32).", callback=P.COUNT),
    int8_val_images: Optional[int] = typer.Option(None, "--int8-val-images", help="INT8: validation images the mIoU gate scores (default 16).", callback=P.COUNT),
    calib_method: Optional[str] = typer.Option(None, "--calib-method", help="INT8 calibration: percentile (default: kept the most mIoU, docs/export.md), minmax or entropy."),
    per_channel: Optional[bool] = typer.Option(None, "--per-channel/--per-tensor", help="INT8 weight scales per output channel (default) or per tensor."),
    int8_max_drop: Optional[float] = typer.Option(None, "--int8-max-drop", help="Refuse the INT8 model when its mIoU is more than this many points below FP32's (default 1.0).", callback=_MIOU_POINTS),
    int8_keep_float: Optional[List[str]] = typer.Option(None, "--int8-keep-float", help="Leave these nodes in float (repeatable or comma-separated; a refused export lists the first/last layers)."),
    input: Optional[str] = typer.Option(None, "--input", help="Input size HxW (default: the checkpoint's, else 512x1024).", callback=P.hw_size),
    batch: Optional[int] = typer.Option(None, "--batch", help="Batch size of the exported graph.", callback=P.BATCH),
    dynamic: Optional[bool] = typer.Option(None, "--dynamic/--static", help="Dynamic batch/H/W axes (and a TensorRT optimization profile)."),
    dynamic_min: Optional[str] = typer.Option(None, "--dynamic-min", help="Smallest HxW of the TensorRT profile (default: half the input).", callback=P.hw_size),
    dynamic_max: Optional[str] = typer.Option(None, "--dynamic-max", help="Largest HxW of the TensorRT profile (default: twice the input).", callback=P.hw_size),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset, 7..23 (default 17; the dynamo exporter uses >= 18).", callback=_OPSET),
    workspace_gb: Optional[float] = typer.Option(None, "--workspace-gb", help="TensorRT builder workspace in GiB (default 4).", callback=P.POSITIVE),
    exporter: Optional[str] = typer.Option(None, "--exporter", help="torchscript (default) or dynamo; the other is the fallback."),
    simplify: Optional[bool] = typer.Option(None, "--simplify/--no-simplify", help="Simplify the ONNX with onnxslim (kept only if valid and equal)."),
    check: bool = typer.Option(True, "--check/--no-check", help="Fail the export when a parity gate fails (figures are always measured)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default engines/<device>/<model>/); a previous export there is replaced once the new one is complete.", callback=P.output_dir),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write over files of an export's names in --out that no rtseg export wrote (refused without it)."),
    profile: str = typer.Option("default", "--profile", help="Export profile: a name from export/ or a profile JSON path."),
    device: str = typer.Option("cuda", "--device", help="GPU the TensorRT engine is built for (cuda or cuda:N).", callback=P.gpu_device),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Export a model through ONNX (FP32 + FP16, calibrated INT8 with --int8) to a TensorRT engine, with parity and mIoU gates and a metadata sidecar."""
    from rtseg.export.int8 import Int8GateError
    from rtseg.export.parity import ParityGateError
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import load_profile

    base = load_profile(profile)
    i8 = base.int8_options
    int8_options = replace(
        i8, calib=calib or i8.calib, calib_images=calib_images or i8.calib_images, val_images=int8_val_images or i8.val_images,
        method=(calib_method or i8.method).strip().lower(), per_channel=i8.per_channel if per_channel is None else per_channel,
        max_drop=i8.max_drop if int8_max_drop is None else int8_max_drop,
        keep_float=tuple(n.strip() for v in int8_keep_float or () for n in v.split(",") if n.strip()) or i8.keep_float)
    opts = base.with_(
        int8=int8, int8_options=int8_options, trt=trt, fp16=fp16, batch=batch, dynamic=dynamic, opset=opset, workspace_gb=workspace_gb, exporter=exporter,
        simplify=simplify, out_dir=out, device=device, overwrite=overwrite or None,
        input_hw=parse_hw(input) if input else None,
        dynamic_min_hw=parse_hw(dynamic_min) if dynamic_min else None,
        dynamic_max_hw=parse_hw(dynamic_max) if dynamic_max else None,
    )
    opts.check = check
    try:
        # one line per stage rather than a spinner: the TensorRT build draws its own progress bars
        res = export_model(model, opts, reporter=RichReporter(console))
    except ParityGateError as exc:
        console.print(_parity_table(exc.reports))
        if json_out:
            print_json({"passed": False, "error": str(exc), "parity": [r.to_dict() for r in exc.reports]})
        raise
    except Int8GateError as exc:
        console.print(_int8_table(exc.report))
        if json_out:
            print_json({"passed": False, "error": str(exc), "int8_gate": exc.report.to_dict()})
        raise
    for note in res.notes:
        console.print(f"[dim]note:[/] {note}")
    console.print(_parity_table(res.parity))
    if res.int8 is not None:
        console.print(_int8_table(res.int8))
    console.print(_files_table(res))
    if not res.metadata["model"]["trained"]:
        console.print("[yellow]note:[/] untrained arch: seeded random weights, for latency work before training")
    if json_out:
        print_json(res.to_dict())


@app.command("bench")
def bench(
    models: List[str] = typer.Argument(..., help="Models: checkpoints, arch JSONs, built-in names (baseline1, erfnet), ONNX files, engines."),
    backend: Optional[List[str]] = typer.Option(None, "--backend", help="torch, onnxruntime, tensorrt (repeatable; default: torch and onnxruntime, or the file's own)."),
    input: str = typer.Option("512x1024", "--input", help="Input size HxW.", callback=P.hw_size),
    batch: int = typer.Option(1, "--batch", help="Batch size.", callback=P.BATCH),
    warmup: int = typer.Option(10, "--warmup", help="Untimed calls before measuring.", callback=P.NON_NEGATIVE),
    iters: int = typer.Option(50, "--iters", help="Timed calls.", callback=P.COUNT),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N.", callback=P.device),
    precision: str = typer.Option("fp32", "--precision", help="fp32 or fp16 (fp16: GPU torch, fp16 ONNX, FP16 engine); ONNX files and engines run in their own precision (model-int8.onnx: int8)."),
    cuda_graphs: bool = typer.Option(False, "--cuda-graphs", help="Replay the torch model as a CUDA graph (static shapes)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads for torch and ONNX Runtime (default: all cores).", callback=P.THREADS),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout (results + measurement record)."),
    lut: Optional[str] = typer.Option(None, "--lut", help="A LUT: its prediction beside each net it can price (threads default to the LUT's)."),
    clock: Optional[str] = typer.Option(None, "--clock", help="wall (what a caller waits) or thread (CPU time of a one-thread run, steady on a shared machine); default: the --lut's clock, else wall."),
    rounds: int = typer.Option(1, "--rounds", help="Time every model in this many shuffled interleaved rounds (the --iters split over them) instead of one after another.", callback=P.COUNT),
) -> None:
    """Latency of models on backends under one protocol: mean, median, p90, p99 (ms) and FPS, side by side."""
    from rtseg.runtime.bench import plan, run_bench

    hw = parse_hw(input)
    todo, _ = plan(models, backend)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as prog:
        task = prog.add_task("bench", total=len(todo))

        def start(model: str, b: str) -> None:
            prog.update(task, description=f"[cyan]{model}[/] on {b}")

        rep = run_bench(models, backend, hw, batch, warmup, iters, device, precision, cuda_graphs, threads,
                        on_start=start, on_row=lambda r: prog.advance(task), lut=lut, rounds=rounds, clock=clock)
    t = Table(title=f"latency (ms) at {hw[0]}x{hw[1]}, batch {batch} on {rep.record['device']}")
    t.add_column("model", overflow="fold", min_width=10)
    t.add_column("backend", overflow="fold")
    t.add_column("prec")
    priced = any("lut_predicted_ms" in r.extra for r in rep.rows)
    for col in ("mean", "median", "p90", "p99", "FPS") + (("LUT ms",) if priced else ()):
        t.add_column(col, justify="right")
    for r in rep.rows:
        s = r.stats
        lut_cell = (f"{r.extra['lut_predicted_ms']:.2f}" if "lut_predicted_ms" in r.extra else "-",) if priced else ()
        t.add_row(r.model, r.backend, r.precision, f"{s.mean_ms:.2f}", f"{s.median_ms:.2f}", f"{s.p90_ms:.2f}",
                  f"{s.p99_ms:.2f}", f"{r.fps:.1f}", *lut_cell)
    console.print(t)
    for s in rep.skipped:
        console.print(f"[yellow]skipped[/] {s['model']} on {s['backend']}: {s['reason']}")
    rec = rep.record
    console.print(f"[dim]record:[/] {rec['device']}; threads {rec['threads']}; load average {rec['load_average']}; "
                  f"warm-up {rec['warmup']}, {rec['iters']} timed calls; "
                  + ", ".join(sorted({f"{r.backend} {r.backend_version}" for r in rep.rows})))
    for name, source in rec.get("peers", {}).items():
        console.print(f"[dim]peer {name}:[/] {source}")
    for r in rep.rows:
        if r.extra.get("deploy_note"):
            console.print(f"[yellow]note:[/] {r.model} on {r.backend}: {r.extra['deploy_note']}")
    for what in sorted({(r.backend, r.timed) for r in rep.rows}):
        console.print(f"[dim]timed ({what[0]}):[/] {what[1]}")
    load = rec.get("load_average")
    if load and rec.get("cores") and device == "cpu" and max(load[:1] + [r.extra.get("load_1m") or 0 for r in rep.rows]) > rec["cores"]:
        console.print(f"[yellow]warning:[/] the CPU was busy (load average {load[0]} on {rec['cores']} cores): these latencies are inflated; "
                      "re-run on an idle machine, or with --threads 1 to avoid oversubscribed thread pools")
    if json_out:
        print_json(rep.to_dict())

"""``rtseg profile-ops``, ``rtseg lut show`` and ``rtseg lut validate``: thin wrappers over
:mod:`rtseg.latency.profile`, :mod:`rtseg.latency.lut` and :mod:`rtseg.latency.validate`."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.table import Table

from rtseg.cli import params as P
from rtseg.cli._app import app, console, new_typer, print_json
from rtseg.io import parse_hw
from rtseg.reporting import RichReporter

lut_app = new_typer(help="Inspect and validate latency lookup tables (LUTs).")
app.add_typer(lut_app, name="lut")


@app.command("profile-ops")
def profile_ops_cmd(
    space: str = typer.Option("ssr", help="Search space whose operators to measure."),
    space_opt: Optional[list[str]] = typer.Option(None, "--space-opt", help=P.SPACE_OPT_HELP + " Recorded in the LUT and the arch."),
    input: str = typer.Option("512x1024", "--input", help="Network input size HxW.", callback=P.hw_size),
    backend: str = typer.Option("torch", help="torch, onnxruntime or tensorrt."),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N.", callback=P.device),
    precision: str = typer.Option("fp32", help="fp32, fp16 (on a GPU) or int8 (onnxruntime: each operator quantized, QDQ around it, as rtseg export --int8 writes the net)."),
    batch: int = typer.Option(1, help="Batch size.", callback=P.BATCH),
    warmup: Optional[int] = typer.Option(None, help="Warm-up runs per operator [default: 5].", callback=P.NON_NEGATIVE),
    repeats: Optional[int] = typer.Option(None, help="Timed runs per operator (more are added until the median settles) [default: 25].", callback=P.COUNT),
    method: str = typer.Option("network", help="network (CAS: each operator inside a stack of itself, minus identities) or isolated (each operator alone)."),
    out: Optional[Path] = typer.Option(None, help="LUT path [default: engines/<device>/lut-<space>-<backend>-<precision>-<H>x<W>[-<N>t].json].", callback=P.output_file),
    classes: int = typer.Option(19, help="Number of classes (the head's operators depend on it).", callback=P.COUNT),
    threads: Optional[int] = typer.Option(None, help="CPU threads for torch/onnxruntime (recorded in the LUT) [default: torch's].", callback=P.THREADS),
    clock: str = typer.Option("wall", help="wall (what a user waits) or thread (CPU time of one thread, --threads 1: for a CPU shared with other work)."),
    min_time: Optional[float] = typer.Option(None, "--min-time", help="Keep timing an operator at least this many seconds [default: 0.03].", callback=P.NON_NEGATIVE),
    head: Optional[list[str]] = typer.Option(None, help="Head(s) to cover [default: every head of the space]."),
    recheck: bool = typer.Option(True, help="Re-time every entry quickly at the end and re-measure those a burst of load inflated."),
    calibration_archs: int = typer.Option(4, "--calibration-archs", help="Random whole networks timed at the end to fit the layer-cost factor (0: keep raw entries).", callback=P.NON_NEGATIVE),
    speed_reference: bool = typer.Option(True, help="Time a reference operator around every measurement, so entries measured while the machine ran faster or slower are charged at its typical speed."),
    force: bool = typer.Option(False, help="Discard an existing LUT at --out measured with other settings and start over."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object (the LUT summary) on stdout."),
) -> None:
    """Measure every operator a search space can place at an input size into a LUT (resumable)."""
    from rtseg.latency.lut import load_lut
    from rtseg.latency.entries import DEFAULT_MIN_TIME_S, DEFAULT_REPEATS, DEFAULT_WARMUP
    from rtseg.latency.profile import profile_ops
    from rtseg.spaces import parse_space_options

    h, w = parse_hw(input)
    with _term_as_interrupt():  # `kill` flushes what was measured, like Ctrl-C
        path = profile_ops(
            space, h, w, backend=backend, device=device, precision=precision, batch=batch,
            warmup=DEFAULT_WARMUP if warmup is None else warmup, repeats=DEFAULT_REPEATS if repeats is None else repeats,
            method=method, out_path=out, num_classes=classes, reporter=RichReporter(console), threads=threads, heads=head or None,
            force=force, clock=clock, min_time_s=DEFAULT_MIN_TIME_S if min_time is None else min_time,
            recheck=recheck, calibration_archs=calibration_archs, speed_reference=speed_reference,
            space_options=parse_space_options(space_opt),
        )
    lut = load_lut(path)
    summary = lut.summary()
    if json_out:
        print_json(summary)
        return
    _print_summary(summary)
    console.print(f"wrote [bold]{path}[/]")


@lut_app.command("show")
def show(
    lut: Path = typer.Argument(..., help="LUT JSON file.", callback=P.input_file),
    top: int = typer.Option(5, help="How many fastest and slowest operators to list.", callback=P.COUNT),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Provenance and a summary of a LUT (entries, fastest and slowest operators, profiling time)."""
    from rtseg.latency.lut import load_lut

    summary = load_lut(lut).summary(top=top)
    if json_out:
        print_json(summary)
        return
    _print_summary(summary)


@lut_app.command("validate")
def validate(
    lut: Path = typer.Argument(..., help="LUT JSON file.", callback=P.input_file),
    samples: int = typer.Option(16, help="How many random archs of the LUT's space to predict and measure (Kendall's tau needs 2).", callback=P.at_least(2)),
    seed: int = typer.Option(0, help="Seed of the arch sample.", callback=P.SEED),
    warmup: int = typer.Option(10, help="Warm-up runs per arch.", callback=P.NON_NEGATIVE),
    repeats: int = typer.Option(100, help="Timed runs per arch, split over --rounds interleaved rounds.", callback=P.COUNT),
    rounds: int = typer.Option(10, help="Interleaved measuring rounds (spreads bursts of load over all archs).", callback=P.COUNT),
    plot: Optional[Path] = typer.Option(None, help="Save a predicted-vs-measured scatter (PNG).", callback=P.output_file),
    force: bool = typer.Option(False, help="Measure even if the LUT was profiled on another device."),
    speed_correction: bool = typer.Option(True, help="Also bring each timed sample to the LUT's typical speed by the reference operator timed beside it; the headline is whichever of the corrected and uncorrected timings has the better agreement between its even and odd rounds (both are printed)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Predict N random archs from a LUT, measure them end to end, report MAPE, within-10% and Kendall's tau."""
    from rtseg.latency.validate import validate_lut

    res = validate_lut(lut, samples=samples, seed=seed, warmup=warmup, repeats=repeats, rounds=rounds, force=force,
                       reporter=RichReporter(console), plot=plot, speed_correction=speed_correction)
    if json_out:
        print_json(res.to_dict())
        return
    s = res.settings
    t = Table(title=f"{res.lut}: {s['backend']} {s['precision']} {s['input'][0]}x{s['input'][1]} on {s['device']}"
                    + (f" ({s['threads']} threads)" if s.get("threads") else ""))
    for col in ("#", "ops", "predicted ms", "machine speed", "measured ms (p10-p90)", "error"):
        t.add_column(col, justify="right")
    for r in res.rows:
        pred = r.predicted_ms if res.speed_corrected else r.predicted_at_base_ms
        t.add_row(str(r.index), str(r.n_ops), f"{pred:.3f}", f"x{r.speed:.2f}" if res.corrected else "-",
                  f"{r.measured_ms:.3f} ({r.measured_p10_ms:.2f}-{r.measured_p90_ms:.2f})", f"{res.row_error(r):+.1%}")
    console.print(t)
    for note in s.get("notes") or []:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"MAPE [bold]{res.mape:.1%}[/], within ±10%: [bold]{res.within_10pct:.0%}[/], "
                  f"Kendall tau [bold]{res.kendall_tau:.3f}[/] over {res.samples} archs (mean signed error {res.mean_error:+.1%})")
    if res.corrected:
        other, other_name = (res.uncorrected, "uncorrected") if res.speed_corrected else (res.corrected, "speed-corrected")
        ag = res.round_agreement
        console.print(f"headline: {'speed-corrected' if res.speed_corrected else 'uncorrected'} figures, whose interleaved rounds agree "
                      f"best (even vs odd rounds: tau {ag['corrected']['tau']:.2f} corrected, {ag['raw']['tau']:.2f} raw); "
                      f"{other_name}: MAPE {other['mape']:.1%}, within ±10% {other['within_10pct']:.0%}, "
                      f"Kendall tau {other['kendall_tau']:.3f} (mean signed error {other['mean_error']:+.1%})")
    if s.get("calibration_scale", 1.0) != 1.0:
        console.print(f"layer entries scaled x{s['calibration_scale']:.3f} by the LUT's calibration (fitted on other archs than these)")
    if plot is not None:
        console.print(f"wrote {plot}")


@contextmanager
def _term_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while profiling, so the LUT is flushed before exiting."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _probe_text(p: dict[str, Any] | None) -> str:
    if not p:
        return "not recorded"
    return (f"reference {p['op']}: {p['min_ms']:.3f}-{p['max_ms']:.3f} ms over {p['n']} timings "
            f"(spread {p['spread']:.0%}{'; re-profile on an idle machine' if (p['spread'] or 0) > 0.10 else ''})")


def _speed_text(sp: dict[str, Any] | None) -> str:
    if not sp:
        return "none (entries charged as measured)"
    return (f"{sp['op']}: typical {sp['base_ms']:.3f} ms; beside the entries it ran {sp['p10']:.2f}-{sp['p90']:.2f}x that (p10-p90), "
            "and each entry is charged at the typical speed")


def _calibration_text(c: dict[str, Any] | None, rejected: dict[str, Any] | None = None) -> str:
    if not c and rejected:
        return (f"rejected: whole networks ran x{rejected['scale']:.2f} the sum of their layer entries, too far from 1 to be a "
                "cache effect (busy machine or too few repeats); entries used as measured; re-profile on a quiet machine")
    if not c:
        return "none (layer entries used as measured)"
    return (f"x{c['scale']:.3f} on layer entries, fitted on {c.get('archs')} whole networks "
            f"(their error {c.get('mape_before', 0):.1%} -> {c.get('mape_after', 0):.1%})")


def _recheck_text(r: dict[str, Any] | None) -> str:
    if not r:
        return "not run"
    return f"{r.get('checked')} entries re-timed, {r.get('lowered')} re-measured lower (a burst of load had inflated them)"


def _print_summary(s: dict[str, Any]) -> None:
    prov = s["provenance"]
    dev = prov.get("device") or {}
    t = Table(title=f"LUT {s.get('path') or ''}", show_header=False)
    t.add_column("field")
    t.add_column("value")
    dev_desc = f"{dev.get('name')} ({dev.get('arg', dev.get('kind'))})"
    if dev.get("kind") == "cpu":
        dev_desc += f", {dev.get('threads')} threads of {dev.get('logical_cores')} cores"
    else:
        dev_desc += f", sm {dev.get('compute_capability')}, driver {dev.get('driver')}, CUDA {dev.get('cuda')}"
    rows = [
        ("space", f"{s['space']}{' ' + str(s['space_options']) if s.get('space_options') else ''} ({s['num_classes']} classes, heads {', '.join(s['heads'])})"),
        ("device", dev_desc),
        ("backend", f"{prov.get('backend')} {prov.get('backend_version')}"),
        ("precision / batch", f"{prov.get('precision')} / {prov.get('batch')}"),
        ("input", "x".join(map(str, prov.get("input", [])))),
        ("method", str(prov.get("method")) + (f" (stack of {prov.get('stack')})" if prov.get("stack") else "")),
        ("clock", str(prov.get("clock_detail") or prov.get("clock", "wall"))),
        ("warm-up / repeats", f"{prov.get('warmup')} / {prov.get('repeats')} (+ until the median settles)"),
        ("entries", f"{s['entries']}" + ("" if s["complete"] else f" of {s.get('expected_entries')} (incomplete: re-run profile-ops to resume)")),
        ("network constant", f"{s['constant_ms']:.3f} ms" + ("" if s["skeleton_measured"] else " (skeleton not measured yet)")),
        ("layer calibration", _calibration_text(s.get("calibration"), s.get("calibration_rejected"))),
        ("recheck", _recheck_text(prov.get("recheck"))),
        ("profiling time", f"{(s.get('profiling_s') or 0):.1f} s over {prov.get('runs', 1)} run(s)"),
        ("speed reference", _speed_text(s.get("speed"))),
        ("machine steadiness", _probe_text(s.get("probe"))),
        ("created / updated", f"{prov.get('created')} / {prov.get('updated')}"),
        ("rtseg", str(prov.get("rtseg_version"))),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    for title, key in (("fastest operators", "fastest"), ("slowest operators", "slowest")):
        ot = Table(title=title)
        for col in ("operator", "median ms", "p10", "p90", "n"):
            ot.add_column(col, justify="right" if col != "operator" else "left", overflow="fold")
        for r in s[key]:
            ot.add_row(r["op"], f"{r['median_ms']:.4f}", f"{r['p10_ms']:.4f}", f"{r['p90_ms']:.4f}", str(r["n"]))
        console.print(ot)

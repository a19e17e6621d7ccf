"""``rtseg arch sample`` and ``rtseg arch show``."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rtseg.arch import ARCH_FORMAT
from rtseg.cli import params as P
from rtseg.cli._app import app, console, new_typer, print_json
from rtseg.errors import RtsegError
from rtseg.io import atomic_write_json, check_replaceable_file, parse_hw

arch_app = new_typer(help="Create and inspect architectures (JSON genotypes).")
app.add_typer(arch_app, name="arch")


@arch_app.command("sample")
def sample(
    space: str = typer.Option("ssr", help="Search space to sample from."),
    space_opt: Optional[list[str]] = typer.Option(None, "--space-opt", help=P.SPACE_OPT_HELP + " Recorded in the LUT and the arch."),
    seed: int = typer.Option(0, help="Random seed (the same seed gives the same arch).", callback=P.SEED),
    classes: int = typer.Option(19, help="Number of classes.", callback=P.COUNT),
    head: str = typer.Option("classifier", help="Head: classifier or aggregation (ssr)."),
    out: Optional[Path] = typer.Option(None, help="Write the arch JSON here (default: stdout).", callback=P.output_file),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file that is not an arch JSON."),
) -> None:
    """Write a random valid arch of a space."""
    from rtseg.spaces import get_space, parse_space_options  # torch: imported per command so `rtseg` starts without it

    check_replaceable_file(out, ARCH_FORMAT, "an arch JSON", overwrite)
    sp = get_space(space, parse_space_options(space_opt))
    if head not in sp.heads:
        raise RtsegError(f"head {head!r} is not available in space {space!r}; choose one of {', '.join(sp.heads)}")
    arch = sp.sample(random.Random(seed), num_classes=classes, head=head)
    arch.name = f"{space}-sample-{seed}"
    if out is None:
        print_json(arch.to_dict())
    else:
        arch.save(out)
        console.print(f"wrote {out}")


@arch_app.command("show")
def show(
    arch: str = typer.Argument(..., help="Arch JSON path or built-in name (e.g. baseline1)."),
    input: str = typer.Option("512x1024", "--input", help="Input size HxW.", callback=P.hw_size),
    classes: Optional[int] = typer.Option(None, help="Override the number of classes.", callback=P.COUNT),
    lut: Optional[Path] = typer.Option(None, help="Latency LUT: adds the predicted latency of this arch.", callback=P.input_file),
    force: bool = typer.Option(False, help="Use a LUT even if its provenance does not match."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Params, FLOPs (multiply-adds, fvcore) and the operator list of an arch."""
    from rtseg.spaces import get_space, load_arch
    from rtseg.summary import summarize

    a = load_arch(arch)
    if classes is not None:
        a = a.with_(num_classes=classes)
    h, w = parse_hw(input, get_space(a.space).size_divisor)
    summary = summarize(a, h, w)
    if lut is not None:
        from rtseg.latency.lut import load_lut

        table = load_lut(lut)
        for note in table.check_device(force=force):  # a LUT of another device or backend predicts another machine
            console.print(f"[yellow]note:[/] {note}")
        pred = table.predict(a, h, w, force=force)
        summary.extra["predicted_latency_ms"] = pred.total_ms
        summary.extra["lut"] = str(lut)
    if json_out:
        print_json(summary.to_dict())
        return
    t = Table(title=f"{a.name or arch} ({a.space}, {a.num_classes} classes, head {a.head}) at {h}x{w}")
    t.add_column("#", justify="right")
    t.add_column("operator")
    t.add_column("MACs (M)", justify="right")
    for i, (s, f) in enumerate(zip(summary.ops, summary.op_flops)):
        t.add_row(str(i), s.short(), f"{f / 1e6:.1f}")
    console.print(t)
    console.print(f"params: [bold]{summary.params:,}[/] ({summary.params / 1e6:.3f} M)")
    console.print(f"FLOPs:  [bold]{summary.flops / 1e9:.3f} G[/] multiply-adds (fvcore convention: one multiply-add = one flop)")
    if "predicted_latency_ms" in summary.extra:
        console.print(f"predicted latency: [bold]{summary.extra['predicted_latency_ms']:.3f} ms[/] from {lut}")


@arch_app.command("families")
def families(
    input: str = typer.Option("128x256", "--input", help="Input size HxW (distinct members are counted there).", callback=P.hw_size),
    classes: int = typer.Option(19, help="Number of classes.", callback=P.COUNT),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Hand-designed families that `arch scale` fits to a latency budget: knobs, scaling rule, members."""
    from rtseg.spaces import get_space
    from rtseg.spaces.families import FAMILIES

    rows = []
    for fam in FAMILIES.values():
        h, w = parse_hw(input, get_space(fam.space).size_divisor)
        rows.append({"family": fam.name, "space": fam.space, "rule": fam.rule, "members": len(fam.distinct((h, w), classes)),
                     "source": fam.source,
                     "knobs": {k.name: {"grid": list(k.grid), "default": k.default, "help": k.help} for k in fam.knobs}})
    if json_out:
        print_json({"input": input, "classes": classes, "families": rows})
        return
    t = Table(title=f"hand-designed families (distinct members at {input})")
    for col in ("family", "space", "knobs", "scaling rule", "members"):
        t.add_column(col, justify="right" if col == "members" else "left")
    for r in rows:
        knobs = ", ".join(f"{k} {v['grid'][0]}..{v['grid'][-1]}" for k, v in r["knobs"].items())
        t.add_row(r["family"], r["space"], knobs, r["rule"], str(r["members"]))
    console.print(t)
    console.print("sources: `rtseg arch families --json`; pick a member: `rtseg arch scale FAMILY --latency-ms T`")


@arch_app.command("scale")
def scale(
    family: str = typer.Argument(..., help="Family: baseline1, erfnet, lraspp_mbv3, lraspp_mbv3_os8, stdc, ddrnet (see `rtseg arch families`)."),
    latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help="Budget T: pick the member whose measured latency is nearest it.", callback=P.POSITIVE),
    fix: list[str] = typer.Option([], "--fix", help="Hold a knob at a value, NAME=VALUE (repeatable); without --latency-ms, the member to write."),
    input: str = typer.Option("128x256", "--input", help="Input size HxW.", callback=P.hw_size),
    classes: int = typer.Option(19, help="Number of classes.", callback=P.COUNT),
    backend: str = typer.Option("onnxruntime", help="Backend the latency is measured on: onnxruntime, torch or tensorrt."),
    device: str = typer.Option("cpu", help="cpu or cuda[:N].", callback=P.device),
    threads: Optional[int] = typer.Option(1, help="CPU threads for the measurement (1: honest on a shared CPU).", callback=P.THREADS),
    precision: str = typer.Option("fp32", help="fp32, or fp16 on a GPU."),
    clock: str = typer.Option("wall", help="wall, or thread (one CPU thread's time: steadier on a busy machine)."),
    tol: float = typer.Option(0.05, help="Acceptable distance from T, as a fraction of T.", callback=P.number(0, 1, lo_open=True)),
    out: Optional[Path] = typer.Option(None, help="Write the arch JSON here (default: stdout unless --json).", callback=P.output_file),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file that is not an arch JSON."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Write the member of a hand-designed family nearest a measured latency budget (or at given knobs)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from rtseg.spaces import get_space
    from rtseg.backends.measure import LatencyMeasure
    from rtseg.spaces.families import get_family, parse_knobs, pick_nearest

    check_replaceable_file(out, ARCH_FORMAT, "an arch JSON", overwrite)
    fam = get_family(family)
    fixed = parse_knobs(fix)
    hw = parse_hw(input, get_space(fam.space).size_divisor)
    if latency_ms is None:
        a = fam.arch(classes, **fixed)
        _write_arch(a.to_dict(), {"arch": a.to_dict(), "family": fam.name, "knobs": a.meta["family"]["knobs"]}, out, json_out)
        return
    measure = LatencyMeasure(hw, backend=backend, device=device, threads=threads, precision=precision, clock=clock)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"measuring {fam.name} members on {backend}", total=None)

        def seen(member, ms: float) -> None:
            progress.update(task, description=f"{member.arch.name}: {ms:.2f} ms (T = {latency_ms:g} ms)")

        pick = pick_nearest(fam, latency_ms, measure, input_hw=hw, num_classes=classes, tol=tol, fixed=fixed, on_measure=seen)
    t = Table(title=f"{fam.name} members measured on {backend} ({device}, {threads} thread(s)) at {hw[0]}x{hw[1]}, T = {latency_ms:g} ms")
    for col in ("member", "MACs (G)", "search ms", "measured ms", "vs T"):
        t.add_column(col, justify="left" if col == "member" else "right")
    for r in pick.tried:
        mark = " [bold green]<- picked[/]" if r["name"] == pick.member.arch.name else ""
        t.add_row(f"{r['name']}{mark}", f"{r['flops'] / 1e9:.3f}", f"{r.get('search_ms', r['measured_ms']):.2f}",
                  f"{r['measured_ms']:.2f}", f"{r['measured_ms'] / latency_ms - 1:+.1%}")
    console.print(t)
    if not pick.within_tol:
        console.print(f"[yellow]warning:[/] no measured member of {fam.name} is within {tol:.0%} of {latency_ms:g} ms "
                      f"(nearest: {pick.measured_ms:.2f} ms); the family's grid does not reach closer, or the machine is noisy")
    _write_arch(pick.arch().to_dict(), pick.to_dict(), out, json_out)


def _write_arch(arch: dict, record: dict, out: Optional[Path], json_out: bool) -> None:
    """Save the arch to ``out``; print the record (--json) or, with neither, the arch on stdout."""
    if out is not None:
        atomic_write_json(out, arch)
        console.print(f"wrote {out}")
    if json_out:
        print_json(record)
    elif out is None:
        print_json(arch)

"""``rtseg arch sample`` and ``rtseg arch show``."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from rtseg.arch import load_arch
from rtseg.cli._app import app, console, new_typer, print_json
from rtseg.errors import RtsegError
from rtseg.io import parse_hw
from rtseg.spaces import get_space

arch_app = new_typer(help="Create and inspect architectures (JSON genotypes).")
app.add_typer(arch_app, name="arch")


@arch_app.command("sample")
def sample(
    space: str = typer.Option("ssr", help="Search space to sample from."),
    space_opt: Optional[list[str]] = typer.Option(None, "--space-opt", help="Size option of the space, KEY=VALUE, repeatable (cas: width, nodes, ms_nodes, ms_width, layout, stem; dcnas: width, layers, stem, head, max_inputs). Recorded in the LUT and the arch."),
    seed: int = typer.Option(0, help="Random seed (the same seed gives the same arch)."),
    classes: int = typer.Option(19, help="Number of classes."),
    head: str = typer.Option("classifier", help="Head: classifier or aggregation (ssr)."),
    out: Optional[Path] = typer.Option(None, help="Write the arch JSON here (default: stdout)."),
) -> None:
    """Write a random valid arch of a space."""
    from rtseg.spaces import parse_space_options

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
    input: str = typer.Option("512x1024", "--input", help="Input size HxW."),
    classes: Optional[int] = typer.Option(None, help="Override the number of classes."),
    lut: Optional[Path] = typer.Option(None, help="Latency LUT: adds the predicted latency of this arch."),
    force: bool = typer.Option(False, help="Use a LUT even if its provenance does not match."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Params, FLOPs (multiply-adds, fvcore) and the operator list of an arch."""
    from rtseg.summary import summarize

    a = load_arch(arch)
    if classes is not None:
        a = a.with_(num_classes=classes)
    h, w = parse_hw(input, get_space(a.space).size_divisor)
    summary = summarize(a, h, w)
    if lut is not None:
        from rtseg.latency.lut import load_lut

        table = load_lut(lut)
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

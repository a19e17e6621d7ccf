"""``rtseg doctor``: what this machine can do for rtseg; ``--run`` exercises it end to end.

A thin layer over :func:`rtseg.doctor.collect` and :func:`rtseg.doctor_run.run_doctor`. Nothing
here imports torch: the checks say whether it is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from rtseg.cli import params as P
from rtseg.cli._app import app, console, print_json

_STYLE = {"ok": "green", "warn": "yellow", "missing": "red", "failed": "red", "skipped": "dim"}


def _checks_tables(report: Any) -> list[Table]:
    t = Table(title=f"rtseg doctor: {report.machine.get('cpu')}, {report.machine.get('gpus')} GPU(s); best device: {report.device}")
    t.add_column("component")
    t.add_column("status")
    t.add_column("version")
    t.add_column("found", overflow="fold")
    for r in report.rows:
        t.add_row(escape(r.component), f"[{_STYLE[r.status]}]{r.status}[/]", escape(r.version or ""), escape(r.detail))
    tables = [t]
    todo = [r for r in report.rows if r.status != "ok" and r.fix]
    if todo:
        f = Table(title="not ok: the fix, and what it disables meanwhile")
        f.add_column("component")
        f.add_column("fix", overflow="fold")
        f.add_column("disables", overflow="fold")
        for r in todo:
            f.add_row(escape(r.component), escape(r.fix or ""), escape("; ".join(r.disables)))
        tables.append(f)
    return tables


def _steps_table(state: dict[str, Any]) -> Table:
    from rtseg.doctor_run import step_line

    plan = state["plan"]
    t = Table(title=f"rtseg doctor --run on {plan['device']} ({plan['precision']}, {plan['input_hw'][0]}x{plan['input_hw'][1]}): "
                    f"{state.get('elapsed_s')} s")
    t.add_column("step")
    t.add_column("status")
    t.add_column("s", justify="right")
    t.add_column("result", overflow="fold")
    for s in state["steps"]:
        t.add_row(escape(s["name"]), f"[{_STYLE.get(s['status'], '')}]{s['status']}[/]", f"{s['seconds']:.1f}", escape(step_line(s)))
    return t


@app.command("doctor")
def doctor(
    run: bool = typer.Option(False, "--run", help="Also run a short end-to-end check (profile, validate, export, bench, demo) and write doctor.json/doctor.md."),
    out: Path = typer.Option(Path("rtseg-out/doctor"), "--out", help="Folder for --run's files (an earlier doctor run there is replaced).", callback=P.output_dir),
    overwrite: bool = typer.Option(False, "--overwrite", help="Let --run write into a folder that holds something other than an earlier doctor run."),
    minutes: float = typer.Option(8.0, "--minutes", help="Time budget of --run; steps scale to it and are skipped once it is spent.", callback=P.POSITIVE),
    input: Optional[str] = typer.Option(None, "--input", help="Input size HxW for --run [default: 512x1024 on a GPU, 64x128 on a CPU].", callback=P.hw_size),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or cuda:N for --run [default: the GPU when torch sees one].", callback=P.device),
    archs: Optional[int] = typer.Option(None, "--archs", help="Random ssr archs whose operators --run profiles and validates [default: 4 on a GPU, 2 on a CPU].", callback=P.COUNT),
    engines: Path = typer.Option(Path("engines"), "--engines", help="The engines/ folder to inspect.", callback=P.output_dir),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout (the checks; with --run, the whole record)."),
) -> None:
    """What works on this machine for rtseg (versions, GPUs, providers, codecs), each gap with its fix."""
    from rtseg.doctor import collect

    with console.status("checking this machine (imports, GPUs, codecs)..."):
        report = collect(engines)
    if not run:
        if json_out:
            print_json(report.to_dict())
        else:
            for t in _checks_tables(report):
                console.print(t)
            console.print("[bold green]core works[/]" if report.ok else "[bold red]core broken[/]: see the rows marked core above")
        raise typer.Exit(0 if report.ok else 1)

    from rtseg.doctor_run import RunConfig, run_doctor
    from rtseg.io import parse_hw

    if not json_out:
        for t in _checks_tables(report):
            console.print(t)
    cfg = RunConfig(out=out, minutes=minutes, device=device, input_hw=parse_hw(input) if input else None, archs=archs, overwrite=overwrite)
    state = run_doctor(cfg, say=lambda m: console.print(f"[dim]{escape(m)}[/]", highlight=False), checks=report)
    if json_out:
        print_json(state)
    else:
        console.print(_steps_table(state))
        console.print(f"wrote [bold]{out / 'doctor.md'}[/] and [bold]{out / 'doctor.json'}[/]")
    raise typer.Exit(0 if report.ok and not state["failed"] else 1)

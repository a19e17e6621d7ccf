"""``rtseg quickstart``: profile -> validate -> search -> train -> export -> bench -> demo, with a report."""

from __future__ import annotations

from pathlib import Path

import typer

from rtseg.cli import params as P
from rtseg.cli._app import app, console, print_json


@app.command("quickstart")
def quickstart(
    out: Path = typer.Option(Path("rtseg-out/quickstart"), help="Folder for every artifact and the report.", callback=P.output_dir),
    minutes: float = typer.Option(15.0, help="Rough time budget; search and training get fixed shares of it.", callback=P.POSITIVE),
    device: str = typer.Option("cpu", help="cpu, cuda or cuda:N.", callback=P.device),
    backend: str = typer.Option("onnxruntime", help="The deploy runtime: the LUT is measured on it, the search's budget is checked on it and the demo runs on it."),
    seed: int = typer.Option(0, help="Seed of every stage.", callback=P.SEED),
    fresh: bool = typer.Option(False, "--fresh", help="Redo every stage (default: keep stages finished earlier)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report data as JSON on stdout."),
) -> None:
    """Run the whole pipeline offline on this machine and write report.md / report.html."""
    from rtseg.quickstart import QuickstartConfig, run_quickstart
    from rtseg.reporting import RichReporter

    from rtseg.runtime import normalize_backend

    cfg = QuickstartConfig(out=out, minutes=minutes, device=device, backend=normalize_backend(backend), seed=seed, resume=not fresh)
    if fresh and (out / "quickstart.json").exists():
        import shutil

        shutil.rmtree(out)  # only a folder a quickstart made (it holds quickstart.json)
    state = run_quickstart(cfg, reporter=RichReporter(console))
    if json_out:
        print_json(state)
    else:
        console.print(f"[bold green]done[/]: open {state['report']}")

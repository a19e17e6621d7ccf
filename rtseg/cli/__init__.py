"""Command-line interface: ``rtseg <command>``. One module per user task, all on one typer app."""

from __future__ import annotations

import importlib

import typer

from rtseg.version import __version__
from rtseg.cli._app import app, console

# Each module registers its commands on ``app`` at import. Listed in the order data flows.
_COMMAND_MODULES = [
    "rtseg.cli.arch",
    "rtseg.cli.latency",
    "rtseg.cli.train",
    "rtseg.cli.search",
    "rtseg.cli.export",
    "rtseg.cli.predict",
    "rtseg.cli.demo",
    "rtseg.cli.quickstart",
    "rtseg.cli.doctor",
]
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(_name)
    except ModuleNotFoundError as _exc:  # a command module not written yet
        if _exc.name != _name:
            raise


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"rtseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."),
) -> None:
    """rtseg: measured-latency NAS, export and live demos for real-time segmentation."""


def main() -> None:
    app()


__all__ = ["app", "console", "main"]

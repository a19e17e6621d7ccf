"""The typer application shared by every command module, and the one place user errors are handled.

Command modules (``rtseg/cli/*.py``) attach their commands to :data:`app` (or to a sub-app added to
it); they stay thin: parse options, call one library function, print a rich table or ``--json``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from rtseg.errors import RtsegError

#: Human-facing output (tables, progress) goes to stderr so that ``--json`` keeps stdout clean.
console = Console(stderr=True)


class _ErrorHandlingGroup(TyperGroup):
    """Turn :class:`RtsegError` raised anywhere under a command into one line and exit code 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except RtsegError as exc:
            from rich.markup import escape  # messages may hold brackets, e.g. pip install 'rtseg[trt]'

            Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            Console(stderr=True).print("[yellow]interrupted[/]: results written so far are kept; re-run to resume")
            raise typer.Exit(130) from None


def new_typer(**kwargs: Any) -> typer.Typer:
    return typer.Typer(
        cls=_ErrorHandlingGroup,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        **kwargs,
    )


app = new_typer(help="rtseg: measured-latency NAS, export and live demos for real-time segmentation.")


def print_json(obj: Any) -> None:
    """Write one JSON document to stdout (for ``--json``)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    return str(obj)

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
            _print_error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except ModuleNotFoundError as exc:  # a package of an extra this install lacks (a deploy install: torch)
            hint = missing_dependency_hint(exc.name)
            if hint is None:
                raise
            _print_error(hint)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            Console(stderr=True).print("[yellow]interrupted[/]: results written so far are kept; re-run to resume")
            raise typer.Exit(130) from None


def _print_error(message: str) -> None:
    from rich.markup import escape  # messages may hold brackets, e.g. pip install 'rtseg[trt]'

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


#: Packages of the extras (pyproject.toml) that a command may import when it runs, and what installs them.
_TOOLKIT_HINT = (
    "this needs PyTorch, and {name} is not installed (a deploy install runs exported .onnx files and TensorRT "
    "engines only); install the whole toolkit with pip install 'rtseg[all]' ('rtseg[torch,gui]' on a desktop), "
    "or give demo and bench an exported model"
)
_EXTRA_HINTS = {
    **{m: _TOOLKIT_HINT for m in ("torch", "torchvision", "fvcore", "onnxslim", "onnxscript", "matplotlib")},
    "cv2": "OpenCV is not installed; install it with pip install 'rtseg[deploy]' (headless) or pip install 'rtseg[gui]' "
           "(the build that opens windows for --show), not both",
}


def missing_dependency_hint(module: str | None) -> str | None:
    """One sentence naming the extra that installs ``module`` (the top-level name), or None if none does."""
    top = (module or "").split(".")[0]
    hint = _EXTRA_HINTS.get(top)
    return hint.format(name=top) if hint else None


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

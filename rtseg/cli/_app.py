"""The typer application shared by every command module, and the one place user errors are handled.

Command modules (``rtseg/cli/*.py``) attach their commands to :data:`app` (or to a sub-app added to
it); they stay thin: parse options, call one library function, print a rich table or ``--json``.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import typer
from rich.console import Console
from typer.core import TyperGroup

from rtseg.errors import RtsegError

#: Human-facing output (tables, progress) goes to stderr so that ``--json`` keeps stdout clean.
console = Console(stderr=True)

# Click's usage errors, from the click typer uses: its own vendored copy in recent typer, the click
# package in older ones. BadParameter is exported by typer in both, and lives beside the others.
_click_exceptions = sys.modules[typer.BadParameter.__module__]
_UsageError: type[Exception] = _click_exceptions.UsageError
_NoArgsIsHelpError: tuple[type[Exception], ...] = tuple(
    c for c in (getattr(_click_exceptions, "NoArgsIsHelpError", None),) if c is not None
)


def print_error(message: str) -> None:
    """The one ``error:`` line every user error is shown as (on stderr)."""
    from rich.markup import escape  # messages may hold brackets, e.g. pip install 'rtseg[trt]'

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)


def _usage_message(exc: Any) -> str:
    """Click's own message (bad integer, missing option, unknown command...) and where the help is."""
    msg = " ".join(str(exc.format_message()).split()).rstrip(".")
    ctx = getattr(exc, "ctx", None)
    return f"{msg}; see '{ctx.command_path} --help'" if ctx is not None else msg


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """:class:`RtsegError` (also what the shared option checks of :mod:`rtseg.cli.params` raise) and
    click's usage errors (a value that does not parse, a missing option, an unknown command) become
    one ``error:`` line and exit code 2."""
    try:
        yield
    except RtsegError as exc:
        print_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except _NoArgsIsHelpError:
        raise  # shows the help, as asked
    except _UsageError as exc:
        print_error(_usage_message(exc))
        raise typer.Exit(2) from None
    except ModuleNotFoundError as exc:  # a package of an extra this install lacks (a deploy install: torch)
        hint = missing_dependency_hint(exc.name)
        if hint is None:
            raise
        print_error(hint)
        raise typer.Exit(2) from None
    except OSError as exc:
        # a path the checks could not foresee (a folder removed or made read-only meanwhile) is still
        # the user's to fix; an OSError naming no file keeps its traceback
        if exc.filename is None:
            raise
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else exc.filename
        print_error(f"{where}: {exc.strerror or exc}; check the path and its permissions")
        raise typer.Exit(2) from None


class _ErrorHandlingGroup(TyperGroup):
    """Every user error under a command, whatever raised it, looks the same: one ``error:`` line,
    exit code 2, never a traceback (see :func:`_one_line_errors`)."""

    def make_context(self, info_name: Any, args: Any, parent: Any = None, **extra: Any) -> Any:
        with _one_line_errors():  # the group's own options are parsed here, outside invoke()
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        try:
            with _one_line_errors():
                return super().invoke(ctx)
        except KeyboardInterrupt:
            command = " ".join([*ctx.command_path.split()[1:], ctx.invoked_subcommand or ""]).strip()
            Console(stderr=True).print(f"[yellow]interrupted[/]: {interrupted_message(command)}", highlight=False)
            raise typer.Exit(130) from None


#: How each command that can continue an interrupted run does it; every other command only keeps
#: what it wrote (an interrupted ``predict`` or ``eval`` is run again from the start).
RESUMES = {
    "train": "re-run the same command with --resume to continue from the last finished epoch",
    "search": "re-run the same command with --resume to continue",
    "profile-ops": "re-run the same command to continue (the operators measured are kept in the LUT)",
    "quickstart": "re-run the same command to continue (finished stages are skipped)",
}


def interrupted_message(command: str) -> str:
    """What the line after Ctrl-C says for ``command`` (``"arch scale"``): it promises a resume only
    where the command has one."""
    how = RESUMES.get(command)
    return f"results written so far are kept; {how}" if how else "files written so far are kept; this command does not resume, so a re-run starts over"


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
        # help text is plain: its "[default: ...]" and "[a, b]" brackets are not rich markup
        rich_markup_mode=None,
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

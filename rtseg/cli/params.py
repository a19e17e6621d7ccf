"""Checks shared by every command's options: paths to write, paths to read, numbers and HxW sizes.

Each check is a typer parameter callback. It runs while the command line is parsed, before the
command's body, so a bad value stops the command before any long work starts and before anything
is written. It raises :class:`~rtseg.errors.RtsegError` naming the option, the value and what to do,
which the CLI prints as one ``error:`` line with exit code 2 (``rtseg/cli/_app.py``).

How a command uses it (every option that takes a path or a number must use one of these; the
parametrized test in ``tests/test_cli_params.py`` enumerates the app's commands and fails for an
option that does not, and ``tests/test_hostile_inputs.py`` one whose ``--device``, ``--threads``,
``--workers`` or ``--batch`` lacks the check of its kind)::

    from rtseg.cli import params as P

    @app.command("predict")
    def predict(
        model: Path = typer.Argument(..., callback=P.input_file),               # exists, a file
        out: Path = typer.Option(Path("runs/predict"), callback=P.output_dir),  # creatable, writable, not a file
        record: Optional[Path] = typer.Option(None, callback=P.output_file),    # folder writable, not a folder itself
        input: str = typer.Option("512x1024", "--input", callback=P.hw_size),   # "HxW", each side 1..8192
        batch: int = typer.Option(1, callback=P.BATCH),                         # 1..MAX_BATCH
        threads: Optional[int] = typer.Option(None, callback=P.THREADS),        # 1..this machine's cores
        device: str = typer.Option("cpu", callback=P.device),                   # cpu, cuda, cuda:N (a GPU that is here)
        warmup: int = typer.Option(5, callback=P.NON_NEGATIVE),                 # >= 0
        seed: int = typer.Option(0, callback=P.SEED),                           # 0 <= x < 2**32
        budget_ms: float = typer.Option(8.0, callback=P.POSITIVE),              # finite and > 0
        alpha: float = typer.Option(0.5, callback=P.between(0, 1)),             # finite, 0 <= x <= 1
    ) -> None: ...

Nothing is created by a check (a path's writability is tested with a temporary file, removed at
once). ``None`` (an optional option left out) passes every check; a default path the library
computes is checked there with :func:`rtseg.io.check_output_dir` / ``check_output_file``. A value
that is a name *or* a path (``--arch baseline1``) stays a plain string checked by its loader.
Checks that need another option (an input size's divisor depends on the space) stay in the
command, which calls :func:`rtseg.io.parse_hw` again with the divisor.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from rtseg.errors import RtsegError
from rtseg.io import check_input_file, check_output_dir, check_output_file, parse_hw

#: Largest side accepted by :func:`hw_size`: above 8K video (4320x7680) a network input is a typo,
#: and one that large would exhaust memory deep inside the command instead of failing here.
MAX_SIDE = 8192


@dataclass(frozen=True)
class ParamCheck:
    """What a shared callback checks, attached to it as ``rtseg_check`` so tests (and ``--help``
    readers) can tell which options are covered and which bad values each must refuse."""

    kind: str  # "output_dir", "output_file", "input_file", "number", "hw_size" or "device"
    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False  # lo itself excluded (a budget or a rate of 0 is meaningless)
    why: str = ""  # what the bound is, e.g. "this machine's CPU cores"
    present: bool = True  # device: a GPU asked for must be present when the command is parsed

    def describe(self) -> str:
        """The accepted range in words, e.g. ``greater than 0`` or ``between 0 and 1``."""
        why = f" ({self.why})" if self.why else ""
        if self.lo is not None and self.hi is not None:
            return f"between {_num(self.lo)} and {_num(self.hi)}{why}"
        if self.lo is not None:
            return f"greater than {_num(self.lo)}" if self.lo_open else f"at least {_num(self.lo)}"
        if self.hi is not None:
            return f"at most {_num(self.hi)}{why}"
        return "any finite number"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def option_name(param: Any) -> str:
    """How the user wrote the parameter: its long option (``--flops-g``) or, for an argument, its
    upper-case name (``LUT``)."""
    opts = [o for o in (getattr(param, "opts", None) or []) if o.startswith("-")]
    if opts:
        return max(opts, key=len)
    return str(getattr(param, "name", "value") or "value").upper()


def _tag(check: ParamCheck) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.rtseg_check = check  # type: ignore[attr-defined]
        return fn

    return deco


# --- numbers ------------------------------------------------------------------------------------


def number(lo: Optional[float] = None, hi: Optional[float] = None, *, lo_open: bool = False, why: str = "") -> Callable[..., Any]:
    """A callback refusing NaN, +-inf and values outside ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``);
    the message names the option and the range (and ``why``, what the upper bound is)."""
    check = ParamCheck("number", lo, hi, lo_open, why)

    @_tag(check)
    def callback(param: typer.CallbackParam, value: Any) -> Any:
        if value is None:
            return value
        name = option_name(param)
        x = float(value)
        if math.isnan(x) or math.isinf(x):
            raise RtsegError(f"{name} must be a finite number {check.describe()}, got {value}")
        if (check.lo is not None and (x < check.lo or (check.lo_open and x == check.lo))) or (check.hi is not None and x > check.hi):
            raise RtsegError(f"{name} must be {check.describe()}, got {value}")
        return value

    return callback


def at_least(lo: float) -> Callable[..., Any]:
    """``value >= lo`` and finite."""
    return number(lo)


def greater_than(lo: float) -> Callable[..., Any]:
    """``value > lo`` and finite."""
    return number(lo, lo_open=True)


def between(lo: float, hi: float) -> Callable[..., Any]:
    """``lo <= value <= hi`` and finite."""
    return number(lo, hi)


#: Budgets, rates, times, sizes in GiB: finite and > 0 (zero is meaningless for them).
POSITIVE = greater_than(0)
#: Warm-up runs, worker counts, minimum times: finite and >= 0.
NON_NEGATIVE = at_least(0)
#: Counts of things that must happen at least once: batch, epochs, repeats, samples, threads, classes.
COUNT = at_least(1)
#: Random seeds: what every generator the commands seed accepts (numpy's are 32-bit unsigned).
SEED = between(0, 2**32 - 1)


def machine_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; all cores where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


#: Largest batch any command accepts: beyond it one input tensor alone runs to gigabytes at the
#: smallest useful sizes, so a larger value is a typo; commands that know the input size also check
#: the batch against the machine's memory (:func:`rtseg.io.check_batch_memory`).
MAX_BATCH = 1024
#: Thread counts: more threads than cores only oversubscribes the CPU (a load in the thousands).
THREADS = number(1, machine_cores(), why="this machine's CPU cores")
#: Data-loading processes: each is a process of its own; more than the cores only competes for them.
WORKERS = number(0, machine_cores(), why="this machine's CPU cores")
#: Images per step or call.
BATCH = number(1, MAX_BATCH, why="a larger batch would not fit in memory at any useful input size")
#: Help of ``--space-opt``, shared by the commands that build a space (profile-ops, search, arch
#: sample), so the size options they list are the same: each space's ``with_options`` accepts these.
SPACE_OPT_HELP = ("Size option of the space, KEY=VALUE, repeatable (ssr: stdc=false leaves out the STDC layer choice; "
                  "cas: width, nodes, ms_nodes, ms_width, ms_from, layout, stem; dcnas: width, layers, stem, head, max_inputs).")


# --- sizes --------------------------------------------------------------------------------------


@_tag(ParamCheck("hw_size", 1, MAX_SIDE))
def hw_size(param: typer.CallbackParam, value: Optional[str]) -> Optional[str]:
    """``HxW`` with both sides in 1..:data:`MAX_SIDE`; returns it normalised to ``"HxW"``."""
    if value is None:
        return value
    name = option_name(param)
    try:
        h, w = parse_hw(value)
    except RtsegError as exc:
        raise RtsegError(f"{name}: {exc}") from None
    if h > MAX_SIDE or w > MAX_SIDE:
        raise RtsegError(f"{name} {h}x{w} is too large: each side must be at most {MAX_SIDE}")
    return f"{h}x{w}"


# --- devices ------------------------------------------------------------------------------------

def _device_check(present: bool) -> Callable[..., Any]:
    @_tag(ParamCheck("device", present=present))
    def callback(param: typer.CallbackParam, value: Optional[str]) -> Optional[str]:
        if value is None:
            return value
        from rtseg.backends.device import check_device_name

        return check_device_name(value, option_name(param), present=present)

    return callback


#: ``cpu``, ``cuda`` or ``cuda:N``, spelt so (``CPU``, ``meta``, ``cuda:x`` refused), and a GPU only
#: when this machine has that GPU.
device = _device_check(present=True)
#: The same spelling, for a GPU a file is built for (``export --device``, used with ``--trt`` only):
#: whether it is here is checked when the build starts.
gpu_device = _device_check(present=False)


# --- paths --------------------------------------------------------------------------------------


@_tag(ParamCheck("output_dir"))
def output_dir(param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """Callback: a folder to write into (created later by the command if missing)."""
    return None if value is None else check_output_dir(value, option_name(param))


@_tag(ParamCheck("output_file"))
def output_file(param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """Callback: a file to write (its folder is created later by the command if missing)."""
    return None if value is None else check_output_file(value, option_name(param))


@_tag(ParamCheck("input_file"))
def input_file(param: typer.CallbackParam, value: Optional[Path]) -> Optional[Path]:
    """Callback: an existing file to read."""
    return None if value is None else check_input_file(value, option_name(param))


__all__ = [
    "BATCH", "MAX_BATCH", "THREADS", "WORKERS", "device", "gpu_device", "machine_cores",
    "COUNT", "MAX_SIDE", "NON_NEGATIVE", "POSITIVE", "SEED", "ParamCheck", "at_least", "between", "greater_than",
    "hw_size", "input_file", "number", "option_name", "output_dir", "output_file",
]

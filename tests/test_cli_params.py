"""Every command refuses a bad option value with one ``error:`` line and exit code 2, before any work.

The commands are enumerated from the typer app, so a command added later is covered without
editing this file; one whose numeric or path option skips the shared checks of
:mod:`rtseg.cli.params` fails :func:`test_every_number_and_path_option_uses_a_shared_check`.

Unwritable outputs: the suite runs as root in CI and here, and root writes through any ``chmod``,
so an unwritable location is one no permission bit can open: a path whose parent is a regular file,
and a path under ``/proc``, where even root cannot create files.
"""

from __future__ import annotations

import inspect
import random
import typing
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import typer.testing
from typer.main import get_command

from rtseg.cli import app
from rtseg.cli import params as P
from rtseg.errors import RtsegError

Value = Callable[[Path], str]  # workspace -> the command-line value

# The click command the console script runs, built once from the app.
_ROOT = get_command(app)


@pytest.fixture(scope="module")
def fast_cli() -> Iterator[Callable[..., Any]]:
    """typer's CliRunner, minus rebuilding the command from the app on every call (a tenth of a
    second here, which hundreds of cases cannot afford): it is handed the one built above."""
    mp = pytest.MonkeyPatch()
    mp.setattr(typer.testing, "_get_command", lambda a: _ROOT if a is app else get_command(a), raising=False)
    runner = typer.testing.CliRunner()
    yield lambda *args: runner.invoke(app, [str(a) for a in args])
    mp.undo()

# The bad values of each kind of check, by class. ``ws`` is the command's working folder, which
# holds a regular file ``afile``, a folder ``adir`` and a readable ``input.json``.
_PATH_BAD: dict[str, dict[str, Value]] = {
    "output_dir": {
        "unwritable-under-a-file": lambda ws: str(ws / "afile" / "out"),
        "unwritable-proc": lambda ws: "/proc/rtseg-test/out",
        "file-for-folder": lambda ws: str(ws / "afile"),
    },
    "output_file": {
        "unwritable-under-a-file": lambda ws: str(ws / "afile" / "out.json"),
        "unwritable-proc": lambda ws: "/proc/rtseg-test/out.json",
        "folder-for-file": lambda ws: str(ws / "adir"),
    },
    "input_file": {
        "missing": lambda ws: str(ws / "missing.json"),
        "folder-for-file": lambda ws: str(ws / "adir"),
    },
    "hw_size": {
        "zero": lambda ws: "0x128",
        "negative": lambda ws: "-64x128",
        "nan": lambda ws: "nanxinf",
        "not-hxw": lambda ws: "64",
        "too-large": lambda ws: f"{P.MAX_SIDE + 16}x128",
    },
}


def _number_bad(check: P.ParamCheck) -> dict[str, Value]:
    bad: dict[str, Value] = {"nan": lambda ws: "nan", "inf": lambda ws: "inf"}
    if check.lo is not None:
        bad["negative"] = lambda ws: "-1"
        if check.lo_open or check.lo >= 1:  # zero is meaningless for a budget, a rate or a count
            bad["zero"] = lambda ws: "0"
        if check.lo > 1:
            bad["below-min"] = lambda ws: str(int(check.lo) - 1)
    if check.hi is not None:
        bad["above-max"] = lambda ws: str(int(check.hi) + 1)
    return bad


def _device_bad(check: P.ParamCheck) -> dict[str, Value]:
    """Misspelt and unsupported devices; and, where the GPU must be here when the command is parsed,
    one that no machine running this suite has."""
    bad: dict[str, Value] = {"bogus": lambda ws: "bogus", "upper-case": lambda ws: "CPU", "meta": lambda ws: "meta",
                             "cuda-x": lambda ws: "cuda:x"}
    if check.present:
        bad["absent-gpu"] = lambda ws: "cuda:999"
    return bad


def _good(check: P.ParamCheck | None, annotation: Any) -> Value:
    """A value that passes, for the required parameters the case does not test."""
    if check is None:
        if _base(annotation) is str:
            return lambda ws: "baseline1"  # every required plain string today names an arch or model
        raise AssertionError(f"no placeholder for a required {annotation} without a shared check")
    if check.kind == "input_file":
        return lambda ws: str(ws / "input.json")
    if check.kind == "hw_size":
        return lambda ws: "64x128"
    if check.kind == "number":
        lo = 0.0 if check.lo is None else float(check.lo)
        return lambda ws: str(int(lo) + 1)
    return lambda ws: str(ws / "new")


def _base(annotation: Any) -> Any:
    """``Optional[X]`` -> X, ``List[X]`` -> X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, list, tuple) or str(typing.get_origin(annotation)) == "types.UnionType":
        return _base(args[0]) if args else annotation
    return annotation


def _commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        subs = getattr(cmd, "commands", None)
        if subs is not None:
            for name, sub in sorted(subs.items()):
                yield from walk(sub, path + (name,))
        else:
            yield path, cmd

    return walk(_ROOT, ())


def _params(cmd: Any) -> list[tuple[Any, P.ParamCheck | None, Any]]:
    hints = typing.get_type_hints(inspect.unwrap(cmd.callback))
    return [(p, getattr(p.callback, "rtseg_check", None), hints.get(p.name)) for p in cmd.params]


def _cases() -> list[Any]:
    cases = []
    for path, cmd in _commands():
        for param, check, _ in _params(cmd):
            if check is None:
                continue
            bad = (_number_bad(check) if check.kind == "number" else _device_bad(check) if check.kind == "device"
                   else _PATH_BAD[check.kind])
            for klass, value in bad.items():
                cases.append(pytest.param(path, param.name, value, id=f"{' '.join(path)} {P.option_name(param)} {klass}"))
    return cases


CASES = _cases()


def _workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "adir").mkdir(parents=True)
    (ws / "afile").write_text("a regular file\n")
    (ws / "input.json").write_text("{}\n")
    return ws


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("path,name,value", CASES)
def test_bad_option_value_is_one_error_line(fast_cli, tmp_path, monkeypatch, path, name, value):
    ws = _workspace(tmp_path)
    monkeypatch.chdir(ws)  # default outputs (runs/search, rtseg-out/...) would land here
    cmd = dict(_commands())[path]
    argv: list[str] = list(path)
    rest: list[str] = []
    for param, check, annotation in _params(cmd):
        is_option = bool(param.opts and param.opts[0].startswith("-"))
        if param.name == name:  # first on the line, so it is parsed first
            argv += [f"{max(param.opts, key=len)}={value(ws)}"] if is_option else [value(ws)]
        elif param.required:
            v = _good(check, annotation)(ws)
            rest += [max(param.opts, key=len), v] if is_option else [v]
    before = _tree(ws)
    r = fast_cli(*argv, *rest)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2, (argv + rest, r.output)
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), r.output
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    opt = P.option_name(next(p for p, _, _ in _params(cmd) if p.name == name))
    assert opt.lower() in lines[0].lower(), lines[0]  # it names the option
    assert _tree(ws) == before  # nothing written, not even the output folder


def test_the_cases_cover_every_command_and_class():
    commands = {" ".join(path) for path, _ in _commands()}
    assert {"search", "train", "export", "arch sample", "profile-ops", "quickstart", "demo", "lut validate"} <= commands
    classes = {c.id.rsplit(" ", 1)[1] for c in CASES}
    assert {"unwritable-under-a-file", "unwritable-proc", "file-for-folder", "folder-for-file", "nan", "inf",
            "negative", "zero", "missing"} <= classes


def test_every_number_and_path_option_uses_a_shared_check():
    """A new option taking a number or a path must pick one of rtseg.cli.params' checks."""
    missing = []
    for path, cmd in _commands():
        for param, check, annotation in _params(cmd):
            if _base(annotation) in (int, float, Path) and check is None:
                missing.append(f"rtseg {' '.join(path)} {P.option_name(param)}")
    assert not missing, f"options without a check from rtseg.cli.params: {missing}"


def test_checks_accept_good_values_and_create_nothing(tmp_path):
    new = tmp_path / "a" / "b" / "run"
    assert P.check_output_dir(new) == new and not (tmp_path / "a").exists()
    assert P.check_output_file(tmp_path / "x" / "lut.json") and not (tmp_path / "x").exists()
    (tmp_path / "f.json").write_text("{}")
    assert P.check_output_file(tmp_path / "f.json") and P.check_input_file(tmp_path / "f.json")
    assert P.check_output_dir(tmp_path) == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]  # the write probe left nothing

    class Opt:
        opts = ["--input"]
        name = "input"

    assert P.hw_size(Opt(), " 64 x 128 ") == "64x128" and P.hw_size(Opt(), None) is None
    assert P.POSITIVE(Opt(), 1e-9) == 1e-9 and P.between(0, 1)(Opt(), 1) == 1 and P.COUNT(Opt(), None) is None
    with pytest.raises(RtsegError, match=r"--input must be a finite number greater than 0, got nan"):
        P.POSITIVE(Opt(), float("nan"))


def test_click_usage_errors_are_one_line_too(cli):
    for args in (("search", "--epochs", "ten"), ("search", "--space", "ssr"), ("no-such-command",), ("--no-such-option",)):
        r = cli(*args)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:") and "--help" in lines[0], (args, r.output)


def test_random_bytes_are_not_a_pytorch_checkpoint(cli, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(random.Random(0).randbytes(4096))
    for args in (("eval", "--checkpoint", junk), ("export", junk, "--out", tmp_path / "o")):
        r = cli(*args)
        errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert r.exit_code == 2 and len(errors) == 1 and "is not a PyTorch checkpoint" in errors[0], r.output
    assert not (tmp_path / "o").exists()


def test_help_text_keeps_its_brackets(cli):
    """Option help holds ranges and defaults in brackets; rendered as markup they would vanish."""
    r = cli("search", "--help")
    text = " ".join(r.output.split())  # as wrapped, a bracket may span two lines
    assert r.exit_code == 0 and "[band-low x T, T]" in text and "[default: 0.9]" in text, r.output

"""Hostile and careless inputs: each ends with a non-zero exit, exactly one ``error:`` line, no
traceback, no hang, and no file of the user's changed.

The classes: run folders (finished, foreign, locked by a second writer, resumed with other settings
or over a damaged state), inputs a command must never write over, special files (FIFO, devices),
JSON nested too deep, symbolic link loops, LUT and sidecar fields of the wrong type or not finite,
the torchrun variables, and the options every command must check (enumerated from the typer app,
so a new ``--device``, ``--threads``, ``--batch`` or ``--workers`` without its check fails here).

In-process runs (typer's CliRunner) are guarded by an alarm, so a command that blocks (a FIFO read
with no writer) fails the case instead of hanging the suite; subprocesses only where a hang cannot be
interrupted otherwise (a rendezvous wait) or the environment is the input.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
import typer.testing
from typer.main import get_command

from rtseg.cli import app
from rtseg.cli import params as P
from rtseg.cli._app import RESUMES, interrupted_message
from rtseg.errors import RtsegError
from rtseg.rundir import acquire_lock, claim_run_dir, lock_file

_ROOT = get_command(app)
SMALL_TRAIN = ("--arch", "baseline1", "--input", "32x64", "--epochs", "1", "--batch", "2", "--train-len", "4", "--val-len", "2",
               "--workers", "0", "--device", "cpu")


# -- helpers ----------------------------------------------------------------------------------------
class Hang(Exception):
    pass


@contextmanager
def no_hang(seconds: int = 60) -> Iterator[None]:
    """Fail (instead of waiting forever) when the block runs longer than ``seconds``."""

    def ring(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def run_cli() -> Iterator[Callable[..., Any]]:
    mp = pytest.MonkeyPatch()
    mp.setattr(typer.testing, "_get_command", lambda a: _ROOT if a is app else get_command(a), raising=False)
    runner = typer.testing.CliRunner()

    def invoke(*args: Any) -> Any:
        with no_hang():
            return runner.invoke(app, [str(a) for a in args])

    yield invoke
    mp.undo()


def snapshot(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` and its SHA-256 (symlinks and special files by what they are)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "link:" + os.readlink(p)
        elif p.is_fifo():
            out[str(p.relative_to(root))] = "fifo"
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def unchanged(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What the command changed of the user's files: a file changed or removed, or a new file other
    than a lock (a refused command may leave its lock file behind, nothing else)."""
    changed = [k for k, v in before.items() if after.get(k) != v]
    new = [k for k in after if k not in before and not Path(k).name.endswith(".lock")]
    return changed + new


def assert_refused(r: Any, ws: Path, before: dict[str, str], *needles: str) -> None:
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert r.exit_code not in (0, None), r.output
    assert "Traceback" not in r.output and (r.exception is None or isinstance(r.exception, SystemExit)), r.output
    assert len(errors) == 1, r.output
    for n in needles:
        assert n.lower() in errors[0].lower(), errors[0]
    assert not unchanged(before, snapshot(ws)), unchanged(before, snapshot(ws))


def refused(run_cli: Callable[..., Any], ws: Path, *args: Any, needles: tuple[str, ...] = ()) -> None:
    before = snapshot(ws)
    r = run_cli(*args)
    if os.environ.get("RTSEG_SHOW_ERRORS"):
        print("\n", " ".join(map(str, args))[:100], "->", [ln for ln in r.output.splitlines() if ln.startswith("error:")])
    assert_refused(r, ws, before, *needles)


# -- the options every command must check (enumerated from the app) --------------------------------
def _commands() -> Iterator[tuple[str, Any]]:
    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
        subs = getattr(cmd, "commands", None)
        if subs is not None:
            for name, sub in sorted(subs.items()):
                yield from walk(sub, path + (name,))
        else:
            yield " ".join(path), cmd

    return walk(_ROOT, ())


#: What each option of these names must be checked with (kind, upper bound).
_BOUNDED = {"--device": ("device", None), "--threads": ("number", P.machine_cores()), "--workers": ("number", P.machine_cores()),
            "--batch": ("number", P.MAX_BATCH)}
#: Options the search rewrite wires to these checks (rtseg/cli/search.py, rtseg/cli/quickstart.py); an
#: entry that is already checked fails the test, so the list only shrinks.
_PENDING: set[str] = set()


def test_every_device_threads_workers_and_batch_option_is_checked():
    missing, done = [], []
    for path, cmd in _commands():
        for param in cmd.params:
            opt = P.option_name(param)
            if opt not in _BOUNDED:
                continue
            kind, hi = _BOUNDED[opt]
            check = getattr(param.callback, "rtseg_check", None)
            ok = check is not None and check.kind == kind and (hi is None or check.hi == hi)
            name = f"{path} {opt}"
            if name in _PENDING:
                done += [name] if ok else []
            elif not ok:
                missing.append(name)
    assert not missing, f"options without their check (rtseg.cli.params device/THREADS/WORKERS/BATCH): {missing}"
    assert not done, f"already checked, remove from _PENDING: {done}"


def test_ctrl_c_promises_a_resume_only_where_there_is_one():
    commands = {path for path, _ in _commands()}
    assert set(RESUMES) <= commands  # no stale entry
    for path in commands:
        msg = interrupted_message(path)
        assert ("--resume" in msg or "continue" in msg) == (path in RESUMES), (path, msg)
    assert "does not resume" in interrupted_message("predict") and "does not resume" in interrupted_message("eval")


# -- run folders ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory, run_cli) -> Path:
    """One finished tiny training run, copied by the cases that need one."""
    out = tmp_path_factory.mktemp("trained") / "run"
    r = run_cli("train", *SMALL_TRAIN, "--out", out)
    assert r.exit_code == 0, r.output
    return out


def _copy_run(trained: Path, tmp_path: Path) -> Path:
    run = tmp_path / "ws" / "run"
    shutil.copytree(trained, run)
    (run / ".rtseg.lock").unlink(missing_ok=True)
    return run


class _Payload:
    """Unpickling this would run a command; it must never be unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def _foreign_state(kind: str, path: Path, good: Path, marker: Path) -> None:
    data = good.read_bytes()
    if kind == "hostile-pickle":
        torch.save({"format": "rtseg.checkpoint", "x": _Payload(marker)}, path)
    elif kind == "plain-pickle":
        path.write_bytes(pickle.dumps({"format": "rtseg.checkpoint"}))
    elif kind == "random":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "foreign-dict":
        torch.save({"format": "rtseg.search_state", "step": 3}, path)
    elif kind == "bare-state-dict":
        torch.save({"w": torch.zeros(2)}, path)
    elif kind == "fifo":
        path.unlink()
        os.mkfifo(path)
    else:
        raise AssertionError(kind)


STATE_KINDS = ["hostile-pickle", "plain-pickle", "random", "truncated", "empty", "foreign-dict", "bare-state-dict", "fifo"]


@pytest.mark.parametrize("kind", STATE_KINDS)
def test_train_resume_over_a_foreign_state_is_one_line(run_cli, trained, tmp_path, kind):
    run = _copy_run(trained, tmp_path)
    marker = tmp_path / "pwned"
    _foreign_state(kind, run / "last.pt", trained / "last.pt", marker)
    refused(run_cli, tmp_path / "ws", "train", *SMALL_TRAIN, "--epochs", "2", "--resume", "--out", run)
    assert not marker.exists()


@pytest.mark.parametrize("kind", STATE_KINDS)
def test_eval_and_export_over_a_foreign_checkpoint_are_one_line(run_cli, trained, tmp_path, kind):
    run = _copy_run(trained, tmp_path)
    marker = tmp_path / "pwned"
    _foreign_state(kind, run / "best.pt", trained / "best.pt", marker)
    refused(run_cli, tmp_path / "ws", "eval", "--checkpoint", run / "best.pt", "--val-len", "2", "--device", "cpu")
    refused(run_cli, tmp_path / "ws", "export", run / "best.pt", "--out", tmp_path / "ws" / "exp")
    assert not marker.exists()


def test_train_folder_belongs_to_one_run(run_cli, trained, tmp_path):
    run = _copy_run(trained, tmp_path)
    ws = tmp_path / "ws"
    # finished: refused without --resume; a changed setting refused with it
    refused(run_cli, ws, "train", *SMALL_TRAIN, "--out", run, needles=("finished", "--resume"))
    refused(run_cli, ws, "train", *SMALL_TRAIN, "--lr", "0.5", "--resume", "--out", run, needles=("--lr",))
    # config.json removed or stubbed: last.pt still knows the settings it was trained with
    (run / "config.json").unlink()
    refused(run_cli, ws, "train", *SMALL_TRAIN, "--batch", "1", "--resume", "--out", run, needles=("--batch",))
    (run / "config.json").write_text("{}")
    refused(run_cli, ws, "train", *SMALL_TRAIN, "--resume", "--out", run)
    # the marker stubbed: refused, not trusted
    (run / "config.json").unlink()
    (run / ".rtseg-run.json").write_text("{}")
    refused(run_cli, ws, "train", *SMALL_TRAIN, "--resume", "--out", run)
    # a folder of the user's files, or of another kind of run
    notes = ws / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("mine\n")
    refused(run_cli, ws, "train", *SMALL_TRAIN, "--out", notes, needles=("todo.txt", "--overwrite"))
    with claim_run_dir(ws / "doc", "doctor") as d:
        d.finish()
    refused(run_cli, ws, "train", *SMALL_TRAIN, "--out", ws / "doc", needles=("doctor",))


def test_train_overwrite_replaces_the_run_and_lists_only_what_it_wrote(run_cli, trained, tmp_path):
    run = _copy_run(trained, tmp_path)
    r = run_cli("train", *SMALL_TRAIN, "--lr", "0.001", "--overwrite", "--out", run, "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 0.001
    assert all(Path(summary[k]).is_file() for k in ("checkpoint", "last") if summary[k] is not None)
    assert json.loads((run / ".rtseg-run.json").read_text())["status"] == "finished"


def test_a_second_writer_is_refused_naming_the_holder(run_cli, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    with claim_run_dir(ws / "run", "train", {"x": 1}):
        refused(run_cli, ws, "train", *SMALL_TRAIN, "--out", ws / "run", needles=(f"pid {os.getpid()}",))
    exp = ws / "exp"
    exp.mkdir()
    with acquire_lock(exp / ".rtseg.lock", "export folder"):
        refused(run_cli, ws, "export", "baseline1", "--input", "32x64", "--out", exp, needles=(f"pid {os.getpid()}",))
    lut = ws / "lut.json"
    with lock_file(lut, "LUT"):
        refused(run_cli, ws, "profile-ops", "--input", "32x64", "--out", lut, "--device", "cpu", needles=(f"pid {os.getpid()}",))


def test_claim_run_dir_rules(tmp_path):
    cfg = {"lr": 1}
    with claim_run_dir(tmp_path / "r", "search", cfg) as d:
        assert not d.resuming
    with pytest.raises(RtsegError, match="interrupted search run; pass --resume"):
        claim_run_dir(tmp_path / "r", "search", cfg)
    with claim_run_dir(tmp_path / "r", "search", cfg, resume=True) as d:
        assert d.resuming
        d.finish()
    with pytest.raises(RtsegError, match="finished search run"):
        claim_run_dir(tmp_path / "r", "search", cfg)
    with pytest.raises(RtsegError, match=r"lr 1 \(now 2\)"):
        claim_run_dir(tmp_path / "r", "search", {"lr": 2}, resume=True)
    with pytest.raises(RtsegError, match="rtseg search run, not a train run"):
        claim_run_dir(tmp_path / "r", "train", cfg, resume=True)
    with claim_run_dir(tmp_path / "r", "train", cfg, overwrite=True) as d:
        assert d.replacing and not d.resuming
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(RtsegError, match="symbolic link loop"):
        claim_run_dir(loop, "train")


# -- never over an input ----------------------------------------------------------------------------
def test_no_command_writes_over_its_input(run_cli, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    video = ws / "drive.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    refused(run_cli, ws, "demo", "-m", "baseline1", "--source", video, "--save", video, needles=("--save", "input"))
    refused(run_cli, ws, "demo", "-m", "baseline1", "--source", video, "--record", video, needles=("--record", "input"))
    notes = ws / "notes.txt"
    notes.write_text("my notes\n")
    refused(run_cli, ws, "arch", "sample", "--out", notes, needles=("--overwrite",))
    refused(run_cli, ws, "arch", "scale", "erfnet", "--out", notes, needles=("--overwrite",))
    arch = ws / "model.json"
    arch.write_text(json.dumps(json.loads(run_cli("arch", "sample").stdout)))
    refused(run_cli, ws, "export", arch, "--input", "32x64", "--out", ws, needles=("input",))
    r = run_cli("arch", "sample", "--out", notes, "--overwrite")
    assert r.exit_code == 0 and json.loads(notes.read_text())["format"] == "rtseg.arch"


def test_a_failed_or_killed_export_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    from rtseg.export import pipeline
    from rtseg.export.pipeline import ExportOptions, export_model

    out = tmp_path / "exp"
    export_model("baseline1", ExportOptions(input_hw=(32, 64), fp16=False, simplify=False, out_dir=out))
    before = snapshot(out)

    def killed(ex: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_parity_fp32", killed)
    with pytest.raises(KeyboardInterrupt):
        export_model("erfnet", ExportOptions(input_hw=(32, 64), fp16=False, simplify=False, out_dir=out))
    assert snapshot(out) == before  # no staging folder left, the old export untouched
    # files of an export's names that no export wrote are refused without --overwrite
    other = tmp_path / "mine"
    other.mkdir()
    (other / "model.onnx").write_bytes(b"my own model")
    with pytest.raises(RtsegError, match="--overwrite"):
        export_model("baseline1", ExportOptions(input_hw=(32, 64), out_dir=other))
    assert (other / "model.onnx").read_bytes() == b"my own model"


# -- special files, deep JSON, symbolic link loops --------------------------------------------------
@pytest.fixture
def specials(tmp_path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    os.mkfifo(ws / "fifo.json")
    (ws / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (ws / "deep_obj.json").write_text('{"a":' * 50_000 + "1" + "}" * 50_000)
    (ws / "loop").symlink_to(ws / "loop")
    return ws


_READERS = [
    ("arch", "show", "{}"), ("lut", "show", "{}"), ("train", "--arch", "{}", "--input", "32x64", "--device", "cpu"),
    ("eval", "--checkpoint", "{}"), ("export", "{}"), ("bench", "{}"), ("demo", "-m", "{}", "--frames", "1"),
    ("demo", "-m", "baseline1", "--source", "{}"), ("export", "baseline1", "--profile", "{}"),
    ("lut", "validate", "{}"), ("arch", "show", "baseline1", "--lut", "{}"),
]


@pytest.mark.parametrize("special", ["fifo.json", "/dev/zero", "/dev/urandom", "deep.json", "deep_obj.json", "loop"])
@pytest.mark.parametrize("args", _READERS, ids=lambda a: " ".join(x for x in a if x != "{}")[:40])
def test_special_files_are_refused_at_once(run_cli, specials, special, args):
    path = special if special.startswith("/") else str(specials / special)
    if special.startswith("deep") and args[:2] in (("eval", "--checkpoint"), ("demo", "-m")) or (
            special.startswith("deep") and args[0] == "demo" and "--source" in args):
        pytest.skip("not a JSON input")
    refused(run_cli, specials, *[path if a == "{}" else a for a in args])


@pytest.mark.parametrize("args", [
    ("train", *SMALL_TRAIN, "--out", "{}"), ("export", "baseline1", "--out", "{}"), ("predict", "baseline1", "img.png", "--out", "{}"),
    ("arch", "sample", "--out", "{}"), ("profile-ops", "--input", "32x64", "--out", "{}"), ("doctor", "--run", "--out", "{}"),
    ("demo", "-m", "baseline1", "--save", "{}/x.mp4"), ("lut", "validate", "lut.json", "--plot", "{}"),
], ids=lambda a: " ".join(a[:2]))
def test_a_symlink_loop_as_output_is_one_line(run_cli, specials, args):
    (specials / "img.png").write_bytes(b"")
    (specials / "lut.json").write_text("{}")
    loop = str(specials / "loop")
    refused(run_cli, specials, *[a.replace("{}", loop) for a in args], needles=("symbolic link loop",))


# -- files prove what they claim --------------------------------------------------------------------
def _lut_doc() -> dict[str, Any]:
    entry = {"op": "conv", "median_ms": 1.0, "p10_ms": 0.9, "p90_ms": 1.2, "n": 5, "method": "isolated"}
    return {"format": "rtseg.lut", "schema_version": 1, "space": "ssr", "num_classes": 19, "heads": ["classifier"], "complete": False,
            "provenance": {"device": {"kind": "cpu", "name": "x"}, "backend": "torch", "precision": "fp32", "batch": 1,
                           "input": [64, 128], "method": "isolated", "threads": 1, "warmup": 1, "repeats": 5},
            "entries": {"k1": dict(entry), "k2": dict(entry, median_ms=2.0, p90_ms=2.5)}, "skeletons": {}}


def _set(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    node = doc
    *parents, last = dotted.split(".")
    for k in parents:
        node = node[k]
    node[last] = value
    return doc


def _lut_cases() -> list[Any]:
    from rtseg.latency.lut import _PROVENANCE_FIELDS

    cases = [("device", "provenance.device", "cpu"), ("skeletons", "skeletons", "none"), ("probes", "probes", "none"),
             ("heads", "heads", "classifier"), ("heads-empty", "heads", []), ("num_classes", "num_classes", "19"),
             ("num_classes-bool", "num_classes", True), ("input", "provenance.input", ["64", 128]),
             ("negative", "entries.k1.median_ms", -7.692), ("huge", "entries.k1.median_ms", 1e308),
             ("huge-all", "entries.k1", {"median_ms": 1e308, "p10_ms": 1e308, "p90_ms": 1e308, "n": 1}),
             ("nan", "entries.k1.median_ms", float("nan")), ("inf", "entries.k1.p90_ms", float("inf")),
             ("unordered", "entries.k1.p10_ms", 5.0), ("n-zero", "entries.k1.n", 0), ("n-float", "entries.k1.n", 1.5),
             ("ref", "entries.k1.ref_ms", 0), ("calibration", "calibration", {"scale": -1}),
             ("skeleton-negative", "skeletons", {"classifier": {"median_ms": -1, "p10_ms": -1, "p90_ms": -1, "n": 1, "fixed": []}}),
             ("device-name", "provenance.device.name", 7), ("batch-zero", "provenance.batch", 0)]
    # every typed provenance field, given a value of a type it does not take
    for key, types, _ in _PROVENANCE_FIELDS:
        cases.append((f"provenance.{key}", f"provenance.{key}", "text" if str not in types else [1]))
    return [pytest.param(path, value, id=name) for name, path, value in cases]


def test_the_lut_fixture_itself_is_valid(run_cli, tmp_path):
    p = tmp_path / "lut.json"
    p.write_text(json.dumps(_lut_doc()))
    r = run_cli("lut", "show", p)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("path,value", _lut_cases())
def test_a_lut_field_of_the_wrong_type_or_not_finite_is_one_line(run_cli, tmp_path, path, value):
    ws = tmp_path / "ws"
    ws.mkdir()
    lut = ws / "lut.json"
    lut.write_text(json.dumps(_set(_lut_doc(), path, value)))  # NaN and Infinity as JSON writes them
    refused(run_cli, ws, "lut", "show", lut, needles=(str(lut),))
    refused(run_cli, ws, "arch", "show", "baseline1", "--input", "64x128", "--lut", lut)


@pytest.mark.parametrize("kind", ["negative", "device-string", "deep", "fifo", "truncated"])
def test_profile_ops_resuming_a_damaged_lut_is_one_line(run_cli, tmp_path, kind):
    ws = tmp_path / "ws"
    ws.mkdir()
    lut = ws / "lut.json"
    text = json.dumps(_lut_doc())
    if kind == "negative":
        text = json.dumps(_set(_lut_doc(), "entries.k1.median_ms", -7.7))
    elif kind == "device-string":
        text = json.dumps(_set(_lut_doc(), "provenance.device", "cpu"))
    elif kind == "deep":
        text = "[" * 100_000 + "]" * 100_000
    elif kind == "truncated":
        text = text[: len(text) // 2]
    if kind == "fifo":
        os.mkfifo(lut)
    else:
        lut.write_text(text)
    refused(run_cli, ws, "profile-ops", "--input", "64x128", "--device", "cpu", "--out", lut, needles=(str(lut),))


def test_doctor_run_folder_is_its_own(run_cli, tmp_path):
    ws = tmp_path / "ws"
    (ws / "mine").mkdir(parents=True)
    (ws / "mine" / "notes.txt").write_text("mine\n")
    refused(run_cli, ws, "doctor", "--run", "--out", ws / "mine", needles=("notes.txt", "--overwrite"))
    (ws / "doc").mkdir()
    (ws / "doc" / ".rtseg-run.json").write_text('{"format": "rtseg.run"}')
    refused(run_cli, ws, "doctor", "--run", "--out", ws / "doc", needles=("run marker",))
    lut = ws / "lut.json"
    lut.write_text(json.dumps(_lut_doc()))
    refused(run_cli, ws, "lut", "validate", lut, "--plot", lut, needles=("--plot", "input"))


def test_a_lut_of_another_device_or_backend_is_refused_unless_forced(run_cli, tmp_path):
    from rtseg.latency.lut import load_lut

    p = tmp_path / "ws" / "lut.json"
    p.parent.mkdir()
    p.write_text(json.dumps(_set(_lut_doc(), "provenance.device.name", "Some Other CPU 9000")))
    with pytest.raises(RtsegError, match="--force"):
        load_lut(p).check_device()
    with pytest.raises(RtsegError, match="onnxruntime"):
        load_lut(p).check_device(force=False, backend="onnxruntime")
    assert load_lut(p).check_device(force=True) is not None
    refused(run_cli, tmp_path / "ws", "arch", "show", "baseline1", "--input", "64x128", "--lut", p, needles=("--force",))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from rtseg.export.pipeline import ExportOptions, export_model

    out = tmp_path_factory.mktemp("exported") / "m"
    export_model("baseline1", ExportOptions(input_hw=(32, 64), fp16=False, simplify=False, out_dir=out))
    return out


_SIDECAR_CASES = [
    ("sha256", "artifacts.onnx.sha256", "0" * 64, "sha256"), ("classes", "data_info.num_classes", 5, "outputs 19"),
    ("palette", "data_info.palette", [[1, 2, 3]], "palette"), ("mean-nan", "data_info.mean", [float("nan"), 0.5, 0.5], "mean"),
    ("std-zero", "data_info.std", [0.0, 0.5, 0.5], "std"), ("std-inf", "data_info.std", [float("inf"), 1, 1], "std"),
    ("data_info-str", "data_info", "imagenet", "data_info"), ("artifacts-list", "artifacts", [], "artifacts"),
    ("palette-range", "data_info.palette", [[300, 0, 0]] * 19, "palette"), ("names", "data_info.class_names", ["a"], "class_names"),
    ("file", "artifacts.onnx.file", "other.onnx", "does not describe"),
]


@pytest.mark.parametrize("path,value,needle", [pytest.param(*c[1:], id=c[0]) for c in _SIDECAR_CASES])
def test_a_sidecar_that_does_not_fit_its_model_is_one_line(run_cli, exported, tmp_path, path, value, needle):
    ws = tmp_path / "ws"
    shutil.copytree(exported, ws)
    (ws / ".rtseg.lock").unlink(missing_ok=True)
    side = ws / "model.json"
    side.write_text(json.dumps(_set(json.loads(side.read_text()), path, value)))
    import cv2
    import numpy as np

    cv2.imwrite(str(ws / "img.png"), np.zeros((32, 64, 3), np.uint8))
    refused(run_cli, ws, "predict", ws / "model.onnx", ws / "img.png", "--out", ws / "pred", needles=(needle,))


def test_a_model_changed_after_its_export_is_refused(run_cli, exported, tmp_path):
    ws = tmp_path / "ws"
    shutil.copytree(exported, ws)
    with open(ws / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    refused(run_cli, ws, "bench", ws / "model.onnx", "--input", "32x64", "--iters", "1", "--warmup", "0", needles=("sha256",))


def _camvid(root: Path, label_value: int) -> Path:
    import cv2
    import numpy as np

    for split in ("train", "val"):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(2):
            cv2.imwrite(str(root / split / f"f{i}.png"), np.full((32, 64, 3), 90, np.uint8))
            cv2.imwrite(str(root / f"{split}annot" / f"f{i}.png"), np.full((32, 64), label_value, np.uint8))
    return root


def test_camvid_labels_outside_the_classes_are_refused_with_the_file(run_cli, tmp_path):
    root = _camvid(tmp_path / "ws" / "camvid", 50)
    refused(run_cli, tmp_path / "ws", "train", *SMALL_TRAIN, "--data", f"camvid:{root}", "--out", tmp_path / "ws" / "run",
            needles=("trainannot", "50"))


def test_cityscapes_label_ids_outside_its_table_are_refused():
    import numpy as np

    from rtseg.data import cityscapes
    from rtseg.data.base import map_label_ids

    ok = map_label_ids(np.array([[7, 0, 33]], np.uint8), cityscapes.ID_TO_TRAINID, cityscapes.DEFINED_IDS, "a.png", "Cityscapes", "0..33")
    assert ok.tolist() == [[0, 255, 18]]  # road, unlabeled (ignored), bicycle
    with pytest.raises(RtsegError, match=r"b\.png holds class id\(s\) 34, 200"):
        map_label_ids(np.array([[7, 34, 200]], np.uint8), cityscapes.ID_TO_TRAINID, cityscapes.DEFINED_IDS, "b.png", "Cityscapes", "0..33")


def test_a_run_without_a_scored_epoch_lists_no_best_checkpoint(tmp_path):
    from rtseg.train.config import TrainConfig
    from rtseg.train.pipeline import train

    root = _camvid(tmp_path / "camvid", 11)  # void everywhere: the dataset ignores it, nothing to score
    s = train("baseline1", f"camvid:{root}", (32, 64), TrainConfig(epochs=1, batch=2, workers=0, device="cpu", progress=False),
              tmp_path / "run")
    assert s["checkpoint"] is None and not (tmp_path / "run" / "best.pt").exists() and s["best_miou"] is None


# -- the torchrun variables -------------------------------------------------------------------------
@pytest.mark.parametrize("env,needle", [
    ({"WORLD_SIZE": "abc"}, "WORLD_SIZE='abc'"), ({"LOCAL_RANK": "x"}, "LOCAL_RANK='x'"), ({"WORLD_SIZE": "0"}, "at least 1"),
    ({"WORLD_SIZE": "2"}, "RANK is not set"), ({"WORLD_SIZE": "2", "RANK": "5"}, "not below"),
    ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "9"}, "LOCAL_RANK=9"), ({"WORLD_SIZE": "2", "RANK": "1"}, "MASTER_ADDR"),
    ({"RANK": "3"}, "WORLD_SIZE is 1"), ({"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "port"}, "MASTER_PORT"),
], ids=lambda v: ",".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else None)
def test_torchrun_variables_are_checked(run_cli, tmp_path, monkeypatch, env, needle):
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ws = tmp_path / "ws"
    ws.mkdir()
    refused(run_cli, ws, "train", *SMALL_TRAIN, "--out", ws / "run", needles=(needle,))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_missing_peer_ends_the_wait_with_one_line(tmp_path, rank):
    env = dict(os.environ, WORLD_SIZE="2", RANK=rank, LOCAL_RANK=rank, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               RTSEG_RENDEZVOUS_TIMEOUT_S="2", OMP_NUM_THREADS="1")
    code = "import sys; from rtseg.cli import main; sys.argv[0] = 'rtseg'; main()"
    r = subprocess.run([sys.executable, "-c", code, "train", *SMALL_TRAIN, "--out", tmp_path / "run"],
                       capture_output=True, text=True, timeout=120, env=env)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "could not meet the other processes" in errors[0] and "within 2 s" in errors[0]


# -- the library pieces the search reuses -----------------------------------------------------------
def test_read_json_refuses_special_large_and_deep_files(tmp_path):
    from rtseg.io import read_json

    big = tmp_path / "big.json"
    big.write_text("[" + "0," * 600 + "0]")
    with pytest.raises(RtsegError, match="more than"):
        read_json(big, "LUT", max_bytes=1000)
    deep = tmp_path / "d.json"
    deep.write_text("[" * 150 + "]" * 150)  # parses, but deeper than any file rtseg writes
    with pytest.raises(RtsegError, match="nests deeper"):
        read_json(deep)
    for special in ("/dev/zero", "/dev/urandom"):
        with pytest.raises(RtsegError, match="character device"):
            read_json(special)


def test_load_state_names_what_it_expected(tmp_path):
    from rtseg.checkpoint import load_state

    p = tmp_path / "state.pt"
    torch.save({"format": "rtseg.checkpoint", "model": {}}, p)
    with pytest.raises(RtsegError, match="not a search state .an rtseg.checkpoint file."):
        load_state(p, "rtseg.search_state", "search state", "pass --overwrite to start over")
    torch.save({"format": "rtseg.search_state", "schema_version": 2}, p)
    with pytest.raises(RtsegError, match="schema_version 2"):
        load_state(p, "rtseg.search_state", "search state", "start over", schema_version=1)
    torch.save({"format": "rtseg.search_state", "schema_version": 1, "step": 4}, p)
    assert load_state(p, "rtseg.search_state", "search state", "start over", schema_version=1)["step"] == 4


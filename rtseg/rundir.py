"""Run folders that belong to one run, and a lock against a second writer.

Every command that writes a folder of results (``train``, ``export``, ``doctor --run``, the search)
claims it first with :func:`claim_run_dir`. The claim

* refuses a path that cannot be a folder (a file, a symbolic link loop) in one line;
* takes an exclusive, non-blocking lock (``fcntl.flock`` on ``.rtseg.lock`` inside the folder) that
  the operating system drops when the process ends, however it ends: a second ``rtseg`` writing the
  same folder is refused at once, naming the process that holds it, instead of mixing its files with
  the first one's;
* reads the folder's marker, ``.rtseg-run.json`` (kind of run, its config, whether it finished), and
  refuses a folder that holds another run: a finished run, an interrupted one without ``--resume``,
  one resumed with other settings, a run of another kind, or files rtseg did not write, unless
  ``--overwrite`` is given (``replaceable`` kinds, whose runs are redone rather than resumed, such as
  an export, may replace their own kind without it);
* writes the marker as ``running`` with this run's config; :meth:`RunDir.finish` marks it finished.

Single files that a long job resumes (a LUT) are locked with :func:`lock_file`.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from rtseg.errors import RtsegError
from rtseg.io import atomic_write_json, check_same_config, read_json

MARKER = ".rtseg-run.json"
LOCK = ".rtseg.lock"
RUN_FORMAT = "rtseg.run"
RUN_SCHEMA_VERSION = 1


class FileLock:
    """An exclusive ``flock`` on a lock file, holding this process's id for whoever is refused."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None  # type: ignore[assignment]

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "another process"


def acquire_lock(lock_path: str | os.PathLike, what: str) -> FileLock:
    """Lock ``lock_path`` (created if missing) or refuse at once, in one line naming the holder's pid."""
    import fcntl

    lock_path = Path(lock_path)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as exc:
        raise RtsegError(f"{what} cannot be locked: {lock_path} cannot be opened ({exc.strerror or exc}); "
                         "pass a path you can write to") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _holder(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise RtsegError(f"{what} is being written by another rtseg run ({holder}); wait for it to end, "
                             "or choose another output") from None
        raise RtsegError(f"{what} cannot be locked ({exc.strerror or exc})") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return FileLock(lock_path, fd)


def lock_file(path: str | os.PathLike, what: str = "output file") -> FileLock:
    """Lock a single output file a job writes and resumes (a LUT) through ``.NAME.lock`` beside it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return acquire_lock(path.with_name(f".{path.name}.lock"), f"{what} {path}")


def _check_folder_path(out: Path, name: str) -> None:
    """A path that can hold a run folder: not a file, not a symbolic link loop (which ``exists()``
    reports as missing, and ``mkdir`` then fails on with a traceback)."""
    try:
        st = out.stat()
    except FileNotFoundError:
        if out.is_symlink():
            raise RtsegError(f"{name} {out} is a symbolic link to nothing; remove it or pass another folder") from None
        return
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RtsegError(f"{name} {out} is a symbolic link loop; pass a real folder") from None
        raise RtsegError(f"{name} {out} cannot be checked ({exc.strerror or exc}); pass a folder you can write to") from None
    import stat

    if not stat.S_ISDIR(st.st_mode):
        raise RtsegError(f"{name} {out} is a file, but a folder is expected; pass a folder path")


def check_folder_path(out: str | os.PathLike, name: str = "output folder") -> Path:
    """Public form of the path check :func:`claim_run_dir` starts with (for callers that only create)."""
    out = Path(out).expanduser()
    _check_folder_path(out, name)
    return out


@dataclass
class RunDir:
    """A claimed run folder: locked until :meth:`release` (or the end of the process)."""

    path: Path
    kind: str
    config: Any
    resuming: bool  # the folder held this kind of run with this config, and --resume was given
    replacing: bool  # the folder held something else, and --overwrite (or a replaceable kind) allowed it
    lock: Optional[FileLock] = None
    marker: dict[str, Any] = field(default_factory=dict)
    fresh: bool = False  # the folder held nothing when claimed (so a failed start may be undone)
    created: bool = False  # and did not exist

    def _write(self, status: str) -> None:
        self.marker.update({"format": RUN_FORMAT, "schema_version": RUN_SCHEMA_VERSION, "kind": self.kind, "status": status,
                            "config": self.config, "pid": os.getpid(), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.marker.setdefault("created", self.marker["updated"])
        atomic_write_json(self.path / MARKER, self.marker)

    def start(self) -> None:
        """Mark the folder as this run's (``running``, with its config); :func:`claim_run_dir` does it
        unless told ``start=False`` by a caller that still checks the folder's state files first."""
        self._write("running")

    def finish(self) -> None:
        """Mark the run finished: a later run into this folder needs ``--resume`` (same config) or ``--overwrite``."""
        self._write("finished")

    def discard(self, written: Iterable[str]) -> None:
        """Undo the start of a run that failed before saving anything to resume from, so a fixed
        re-run is not refused as this one's continuation: in a folder that was empty, remove the
        files and folders named in ``written`` (relative to it) and the marker, and the folder
        itself if the claim created it. Does nothing for a folder that held something."""
        if not self.fresh:
            return
        for name in written:
            p = self.path / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        (self.path / MARKER).unlink(missing_ok=True)
        if self.created and not _foreign_files(self.path, ()):
            self.release()
            (self.path / LOCK).unlink(missing_ok=True)
            try:
                self.path.rmdir()
            except OSError:
                pass

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def read_marker(out: str | os.PathLike) -> dict[str, Any] | None:
    """The marker of a run folder (None when it has none); a damaged one is one :class:`RtsegError`."""
    path = Path(out) / MARKER
    if not path.exists() and not path.is_symlink():
        return None
    m = read_json(path, "run folder marker")
    if not (isinstance(m, dict) and m.get("format") == RUN_FORMAT and isinstance(m.get("kind"), str)
            and m.get("status") in ("running", "finished")):
        raise RtsegError(f"{path} is not a run marker rtseg wrote; the folder {Path(out)} holds something else: choose another "
                         "output folder, or pass --overwrite to write into it anyway")
    return m


def _foreign_files(out: Path, ignore: Iterable[str]) -> list[str]:
    skip = {MARKER, LOCK, *ignore}
    try:
        return sorted(p.name for p in out.iterdir() if p.name not in skip)
    except OSError as exc:
        raise RtsegError(f"{out} cannot be listed ({exc.strerror or exc}); pass a folder you can read and write") from None


def claim_run_dir(
    out: str | os.PathLike,
    kind: str,
    config: Any = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    replaceable: bool = False,
    may_differ: tuple[str, ...] = (),
    flags: dict[str, str] | None = None,
    whole: tuple[str, ...] = (),
    adopt: tuple[str, ...] = (),
    name: str = "--out",
    start: bool = True,
) -> RunDir:
    """Claim ``out`` for one run of ``kind`` with ``config`` (plain JSON), creating it if missing.

    Refused (one :class:`RtsegError`, nothing written) when another process holds its lock; when it
    holds a run of another kind or files rtseg did not write (unless ``overwrite``); a finished run of
    this kind (unless ``resume`` with the same config, ``overwrite``, or ``replaceable``); an
    interrupted one without ``resume`` (unless ``overwrite`` or ``replaceable``); or a run resumed
    with another config (:func:`rtseg.io.check_same_config`, with ``may_differ``/``flags``/``whole``).
    ``adopt``: names of files a folder of this kind written before markers existed holds (train's
    ``config.json``): such a folder counts as this kind's interrupted run. Returns the locked
    :class:`RunDir`; ``resuming`` says whether the caller continues the run in it. With
    ``start=False`` the marker is written only by :meth:`RunDir.start`, so a caller that goes on to
    refuse the folder's state files leaves the folder as it found it."""
    out = Path(out).expanduser()
    _check_folder_path(out, name)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RtsegError(f"{name} {out} cannot be created ({exc.strerror or exc}); pass a folder you can write to") from None
    lock = acquire_lock(out / LOCK, f"{name} {out}")
    try:
        run = _judge(out, kind, config, resume, overwrite, replaceable, may_differ, flags, whole, adopt, name)
        run.lock, run.created = lock, created
        if start:
            run.start()
        return run
    except BaseException:
        lock.release()
        raise


def _judge(out: Path, kind: str, config: Any, resume: bool, overwrite: bool, replaceable: bool, may_differ: tuple[str, ...],
           flags: dict[str, str] | None, whole: tuple[str, ...], adopt: tuple[str, ...], name: str) -> RunDir:
    """What the folder holds, and whether this run may take it."""
    hint = f"choose another {name}, or pass --overwrite to replace it"
    try:
        marker = read_marker(out)
    except RtsegError:
        if overwrite:
            return RunDir(out, kind, config, resuming=False, replacing=True)
        raise
    if marker is None:
        files = _foreign_files(out, ())
        if not files:
            return RunDir(out, kind, config, resuming=False, replacing=False, fresh=True)
        if adopt and any((out / a).exists() for a in adopt):
            if resume or overwrite or replaceable:  # a folder of this kind from before markers: the caller checks its config
                return RunDir(out, kind, config, resuming=resume and not overwrite, replacing=overwrite or replaceable)
            raise RtsegError(f"{out} already holds a {kind} run; pass --resume to continue it, or {hint}")
        if overwrite:
            return RunDir(out, kind, config, resuming=False, replacing=True)
        shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
        raise RtsegError(f"{out} holds files rtseg did not write for a {kind} run ({shown}); {hint} (files of the same name are replaced)")
    if marker["kind"] != kind:
        if overwrite:
            return RunDir(out, kind, config, resuming=False, replacing=True)
        raise RtsegError(f"{out} holds an rtseg {marker['kind']} run, not a {kind} run; {hint}")
    finished = marker["status"] == "finished"
    if overwrite or (replaceable and not resume):
        return RunDir(out, kind, config, resuming=False, replacing=True, marker={"created": marker.get("created")})
    if not resume:
        state = "a finished" if finished else "an interrupted"
        raise RtsegError(f"{out} already holds {state} {kind} run; pass --resume to continue it with the same settings, or {hint}")
    check_same_config(marker.get("config"), config, out, may_differ=may_differ, flags=flags, whole=whole)
    return RunDir(out, kind, config, resuming=True, replacing=False, marker={k: marker[k] for k in ("created",) if k in marker})


__all__ = ["FileLock", "LOCK", "MARKER", "RunDir", "acquire_lock", "check_folder_path", "claim_run_dir", "lock_file", "read_marker"]

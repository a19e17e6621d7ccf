"""Small file helpers shared by every command that writes results.

:func:`check_output_dir`, :func:`check_output_file` and :func:`check_input_file` refuse a path that
cannot be used before any work starts (the CLI runs them on every path option, through
``rtseg.cli.params``; library code runs them on the default paths it computes).

Long jobs (profiling, search, training) write through :func:`atomic_write_text` /
:func:`atomic_write_json` so an interruption never leaves a truncated file behind: the data goes to
a temporary file in the same directory, is flushed and fsynced, then renamed over the target.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

from rtseg.errors import RtsegError


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def atomic_save(path: str | os.PathLike, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and rename the result over ``path`` (for torch.save, cv2, PNGs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


#: Largest JSON document rtseg reads (LUTs, archs, sidecars, configs, run states are far smaller):
#: a larger one is a wrong path, and reading it whole would exhaust memory first.
MAX_JSON_BYTES = 256 * 2**20
#: Deepest nesting of objects and arrays accepted in a JSON file; rtseg's own files stay below 10.
MAX_JSON_DEPTH = 100


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike, what: str = "file") -> int:
    """An open read-only descriptor of ``path`` if it is a regular file; anything else (a FIFO, which
    would block forever; ``/dev/zero`` or ``/dev/urandom``, which never end; a folder; a symlink loop)
    is refused at once with one :class:`RtsegError`. Opened non-blocking, so a FIFO never waits for a
    writer; the caller closes the descriptor."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RtsegError(f"{what} not found: {path} (check the path)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RtsegError(f"{what} {path} is a symbolic link loop; pass the real file") from None
        raise RtsegError(f"{what} {path} cannot be read ({exc.strerror or exc}); check the path and its permissions") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise RtsegError(f"{what} {path} is {_kind_of(st.st_mode)}, not a regular file; pass a file")
    return fd


def check_regular_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Refuse a path that is not a regular file (see :func:`open_regular`), without reading it."""
    os.close(open_regular(path, what))
    return Path(path)


def read_regular_bytes(path: str | os.PathLike, what: str = "file", max_bytes: int | None = None) -> bytes:
    """The bytes of a regular file (:func:`open_regular`), refusing one larger than ``max_bytes``."""
    fd = open_regular(path, what)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise RtsegError(f"{what} {path} is {size / 2**20:.0f} MiB, more than the {max_bytes / 2**20:.0f} MiB such a file can be; "
                             "check the path")
        data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
    if max_bytes is not None and len(data) > max_bytes:  # grew while read (a file being written)
        raise RtsegError(f"{what} {path} is larger than the {max_bytes / 2**20:.0f} MiB such a file can be; check the path")
    return data


def file_sha256(path: str | os.PathLike, what: str = "model file") -> str:
    """The SHA-256 of a regular file (a FIFO or a device is refused at once: it would block or never end)."""
    h = hashlib.sha256()
    with os.fdopen(open_regular(path, what), "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_depth_exceeds(obj: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``obj`` (parsed JSON) nests objects/arrays deeper than ``limit``; iterative, so a deep
    document cannot exhaust the stack here."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return False


def parse_json_text(text: str, where: str) -> Any:
    """``json.loads`` with one :class:`RtsegError` for a syntax error, a document nested deeper than
    :data:`MAX_JSON_DEPTH` (which would otherwise exhaust the stack) or a non-finite constant."""
    try:
        obj = json.loads(text)
    except RecursionError:
        raise RtsegError(f"{where} nests deeper than {MAX_JSON_DEPTH} levels; it is not a file rtseg wrote") from None
    except json.JSONDecodeError as exc:
        raise RtsegError(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if json_depth_exceeds(obj):
        raise RtsegError(f"{where} nests deeper than {MAX_JSON_DEPTH} levels; it is not a file rtseg wrote")
    return obj


def read_json(path: str | os.PathLike, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read a JSON file, turning every way it can be unusable into one clear :class:`RtsegError`: a
    missing file, a folder, a special file (FIFO, device: refused before reading, never blocking), a
    file over ``max_bytes``, bytes that are not UTF-8, a syntax error, nesting deeper than
    :data:`MAX_JSON_DEPTH`."""
    path = Path(path)
    data = read_regular_bytes(path, what, max_bytes)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RtsegError(f"{what} {path} is not a text file (expected JSON)") from None
    return parse_json_text(text, f"{what} {path}")


_HW = re.compile(r"^\s*(\d+)\s*[xX,]\s*(\d+)\s*$")


def config_to_json(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON values (tuples become lists), the form ``config.json`` holds and
    ``--resume`` compares with :func:`check_same_config`."""
    return json.loads(json.dumps(asdict(config)))


def parse_hw(text: str | tuple[int, int], divisor: int = 1) -> tuple[int, int]:
    """Parse ``"HxW"`` (e.g. ``512x1024``) into ``(H, W)``; both must be positive multiples of ``divisor``."""
    if isinstance(text, tuple):
        h, w = text
    else:
        m = _HW.match(str(text))
        if not m:
            raise RtsegError(f"bad input size {text!r}: expected HxW such as 512x1024")
        h, w = int(m.group(1)), int(m.group(2))
    if h <= 0 or w <= 0:
        raise RtsegError(f"bad input size {h}x{w}: height and width must be positive")
    if h % divisor or w % divisor:
        raise RtsegError(
            f"input size {h}x{w} is not a multiple of {divisor} in both dimensions, which this network "
            f"needs; try {max(divisor, round(h / divisor) * divisor)}x{max(divisor, round(w / divisor) * divisor)}"
        )
    return h, w


def machine_memory_bytes() -> int | None:
    """Physical memory of this machine (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def check_batch_memory(batch: int, h: int, w: int, num_classes: int = 19, name: str = "--batch") -> None:
    """Refuse a batch whose input and output tensors alone (float32 images and class logits) would
    take more than half this machine's memory: the network's activations come on top, so such a
    run could only exhaust memory (and swap the machine) before failing."""
    total = machine_memory_bytes()
    need = int(batch) * int(h) * int(w) * 4 * (3 + max(1, int(num_classes)))
    if total and need > total // 2:
        most = max(1, (total // 2) // max(1, need // max(1, int(batch))))
        raise RtsegError(f"{name} {batch} at {h}x{w} needs {need / 2**30:.1f} GiB for its input and output tensors alone, more than "
                         f"half of this machine's {total / 2**30:.0f} GiB; use {name} {most} or less")


def slugify(text: str) -> str:
    """A filesystem-safe lower-case slug (device names become folder names under engines/)."""
    s = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-").lower()
    return s or "unknown"


# --- paths a command will write or read, checked before any work starts ----------------------------


def _exists(path: Path, name: str) -> bool:
    """Whether ``path`` exists; a symbolic link loop (which ``Path.exists`` reports as missing, and
    every later open fails on) and a path that cannot be examined are one :class:`RtsegError`."""
    try:
        os.stat(path)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:  # e.g. a parent folder that may not be listed
        if exc.errno == errno.ELOOP:
            raise RtsegError(f"{name} {path} is a symbolic link loop; pass a real path") from None
        raise RtsegError(f"{name} {path} cannot be checked ({exc.strerror or exc}); pass a path you can read and write") from None


def _nearest_existing(path: Path, name: str) -> Path:
    """The closest ancestor of ``path`` that exists (``..`` resolved first, as the OS will)."""
    p = Path(os.path.abspath(path)).parent
    while not _exists(p, name) and p != p.parent:
        p = p.parent
    return p


def _probe_writable(folder: Path) -> Optional[str]:
    """None if a file can be created in ``folder``, else why not. A real create-and-delete, since
    ``os.access`` consults permission bits, which root passes even in ``/proc`` where nothing can be
    created."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".rtseg-write-check-", dir=folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    os.unlink(tmp)
    return None


def _check_creatable(path: Path, name: str) -> None:
    """``path`` does not exist: its nearest existing ancestor must be a folder we can write into."""
    anc = _nearest_existing(path, name)
    if not anc.is_dir():
        raise RtsegError(f"{name} {path} cannot be created: {anc} is a file, not a folder; pass a path under a folder")
    why = _probe_writable(anc)
    if why:
        raise RtsegError(f"{name} {path} cannot be created: {anc} does not accept new files ({why}); pass a path you can write to")


def check_output_dir(path: str | os.PathLike, name: str = "output folder") -> Path:
    """Refuse a folder path that is an existing file, or that cannot be created or written, without
    creating it (its nearest existing ancestor is tested with a temporary file, removed at once)."""
    path = Path(path).expanduser()
    if _exists(path, name):
        if not path.is_dir():
            raise RtsegError(f"{name} {path} is a file, but a folder is expected; pass a folder path (it is created if missing)")
        why = _probe_writable(path)
        if why:
            raise RtsegError(f"{name} {path} cannot be written: it does not accept new files ({why}); pass a folder you can write to")
        return path
    _check_creatable(path, name)
    return path


def check_output_file(path: str | os.PathLike, name: str = "output file") -> Path:
    """Refuse a file path that is an existing folder, or whose folder cannot be created or written."""
    path = Path(path).expanduser()
    if _exists(path, name):
        if path.is_dir():
            raise RtsegError(f"{name} {path} is a folder, but a file is expected; pass a file path, e.g. one inside that folder")
        why = _probe_writable(path.parent)
        if why:
            raise RtsegError(f"{name} {path} cannot be replaced: {path.parent} does not accept new files ({why}); pass a path you can write to")
        return path
    _check_creatable(path, name)
    return path


def check_input_file(path: str | os.PathLike, name: str = "input file") -> Path:
    """Refuse a file path that does not exist or is a folder."""
    path = Path(path).expanduser()
    if not _exists(path, name):
        raise RtsegError(f"{name} {path} not found (check the path)")
    if path.is_dir():
        raise RtsegError(f"{name} {path} is a folder, but a file is expected; pass the file inside it")
    return check_regular_file(path, name)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (hard links, symlinks and ``..`` seen through); False when
    either does not exist."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b) if Path(a).name and Path(b).name else False


def check_not_input(out: str | os.PathLike | None, inputs: Any, name: str = "output") -> None:
    """Refuse an output path that is one of the command's own inputs (``demo --save`` = ``--source``,
    an ``--out`` that names the arch or model read): writing it would destroy what is being read."""
    if out is None:
        return
    for src in inputs:
        if src is not None and str(src) and same_file(out, src):
            raise RtsegError(f"{name} {out} is also an input of this command ({src}); writing it would destroy the input, "
                             "so pass another output path")


def check_replaceable_file(path: str | os.PathLike | None, fmt: str, what: str, overwrite: bool = False, name: str = "--out") -> None:
    """Refuse to write ``path`` over an existing file that is not a JSON document of format ``fmt``
    (a notes file given as ``arch sample --out``), unless ``overwrite``: a command replaces its own
    kind of file, never an unrelated one."""
    if path is None or overwrite:
        return
    path = Path(path)
    if not _exists(path, name) and not path.is_symlink():
        return
    try:
        doc = read_json(path, what)
        ours = isinstance(doc, dict) and doc.get("format") == fmt
    except RtsegError:
        ours = False
    if not ours:
        raise RtsegError(f"{name} {path} exists and is not {what}; pass --overwrite to replace it, or choose another path")


def config_differences(saved: Any, now: Any, may_differ: tuple[str, ...] = (), whole: tuple[str, ...] = (),
                       prefix: str = "") -> list[tuple[str, str, str]]:
    """``(field, saved, now)`` (values as JSON) for every field of two run configs that differs, nested
    objects as dotted names unless listed in ``whole``. Fields in ``may_differ`` (dotted names) and
    fields one side lacks (a config written by an older rtseg) are not compared."""
    out: list[tuple[str, str, str]] = []
    if not (isinstance(saved, dict) and isinstance(now, dict)):
        return out
    for key in saved:
        name = f"{prefix}{key}"
        if key not in now or name in may_differ:
            continue
        a, b = saved[key], now[key]
        if isinstance(a, dict) and isinstance(b, dict) and a and b and name not in whole:
            out += config_differences(a, b, may_differ, whole, prefix=f"{name}.")
            continue
        ja, jb = json.dumps(a, sort_keys=True, default=str), json.dumps(b, sort_keys=True, default=str)
        if ja != jb:
            out.append((name, ja, jb))
    return out


def check_same_config(saved: Any, now: Any, run_dir: str | os.PathLike, may_differ: tuple[str, ...] = (),
                      flags: dict[str, str] | None = None, whole: tuple[str, ...] = ()) -> None:
    """Refuse (one :class:`RtsegError` naming every differing field, by its command-line flag where
    ``flags`` has one) to resume ``run_dir`` with a config other than the one it was started with: a
    resumed run mixing two configs would be neither."""
    diff = config_differences(saved, now, may_differ, whole)
    if diff:
        names = flags or {}
        parts = [f"{names.get(n, n)} {a} (now {b})" if len(a) + len(b) <= 80 else f"{names.get(n, n)} differs" for n, a, b in diff]
        raise RtsegError(f"{run_dir} was started with other settings than now: {'; '.join(parts)}; "
                         "resume with the same settings or choose another --out")

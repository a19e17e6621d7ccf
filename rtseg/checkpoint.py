"""Checkpoints: one self-describing file per trained network.

A checkpoint is a plain dict written with ``torch.save`` (atomically: temp file + rename) and read
back with ``torch.load(..., weights_only=True)`` only, so loading a file never runs code from it::

    {"format": "rtseg.checkpoint", "schema_version": 1,
     "model": state_dict,                      # tensors only
     "arch": Arch.to_dict(),                   # builds the network with no other file
     "data": DatasetInfo.to_dict(),            # classes, palette, ignore index
     "input_hw": [H, W],
     "preprocess": {"color": "RGB", "scale": "0..1", "mean": [...], "std": [...], "layout": "NCHW"},
     "rtseg_version": ..., "torch_version": ...,
     ...extra}                                 # training state for --resume: epoch, step, optimizer,
                                               # scaler, best_miou, elapsed_s, history...

Everything except tensors is made of dicts, lists, strings and numbers, which ``weights_only``
accepts.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch

from rtseg.arch import Arch
from rtseg.data.base import DatasetInfo
from rtseg.errors import RtsegError
from rtseg.io import atomic_save, open_regular
from rtseg.spaces import build_model, load_arch, validate_arch
from rtseg.version import __version__

CHECKPOINT_FORMAT = "rtseg.checkpoint"
CHECKPOINT_SCHEMA_VERSION = 1
_RESERVED = {"format", "schema_version", "model", "arch", "data", "input_hw", "preprocess"}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module behind DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


def preprocess_meta(info: DatasetInfo) -> dict[str, Any]:
    return {"color": "RGB", "scale": "0..1", "mean": list(info.mean), "std": list(info.std), "layout": "NCHW"}


def save_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    arch: Arch,
    info: DatasetInfo,
    extra: Mapping[str, Any] | None = None,
    input_hw: tuple[int, int] | None = None,
) -> Path:
    """Write a checkpoint atomically; ``extra`` entries are stored at the top level (resume state)."""
    if arch.num_classes != info.num_classes:
        raise ValueError(f"arch has {arch.num_classes} classes but the dataset {info.name} has {info.num_classes}")
    extra = dict(extra or {})
    if "input_hw" in extra:
        hw = extra.pop("input_hw")
        input_hw = input_hw if input_hw is not None else hw
    clash = _RESERVED & set(extra)
    if clash:
        raise ValueError(f"extra may not override {sorted(clash)}")
    ckpt: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "schema_version": CHECKPOINT_SCHEMA_VERSION,
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
        "arch": arch.to_dict(),
        "data": info.to_dict(),
        "input_hw": list(input_hw) if input_hw is not None else None,
        "preprocess": preprocess_meta(info),
        "rtseg_version": str(__version__),
        "torch_version": str(torch.__version__),
    }
    ckpt.update({k: _plain(v) for k, v in extra.items()})
    return atomic_save(path, lambda tmp: torch.save(ckpt, tmp))


def _plain(obj: Any) -> Any:
    """Reduce to what ``weights_only`` loading accepts: tensors, dicts, lists, str, int, float, bool, None
    (str/int subclasses such as ``torch.__version__`` and numpy scalars would be refused on load)."""
    if isinstance(obj, torch.Tensor) or obj is None or type(obj) in (str, int, float, bool):
        return obj
    if isinstance(obj, Mapping):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalar
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint (plain data and tensors only)")


#: How a file written by ``torch.save`` begins: a zip archive (the format since torch 1.6), or the
#: legacy format, a protocol-2 pickle of torch's magic number 0x1950a86a20f9469cfc6c.
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


_CHECKPOINT_HINT = "pass a checkpoint written by rtseg train (RUN/best.pt or RUN/last.pt)"


def read_torch_file(path: str | Path, what: str = "checkpoint", hint: str = _CHECKPOINT_HINT) -> Any:
    """What ``torch.save`` wrote to ``path``, loaded with ``weights_only=True``; every way the file can
    be unusable is one :class:`RtsegError` naming ``what`` and ending with ``hint``: missing, a folder
    or special file (a FIFO or a device is refused before reading, never blocking), empty, random
    bytes, a plain pickle, truncated or damaged, or holding Python objects beyond tensors and plain
    data (never unpickled)."""
    path = Path(path).expanduser()
    if not path.exists() and not path.is_symlink():
        raise RtsegError(f"{what} not found: {path} (check the path; {hint})")
    if path.is_dir():
        raise RtsegError(f"{what} expected, got a directory: {path} ({hint})")
    with os.fdopen(open_regular(path, what), "rb") as fh:
        head = fh.read(len(_LEGACY_MAGIC))
    if not head.startswith(_ZIP_MAGIC) and head != _LEGACY_MAGIC:
        # not even handed to the unpickler: random bytes, a text file or a plain pickle would
        # otherwise be reported as whatever its first bytes happen to mean to pickle
        kind = "an empty file" if not head else "not written by torch.save"
        raise RtsegError(f"{path} is not a PyTorch {what} ({kind}); {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # the weights_only unpickler names the class it refused as a GLOBAL; its other refusals
        # (an unknown opcode...) are damaged bytes, not objects
        if "global" in str(exc).lower():
            raise RtsegError(f"{path} holds Python objects beyond tensors and plain data; rtseg only loads files with weights_only=True ({hint})") from None
        raise RtsegError(f"{path} is not a readable {what} (corrupt or truncated: {_first_line(exc)}); {hint}") from None
    except Exception as exc:  # zipfile, EOF, KeyError on a damaged record...: whatever a broken file raises
        raise RtsegError(f"{path} is not a readable {what} (corrupt, truncated or not written by torch.save: {_first_line(exc)}); {hint}") from None


def load_state(path: str | Path, fmt: str, what: str, hint: str, schema_version: int | None = None) -> dict[str, Any]:
    """A resumable state file (``torch.save`` of a dict whose ``format`` is ``fmt``) read safely with
    :func:`read_torch_file`; a file of another format (a training checkpoint given as a search
    state), a foreign dict or another schema version is one :class:`RtsegError` as well."""
    obj = read_torch_file(path, what, hint)
    found = obj.get("format") if isinstance(obj, dict) else None
    if found != fmt:
        other = f"an {found} file" if isinstance(found, str) and found.startswith("rtseg") else "not a file rtseg wrote as one"
        raise RtsegError(f"{path} is not a {what} ({other}); {hint}")
    if schema_version is not None and obj.get("schema_version") != schema_version:
        raise RtsegError(f"{path} has {what} schema_version {obj.get('schema_version')!r}; this rtseg reads {schema_version} ({hint})")
    return obj


def _first_line(exc: BaseException) -> str:
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not any(b in ln for b in boilerplate)]
    return (lines[0] if lines else type(exc).__name__)[:120]


def _arch_key(d: Mapping[str, Any]) -> tuple:
    return (d.get("space"), d.get("head"), repr(d.get("genotype")))


def load_checkpoint(
    path: str | Path,
    expected_arch: Arch | str | Mapping[str, Any] | None = None,
    num_classes: int | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read and validate a checkpoint; returns ``(state_dict, meta)`` where meta is everything else.

    Refuses (with a one-line :class:`RtsegError`) files that are not rtseg checkpoints, other schema
    versions, a checkpoint of a different arch than ``expected_arch`` (space, head and genotype are
    compared; names are not) and one trained for a class count other than ``num_classes``.
    """
    path = Path(path).expanduser()
    ckpt = read_torch_file(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        hint = " (it looks like a bare state dict)" if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()) else ""
        raise RtsegError(f"{path} is not an rtseg checkpoint{hint}; use a file written by rtseg train")
    ver = ckpt.get("schema_version")
    if ver != CHECKPOINT_SCHEMA_VERSION:
        raise RtsegError(f"{path} has checkpoint schema_version {ver!r}; this rtseg reads version {CHECKPOINT_SCHEMA_VERSION}")
    for key in ("model", "arch", "data"):
        if key not in ckpt:
            raise RtsegError(f"{path} lacks the {key!r} entry; the checkpoint is incomplete")
    arch = Arch.from_dict(ckpt["arch"], source=f"{path} arch", check=validate_arch)
    info = DatasetInfo.from_dict(ckpt["data"])
    if num_classes is not None and int(num_classes) != arch.num_classes:
        raise RtsegError(
            f"{path} was trained for {arch.num_classes} classes ({info.name}) but {num_classes} are expected; "
            f"evaluate it on data with the same classes or train a new one"
        )
    if expected_arch is not None:
        exp = load_arch(expected_arch)
        if _arch_key(exp.to_dict()) != _arch_key(arch.to_dict()):
            raise RtsegError(
                f"{path} holds a different network ({arch.name or 'unnamed'} {arch.space}/{arch.head}) "
                f"than the expected arch {exp.name or 'unnamed'}; pass the checkpoint of that arch"
            )
        if num_classes is None and exp.num_classes != arch.num_classes:
            raise RtsegError(f"{path} was trained for {arch.num_classes} classes but the expected arch has {exp.num_classes}")
    state = ckpt.pop("model")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RtsegError(f"{path}: the model entry is not a state dict of tensors")
    ckpt["arch_obj"] = arch
    ckpt["info"] = info
    return state, ckpt


def load_model(
    path: str | Path,
    device: str | torch.device = "cpu",
    expected_arch: Arch | str | Mapping[str, Any] | None = None,
    num_classes: int | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build the checkpoint's network, load its weights and return ``(model in eval mode, meta)``.

    ``meta["arch_obj"]`` is the :class:`Arch`, ``meta["info"]`` the :class:`DatasetInfo`,
    ``meta["input_hw"]`` the training input size and ``meta["preprocess"]`` the normalisation."""
    state, meta = load_checkpoint(path, expected_arch=expected_arch, num_classes=num_classes)
    model = build_model(meta["arch_obj"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0][:160]
        raise RtsegError(f"{path}: weights do not fit the network its arch describes ({first})") from None
    return model.to(device).eval(), meta

"""The architecture record: a versioned JSON document that names a discrete network.

An :class:`Arch` names its search space, the number of classes, the head and a space-specific
``genotype``. This module is the record alone and imports neither torch nor the spaces, so a
deploy install reads the arch recorded beside an exported file: :meth:`Arch.from_dict` checks the
document's structure (format, version, required fields), and a ``check`` it is given checks the
genotype. The space registry gives that check: ``rtseg.spaces.load_arch`` reads an arch through
:func:`read_arch` with each space's own validation, and ``rtseg.spaces.build_model`` (also
``rtseg.build_model``) turns it into an ``nn.Module`` through the space's builder, with no supernet
code involved. Built-in named archs (``baseline1``...) are JSON files shipped as package data.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

from rtseg.backends.device import device_kind
from rtseg.errors import RtsegError
from rtseg.io import atomic_write_json, read_json

ARCH_FORMAT = "rtseg.arch"
ARCH_SCHEMA_VERSION = 1

#: A genotype check: raises :class:`RtsegError` naming ``source`` and the offending field.
ArchCheck = Callable[["Arch", str], None]


@dataclass
class Arch:
    space: str
    num_classes: int
    genotype: dict[str, Any]
    head: str = "classifier"
    name: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": ARCH_FORMAT,
            "schema_version": ARCH_SCHEMA_VERSION,
            "space": self.space,
            "num_classes": self.num_classes,
            "head": self.head,
            "genotype": copy.deepcopy(self.genotype),
        }
        if self.name:
            d["name"] = self.name
        if self.meta:
            d["meta"] = copy.deepcopy(self.meta)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @staticmethod
    def from_dict(d: Any, source: str = "arch", check: ArchCheck | None = None) -> "Arch":
        """Parse an arch document, checking its structure; errors name the offending field.

        ``check`` (``rtseg.spaces.validate_arch``: the arch's space validates its genotype) runs on
        the parsed record. Without it the structure alone is checked: for an arch recorded beside an
        exported ONNX file or engine, where the file is the network and the space (which needs
        torch) is not imported on a deploy machine, and for records rtseg wrote itself.
        """
        if not isinstance(d, Mapping):
            raise RtsegError(f"{source}: an arch must be a JSON object, got {type(d).__name__}")
        fmt = d.get("format", ARCH_FORMAT)
        if fmt != ARCH_FORMAT:
            raise RtsegError(f"{source}: not an rtseg arch (format is {fmt!r}, expected {ARCH_FORMAT!r})")
        ver = d.get("schema_version")
        if ver != ARCH_SCHEMA_VERSION:
            raise RtsegError(
                f"{source}: arch schema_version {ver!r} is not supported by this rtseg (expects {ARCH_SCHEMA_VERSION})"
            )
        for key in ("space", "num_classes", "genotype"):
            if key not in d:
                raise RtsegError(f"{source}: arch lacks the required field {key!r}")
        nc = d["num_classes"]
        if not isinstance(nc, int) or isinstance(nc, bool) or nc < 1:
            raise RtsegError(f"{source}: num_classes must be a positive integer, got {nc!r}")
        if not isinstance(d["genotype"], Mapping):
            raise RtsegError(f"{source}: genotype must be a JSON object")
        arch = Arch(
            space=str(d["space"]),
            num_classes=nc,
            genotype=copy.deepcopy(dict(d["genotype"])),
            head=str(d.get("head", "classifier")),
            name=d.get("name"),
            meta=copy.deepcopy(dict(d.get("meta", {}))),
        )
        if check is not None:
            check(arch, source)
        return arch

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    def with_(self, **changes: Any) -> "Arch":
        """A copy with some fields changed (``num_classes``, ``name``...), its structure checked."""
        d = self.to_dict()
        d.update(changes)
        return Arch.from_dict(d)


def deploy_note(arch: Arch | None, backend: str, device: str = "cpu") -> str | None:
    """One line for a searched net run on another runtime than the one its latency budget was
    measured on (None when it runs on that runtime, or was not searched): the search's latency
    promise holds only on the LUT's backend and device kind."""
    lut = ((arch.meta or {}).get("searched_with") or {}) if arch is not None else {}
    lut_backend, lut_device = lut.get("lut_backend"), lut.get("lut_device_kind")
    if not lut_backend:
        return None
    kind = device_kind(device)
    if lut_backend == backend and (lut_device or kind) == kind:
        return None
    return (f"this net was searched for {lut.get('latency_ms', 0):g} ms measured on {lut_backend} {lut.get('lut_precision', '')} "
            f"on {lut.get('lut_device_name') or lut_device}; it now runs on {backend} ({kind}), where that budget was never measured")


def builtin_arch_names() -> list[str]:
    folder = resources.files("rtseg") / "archs"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def read_arch(path_or_name: str | Path | Mapping[str, Any] | Arch, check: ArchCheck | None = None) -> Arch:
    """Read an arch from a JSON path, a built-in name (``baseline1``...), a dict, or return an Arch as
    is; ``check`` validates a read genotype (see :meth:`Arch.from_dict`)."""
    if isinstance(path_or_name, Arch):
        return path_or_name
    if isinstance(path_or_name, Mapping):
        return Arch.from_dict(path_or_name, check=check)
    text = str(path_or_name)
    p = Path(text)
    if p.suffix.lower() == ".json" or p.exists() or "/" in text:
        return Arch.from_dict(read_json(p, "arch file"), source=str(p), check=check)
    names = builtin_arch_names()
    if text in names:
        res = resources.files("rtseg") / "archs" / f"{text}.json"
        return Arch.from_dict(json.loads(res.read_text(encoding="utf-8")), source=f"built-in arch {text}", check=check)
    raise RtsegError(f"no arch file or built-in arch named {text!r}; built-in archs: {', '.join(names)}")

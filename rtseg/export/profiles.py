"""Export profiles: named sets of export settings (precision, input, batch, dynamic range, workspace,
opset, which files to write), kept as JSON files so a team can agree on them and
``rtseg export MODEL --profile NAME`` reproduces an export. Command-line options override the profile.

The shipped profiles live inside the package (``rtseg/export_profiles/*.json``), so an installed wheel has
them; an ``export/`` folder in the current directory holds the user's own profiles and overrides (the
repository's top-level ``export/`` documents them). ``default`` is what an export does with no options; its
one definition is :class:`ExportOptions`'s field defaults, which ``default.json`` states for the reader and a
test holds equal.

Lookup of ``--profile X``: a path to a JSON file; else ``./export/X.json``; else the shipped ``X.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rtseg.errors import RtsegError
from rtseg.export.int8 import Int8Options
from rtseg.io import parse_hw, read_json

PROFILE_FORMAT = "rtseg.export-profile"
PROFILE_SCHEMA_VERSION = 1
OUTPUTS = ("onnx", "onnx_fp16", "onnx_int8", "engine")


@dataclass
class ExportOptions:
    """Everything an export does; defaults are the ``default`` profile."""

    input_hw: tuple[int, int] | None = None  # None: the checkpoint's training size, else 512x1024
    batch: int = 1
    fp16: bool = True
    int8: bool = False  # the calibrated INT8 QDQ ONNX (and with trt, an INT8 engine built from it)
    int8_options: Int8Options = field(default_factory=Int8Options)
    trt: bool = False
    dynamic: bool = False
    dynamic_min_hw: tuple[int, int] | None = None  # None: half the input size
    dynamic_max_hw: tuple[int, int] | None = None  # None: twice the input size
    opset: int = 17
    workspace_gb: float = 4.0
    exporter: str = "torchscript"
    simplify: bool = True
    check: bool = True
    out_dir: Path | None = None
    overwrite: bool = False  # write over files in out_dir that no rtseg export wrote
    device: str = "cuda"  # the GPU TensorRT builds for
    profile: str = "default"

    def with_(self, **changes: Any) -> "ExportOptions":
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_KEYS = {"format", "schema_version", "description", "precision", "input", "batch", "dynamic", "dynamic_min",
         "dynamic_max", "workspace_gb", "opset", "exporter", "simplify", "outputs", "calib", "calib_images",
         "calib_method", "per_channel", "int8_max_drop"}


#: The profiles shipped with rtseg (package data, present in an installed wheel).
SHIPPED_PROFILES = Path(__file__).resolve().parents[1] / "export_profiles"


def profile_dirs() -> list[Path]:
    """Where ``--profile NAME`` is looked up, first match wins: the user's ``./export/``, then the shipped ones."""
    return [d for d in (Path.cwd() / "export", SHIPPED_PROFILES) if d.is_dir()]


def profile_names() -> list[str]:
    names: set[str] = set()
    for d in profile_dirs():
        names.update(p.stem for p in d.glob("*.json"))
    return sorted(names)


def find_profile(name: str) -> Path:
    p = Path(name)
    if p.suffix.lower() == ".json" or p.exists():
        if not p.exists():
            raise RtsegError(f"export profile file not found: {p}")
        return p
    for d in profile_dirs():
        cand = d / f"{name}.json"
        if cand.exists():
            return cand
    raise RtsegError(f"unknown export profile {name!r}; available: {', '.join(profile_names())} (or give a path to a profile JSON)")


def options_from_profile(doc: dict[str, Any], source: str, name: str) -> ExportOptions:
    """Validate a profile document and turn it into :class:`ExportOptions`."""
    if not isinstance(doc, dict):
        raise RtsegError(f"{source}: an export profile must be a JSON object")
    if doc.get("format", PROFILE_FORMAT) != PROFILE_FORMAT:
        raise RtsegError(f"{source}: not an rtseg export profile (format {doc.get('format')!r})")
    if doc.get("schema_version", PROFILE_SCHEMA_VERSION) != PROFILE_SCHEMA_VERSION:
        raise RtsegError(f"{source}: profile schema_version {doc.get('schema_version')!r} is not supported (expects {PROFILE_SCHEMA_VERSION})")
    unknown = set(doc) - _KEYS
    if unknown:
        raise RtsegError(f"{source}: unknown profile fields {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_KEYS - {'format', 'schema_version'}))}")
    o = ExportOptions(profile=name)  # a field the document leaves out keeps this default
    prec = doc.get("precision", "fp16" if o.fp16 else "fp32")
    if prec not in ("fp16", "fp32", "int8"):
        raise RtsegError(f"{source}: precision must be fp16, fp32 or int8, got {prec!r}")
    outputs = doc.get("outputs", {"fp16": ["onnx", "onnx_fp16"], "int8": ["onnx", "onnx_int8"]}.get(prec, ["onnx"]))
    if not isinstance(outputs, list) or any(x not in OUTPUTS for x in outputs):
        raise RtsegError(f"{source}: outputs must be a list drawn from {', '.join(OUTPUTS)}")
    try:
        o.fp16 = prec == "fp16"
        o.int8 = "onnx_int8" in outputs
        o.trt = "engine" in outputs
        i8 = o.int8_options
        o.int8_options = Int8Options(
            calib=doc.get("calib", i8.calib), calib_images=int(doc.get("calib_images", i8.calib_images)),
            method=str(doc.get("calib_method", i8.method)), per_channel=bool(doc.get("per_channel", i8.per_channel)),
            max_drop=float(doc.get("int8_max_drop", i8.max_drop)))
        o.int8_options.check()
        if "input" in doc:
            o.input_hw = parse_hw(doc["input"])
        o.batch = int(doc.get("batch", o.batch))
        o.dynamic = bool(doc.get("dynamic", o.dynamic))
        o.dynamic_min_hw = parse_hw(doc["dynamic_min"]) if doc.get("dynamic_min") else None
        o.dynamic_max_hw = parse_hw(doc["dynamic_max"]) if doc.get("dynamic_max") else None
        o.workspace_gb = float(doc.get("workspace_gb", o.workspace_gb))
        o.opset = int(doc.get("opset", o.opset))
        o.exporter = str(doc.get("exporter", o.exporter))
        o.simplify = bool(doc.get("simplify", o.simplify))
    except (TypeError, ValueError) as exc:
        raise RtsegError(f"{source}: bad profile value ({exc})") from None
    if o.batch < 1 or o.workspace_gb <= 0:
        raise RtsegError(f"{source}: batch and workspace_gb must be positive")
    return o


def load_profile(name: str = "default") -> ExportOptions:
    """The options a named profile (or a profile JSON path) stands for."""
    path = find_profile(name)
    return options_from_profile(read_json(path, "export profile"), str(path), Path(name).stem)

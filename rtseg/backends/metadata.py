"""The metadata sidecar: one JSON beside the exported files that makes them self-describing.

``engines/<device>/<model>/model.json`` describes ``model.onnx``, ``model.fp16.onnx``,
``model-int8.onnx`` and ``model.engine`` together: the input tensor (name, shape, layout, dtype, dynamic axes), the exact
preprocessing the model was trained with (``data_info``: mean/std on the 0..1 RGB scale, class names,
palette), the arch, the source's checksum, the exporter and opset, the versions that produced each
file, the parity figures, and for an engine the TensorRT version and GPU it was built on, so a
runner can refuse an engine built elsewhere with a clear message. A deployed demo preprocesses frames
from this file alone. Plain JSON (a sidecar rather than a header inside the engine) so trtexec and
ONNX tools still read the artifacts unchanged.
"""

from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path
from typing import Any

from rtseg.errors import RtsegError
from rtseg.io import atomic_write_json, file_sha256, read_json

METADATA_FORMAT = "rtseg.export"
METADATA_SCHEMA_VERSION = 1
_ARTIFACT_SUFFIXES = (".fp16", ".fp32", "-int8", ".int8", ".onnx", ".engine", ".plan", ".trt")


def sidecar_path(artifact: str | Path) -> Path:
    """``model.fp16.onnx`` / ``model-int8.onnx`` / ``model.engine`` / ``model.onnx`` -> ``model.json`` (same folder)."""
    p = Path(artifact)
    name = p.name
    changed = True
    while changed:
        changed = False
        for s in _ARTIFACT_SUFFIXES:
            if name.lower().endswith(s) and len(name) > len(s):
                name = name[: -len(s)]
                changed = True
    return p.with_name(name + ".json")


def _finite_triple(v: Any) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == 3
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(float(x)) for x in v))


def check_data_info(info: Any, source: str, num_classes: int | None = None) -> None:
    """The preprocessing a sidecar (or a checkpoint) records, as a deployed model will apply it:
    mean and std three finite numbers (std positive), a class count, one RGB colour per class and,
    when given, as many classes as the model outputs. Refused in one line naming ``source``."""
    if not isinstance(info, dict):
        raise RtsegError(f"{source}: 'data_info' must be an object with mean, std, palette and num_classes; re-export the model")
    for key in ("mean", "std"):
        if key in info and not _finite_triple(info[key]):
            raise RtsegError(f"{source}: data_info.{key} must be three finite numbers (R, G, B), got {info[key]!r}; re-export the model")
    if "std" in info and any(float(x) <= 0 for x in info["std"]):
        raise RtsegError(f"{source}: data_info.std {info['std']} has a non-positive entry; re-export the model")
    n = info.get("num_classes")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise RtsegError(f"{source}: data_info.num_classes must be a positive integer, got {n!r}; re-export the model")
    if num_classes is not None and n is not None and n != num_classes:
        raise RtsegError(f"{source} says the model has {n} classes, but it outputs {num_classes}; the sidecar belongs to another "
                         "model: re-export it")
    classes = n if n is not None else num_classes
    pal = info.get("palette")
    if pal is not None:
        if not (isinstance(pal, (list, tuple)) and all(isinstance(c, (list, tuple)) and len(c) == 3 and all(isinstance(x, int) and not isinstance(x, bool)
                                                                                        and 0 <= x <= 255 for x in c) for c in pal)):
            raise RtsegError(f"{source}: data_info.palette must be a list of RGB triples of 0..255; re-export the model")
        if classes is not None and len(pal) < classes:
            raise RtsegError(f"{source}: data_info.palette has {len(pal)} colours for {classes} classes; re-export the model")
    names = info.get("class_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(x, str) for x in names)
                                  and (classes is None or len(names) == classes)):
        raise RtsegError(f"{source}: data_info.class_names must be {classes if classes is not None else 'one'} name(s) per class; "
                         "re-export the model")


def check_metadata(meta: Any, source: str) -> dict[str, Any]:
    """A sidecar's format, schema and the types of every field a runner reads."""
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        raise RtsegError(f"{source} is not an rtseg export sidecar (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("schema_version") != METADATA_SCHEMA_VERSION:
        raise RtsegError(
            f"{source} has sidecar schema_version {meta.get('schema_version')!r}; this rtseg reads "
            f"{METADATA_SCHEMA_VERSION}: re-export the model with this rtseg"
        )
    for key in ("model", "input", "output", "data_info", "artifacts"):
        if key in meta and not isinstance(meta[key], dict):
            raise RtsegError(f"{source}: the sidecar's {key!r} must be an object, got {type(meta[key]).__name__}; re-export the model")
    for key, entry in (meta.get("artifacts") or {}).items():
        if not (isinstance(entry, dict) and isinstance(entry.get("file"), str) and isinstance(entry.get("sha256", ""), str)):
            raise RtsegError(f"{source}: artifact {key!r} must name its file and its sha256; re-export the model")
    shape = (meta.get("output") or {}).get("shape")
    out_classes = shape[1] if isinstance(shape, list) and len(shape) == 4 and isinstance(shape[1], int) else None
    if "data_info" in meta:
        check_data_info(meta["data_info"], source, out_classes)
    return meta


def check_artifact(meta: dict[str, Any], artifact: str | Path, source: str, sha256: str | None = None) -> None:
    """The sidecar must describe ``artifact`` by its checksum: a model replaced after the export (or a
    sidecar copied beside another model) would otherwise be run with another model's preprocessing."""
    path = Path(artifact)
    entries = [e for e in (meta.get("artifacts") or {}).values() if e.get("file") == path.name]
    if not entries:
        raise RtsegError(f"{source} does not describe {path.name} (it lists {', '.join(e.get('file', '?') for e in meta.get('artifacts', {}).values()) or 'no file'}); "
                         "re-export the model, or remove the stale sidecar")
    want = entries[0].get("sha256")
    if want and (sha256 or file_sha256(path)) != want:
        raise RtsegError(f"{path} does not match its sidecar {source} (sha256 differs: the file changed after the export); "
                         "re-export the model, or remove the stale sidecar")


def read_metadata(artifact: str | Path, sha256: str | None = None) -> dict[str, Any] | None:
    """The sidecar of an exported file, checked against it (:func:`check_metadata`,
    :func:`check_artifact`; ``sha256``: the file's, when the caller has it), or None when there is
    none (a foreign ONNX/engine)."""
    side = sidecar_path(artifact)
    if not side.exists():
        return None
    meta = check_metadata(read_json(side, "export sidecar"), str(side))
    check_artifact(meta, artifact, str(side), sha256)
    return meta


def write_metadata(path: str | Path, meta: dict[str, Any]) -> Path:
    meta["updated"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return atomic_write_json(path, meta)


def new_metadata(
    *,
    name: str,
    source_ref: str,
    source_kind: str,
    source_sha256: str | None,
    trained: bool,
    arch: dict[str, Any] | None,
    data_info: dict[str, Any],
    input_shape: list[int | str],
    output_shape: list[int | str],
    dynamic_axes: dict[str, dict[int, str]] | None,
    export: dict[str, Any],
) -> dict[str, Any]:
    from rtseg.version import __version__

    return {
        "format": METADATA_FORMAT,
        "schema_version": METADATA_SCHEMA_VERSION,
        "rtseg_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "name": name,
            "source": source_ref,
            "source_kind": source_kind,
            "source_sha256": source_sha256,
            "trained": trained,
            "weights": "trained checkpoint" if trained else "untrained: seeded random init (for latency work only)",
            "arch": arch,
        },
        "input": {
            "name": "input",
            "shape": input_shape,
            "layout": "NCHW",
            "dtype": "float32",
            "color": "RGB",
            "normalization": "x = (rgb / 255 - mean) / std per channel (rtseg.data.preprocess)",
            "dynamic_axes": {k: {str(a): n for a, n in v.items()} for k, v in (dynamic_axes or {}).items()},
        },
        "output": {"name": "logits", "shape": output_shape, "dtype": "float32", "kind": "class logits (argmax over dim 1)"},
        "data_info": data_info,
        "export": export,
        "artifacts": {},
        "parity": {},
    }

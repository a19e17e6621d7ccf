"""The metadata sidecar: one JSON beside the exported files that makes them self-describing.

``engines/<device>/<model>/model.json`` describes ``model.onnx``, ``model.fp16.onnx`` and
``model.engine`` together: the input tensor (name, shape, layout, dtype, dynamic axes), the exact
preprocessing the model was trained with (``data_info``: mean/std on the 0..1 RGB scale, class names,
palette), the arch, the source's checksum, the exporter and opset, the versions that produced each
file, the parity figures, and for an engine the TensorRT version and GPU it was built on, so a
runner can refuse an engine built elsewhere with a clear message. A deployed demo preprocesses frames
from this file alone. Plain JSON (a sidecar rather than a header inside the engine) so trtexec and
ONNX tools still read the artifacts unchanged.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

from rtseg.errors import RtsegError
from rtseg.io import atomic_write_json, read_json

METADATA_FORMAT = "rtseg.export"
METADATA_SCHEMA_VERSION = 1
_ARTIFACT_SUFFIXES = (".fp16", ".fp32", ".onnx", ".engine", ".plan", ".trt")


def sidecar_path(artifact: str | Path) -> Path:
    """``model.fp16.onnx`` / ``model.engine`` / ``model.onnx`` -> ``model.json`` (same folder)."""
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


def check_metadata(meta: Any, source: str) -> dict[str, Any]:
    if not isinstance(meta, dict) or meta.get("format") != METADATA_FORMAT:
        raise RtsegError(f"{source} is not an rtseg export sidecar (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("schema_version") != METADATA_SCHEMA_VERSION:
        raise RtsegError(
            f"{source} has sidecar schema_version {meta.get('schema_version')!r}; this rtseg reads "
            f"{METADATA_SCHEMA_VERSION}: re-export the model with this rtseg"
        )
    return meta


def read_metadata(artifact: str | Path) -> dict[str, Any] | None:
    """The sidecar of an exported file, or None when there is none (a foreign ONNX/engine)."""
    side = sidecar_path(artifact)
    if not side.exists():
        return None
    return check_metadata(read_json(side, "export sidecar"), str(side))


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
    from rtseg import __version__

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

"""What the demo needs to know about a model besides running it: normalization, palette, input size.

All of it comes from the model itself, never from constants in the demo: a runner loaded by
:func:`rtseg.runtime.load_runner` carries the dataset description it was trained (or exported) with
in ``RunnerInfo.extra`` (from the checkpoint, or from the metadata sidecar JSON beside an ONNX file
or engine). :func:`model_meta` reads it and refuses, with a clear message, a model that has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from rtseg.version import __version__
from rtseg.backends.metadata import check_data_info
from rtseg.errors import RtsegError
from rtseg.backends.runner import Runner

#: Where in ``RunnerInfo.extra`` a DatasetInfo-shaped dict may sit (checkpoints and sidecars both
#: store it whole; a flat layout with mean/std/palette at the top level is accepted too).
_INFO_KEYS = ("data_info", "dataset_info", "dataset", "preprocess", "metadata")


@dataclass
class ModelMeta:
    mean: tuple[float, float, float]  # RGB, 0..1 scale (rtseg.data.preprocess convention)
    std: tuple[float, float, float]
    palette: list[list[int]]  # RGB triple per class
    class_names: list[str] = field(default_factory=list)
    input_hw: tuple[int, int] = (0, 0)


def _find_info(extra: Mapping[str, Any]) -> Mapping[str, Any] | None:
    candidates = [extra.get(k) for k in _INFO_KEYS] + [extra]
    for c in candidates:
        if isinstance(c, Mapping):
            if "mean" in c and "std" in c:
                return c
            for k in _INFO_KEYS:  # one more level: {"metadata": {"data_info": {...}}}
                inner = c.get(k)
                if isinstance(inner, Mapping) and "mean" in inner and "std" in inner:
                    return inner
    return None


def _triple(v: Any, what: str, where: str) -> tuple[float, float, float]:
    try:
        t = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        t = ()
    if len(t) != 3:
        raise RtsegError(f"the {what} recorded with {where} must be 3 numbers (R, G, B), got {v!r}; re-export the model")
    return t  # type: ignore[return-value]


def model_meta(runner: Runner, name: str = "the model") -> ModelMeta:
    """Read normalization, palette, class names and input size from a runner's metadata."""
    info = runner.info
    d = _find_info(info.extra or {})
    if d is None:
        raise RtsegError(
            f"{name} carries no preprocessing metadata (mean/std/palette); export it with `rtseg export` so its "
            "sidecar JSON sits beside it, or pass a checkpoint written by `rtseg train`"
        )
    check_data_info({k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}, name, info.num_classes or None)
    mean = _triple(d["mean"], "mean", name)
    std = _triple(d["std"], "std", name)
    if any(s <= 0 for s in std):
        raise RtsegError(f"the std recorded with {name} has a non-positive entry {std}; re-export the model")
    pal = d.get("palette")
    if not pal:
        raise RtsegError(f"{name} carries no class palette in its metadata; re-export it with `rtseg export`")
    try:
        palette = [[int(c[0]), int(c[1]), int(c[2])] for c in pal]
    except (TypeError, ValueError, IndexError):
        raise RtsegError(f"the palette recorded with {name} is not a list of RGB triples; re-export the model") from None
    names = [str(n) for n in d.get("class_names", [])]
    return ModelMeta(mean=mean, std=std, palette=palette, class_names=names, input_hw=tuple(info.input_hw))  # type: ignore[arg-type]


def run_header(runner: Runner, meta: "ModelMeta", model_name: str, fmt: str, schema_version: int) -> dict[str, Any]:
    """The part every run record (demo, predict) opens with: what ran, where and when, the load on the
    machine and the runner's thread settings, so records from different commands compare field by field."""
    import os
    from datetime import datetime, timezone


    info = runner.info
    try:
        load: list[float] | None = [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Windows
        load = None
    return {
        "format": fmt,
        "schema_version": schema_version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "rtseg_version": __version__,
        "model": model_name,
        "backend": info.backend,
        "backend_version": info.backend_version,
        "device": info.device,
        "precision": info.precision,
        "input_hw": list(meta.input_hw),
        "num_classes": info.num_classes,
        "load_avg_1_5_15": load,
        "threads": {k: v for k, v in (info.extra or {}).items() if "thread" in str(k).lower() and isinstance(v, (int, float, str))},
    }

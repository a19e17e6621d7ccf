"""What a MODEL argument names, resolved once for export, bench, the runners and the demo.

A model is given as a trained checkpoint (``.pt``), an arch JSON, a built-in arch name
(``baseline1``, ``erfnet``), an exported ONNX file or a TensorRT engine (``.engine``/``.plan``).
:func:`resolve_model` turns any of them into a :class:`ModelSource`: what kind it is, its name, the
arch and weights (checkpoint), the preprocessing it expects (``data_info``, a DatasetInfo dict), the
input size it was trained or exported at, a checksum of the source file, and for exported files the
metadata sidecar. An untrained arch gets seeded random weights (for latency work before training)
and the DatasetInfo of the dataset its class count matches (synthetic 10, Cityscapes 19, CamVid 11).
"""

from __future__ import annotations

import colorsys
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtseg.arch import Arch, builtin_arch_names
from rtseg.backends import TABLE
from rtseg.backends.metadata import read_metadata
from rtseg.errors import RtsegError
from rtseg.io import file_sha256

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
ENGINE_SUFFIXES = TABLE["tensorrt"].suffixes
ONNX_SUFFIXES = TABLE["onnxruntime"].suffixes
#: Seed of the random weights of an untrained arch, so its exports and latencies are reproducible.
UNTRAINED_SEED = 0


@dataclass
class ModelSource:
    kind: str  # "checkpoint" | "arch" | "builtin" | "onnx" | "engine"
    ref: str  # what the user passed
    name: str
    path: Path | None = None
    arch: Arch | None = None
    state_dict: dict[str, Any] | None = field(default=None, repr=False)
    data_info: dict[str, Any] = field(default_factory=dict)
    input_hw: tuple[int, int] | None = None
    sha256: str | None = None
    metadata: dict[str, Any] | None = None
    #: The ``--data`` spec and synthetic world a checkpoint was trained on (None: not recorded, or not a checkpoint).
    data_spec: str | None = None
    data_seed: int = 0

    @property
    def trained(self) -> bool:
        return self.kind == "checkpoint" or bool(self.metadata and self.metadata.get("model", {}).get("trained"))

    @property
    def num_classes(self) -> int:
        if self.arch is not None:
            return self.arch.num_classes
        return int(self.data_info.get("num_classes", 0))


def model_kind(model: str | Path) -> str:
    """Classify a MODEL argument by its suffix (or as a built-in arch name)."""
    text = str(model)
    suffix = Path(text).suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    if suffix in ONNX_SUFFIXES:
        return "onnx"
    if suffix in ENGINE_SUFFIXES:
        return "engine"
    if suffix == ".json":
        return "arch"
    if Path(text).exists() and Path(text).is_file():
        raise RtsegError(
            f"cannot tell what {text} is from its name; use .pt (checkpoint), .json (arch), .onnx or .engine/.plan"
        )
    if text in builtin_arch_names():
        return "builtin"
    raise RtsegError(
        f"{text!r} is neither a model file (.pt checkpoint, .json arch, .onnx, .engine/.plan) nor a built-in arch "
        f"({', '.join(builtin_arch_names())})"
    )


def _generic_palette(n: int) -> list[list[int]]:
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95)
        out.append([int(r * 255), int(g * 255), int(b * 255)])
    return out


def default_data_info(num_classes: int) -> dict[str, Any]:
    """The DatasetInfo an untrained arch is exported with: the built-in dataset with that class count
    (synthetic 10, Cityscapes 19, CamVid 11), else generic names and colours with ImageNet mean/std."""
    from rtseg.data.base import DatasetInfo

    candidates = []
    try:
        from rtseg.data.synthetic import synthetic_info

        candidates.append(synthetic_info)
    except ImportError:  # pragma: no cover - partial installs
        pass
    for mod, fn in (("rtseg.data.cityscapes", "cityscapes_info"), ("rtseg.data.camvid", "camvid_info")):
        try:
            candidates.append(getattr(__import__(mod, fromlist=[fn]), fn))
        except (ImportError, AttributeError):  # pragma: no cover
            pass
    for make in candidates:
        info = make()
        if info.num_classes == num_classes:
            return info.to_dict()
    return DatasetInfo(
        name="generic",
        num_classes=num_classes,
        class_names=[f"class{i}" for i in range(num_classes)],
        palette=_generic_palette(num_classes),
    ).to_dict()


def _load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        from rtseg.checkpoint import load_checkpoint
    except ImportError:  # pragma: no cover - the training module is part of rtseg
        raise RtsegError("this rtseg has no checkpoint support (rtseg.checkpoint is missing)") from None
    return load_checkpoint(path)


def _load_arch(arch: Any) -> Arch:
    """An arch validated by its space (the registry imports torch: a model PyTorch builds needs it anyway)."""
    from rtseg.spaces import load_arch

    return load_arch(arch)


def resolve_model(model: str | Path) -> ModelSource:
    """Resolve a MODEL argument (see the module docstring); bad paths and names raise RtsegError."""
    kind = model_kind(model)
    text = str(model)
    if kind == "builtin":
        arch = _load_arch(text)
        return ModelSource(kind, text, arch.name or text, arch=arch, data_info=default_data_info(arch.num_classes),
                           sha256=hashlib.sha256(json.dumps(arch.to_dict(), sort_keys=True).encode()).hexdigest())
    path = Path(text)
    if not path.exists():
        raise RtsegError(f"model file not found: {path} (check the path)")
    if path.is_dir():
        raise RtsegError(f"expected a model file, got a directory: {path}")
    if kind == "arch":
        arch = _load_arch(path)
        return ModelSource(kind, text, arch.name or path.stem, path=path, arch=arch,
                           data_info=default_data_info(arch.num_classes), sha256=file_sha256(path))
    if kind == "checkpoint":
        state, meta = _load_checkpoint(path)
        arch = meta["arch_obj"] if isinstance(meta.get("arch_obj"), Arch) else _load_arch(meta["arch"])
        info_obj = meta.get("info")
        # the exact preprocessing the network was trained with (rtseg.checkpoint stores it as "data")
        info = info_obj.to_dict() if hasattr(info_obj, "to_dict") else (meta.get("data") or default_data_info(arch.num_classes))
        hw = meta.get("input_hw")
        name = arch.name or path.stem
        if path.stem not in ("last", "best", "model", "checkpoint"):
            name = path.stem
        train_cfg = meta.get("train_config") if isinstance(meta.get("train_config"), dict) else {}
        return ModelSource(kind, text, name, path=path, arch=arch, state_dict=state, data_info=dict(info),
                           input_hw=tuple(hw) if hw else None, sha256=file_sha256(path),  # type: ignore[arg-type]
                           data_spec=meta.get("data_spec") if isinstance(meta.get("data_spec"), str) else None,
                           data_seed=int(train_cfg.get("data_seed", 0) or 0))
    # exported artifacts: the sidecar (if any) tells the arch, preprocessing and input size
    sha = file_sha256(path)
    meta = read_metadata(path, sha)
    src = ModelSource(kind, text, path.stem.split(".")[0], path=path, sha256=sha, metadata=meta)
    if meta:
        src.name = meta.get("model", {}).get("name") or src.name
        src.data_info = dict(meta.get("data_info") or {})
        if meta.get("model", {}).get("arch"):
            # a record of what was exported: the file is the network, so no space (torch) is needed
            src.arch = Arch.from_dict(meta["model"]["arch"], source=f"the arch in {path}'s sidecar")
        shape = meta.get("input", {}).get("shape")
        if shape and all(isinstance(v, int) for v in shape[2:]):
            src.input_hw = (int(shape[2]), int(shape[3]))
    return src


def build_module(src: ModelSource):
    """The eval-mode PyTorch module of a checkpoint or arch source (seeded init when untrained)."""
    import torch

    from rtseg.spaces import build_model

    if src.arch is None or src.kind in ("onnx", "engine"):
        raise RtsegError(f"{src.ref} is an exported {src.kind} file; PyTorch needs a checkpoint, an arch JSON or a built-in arch name")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        module = build_model(src.arch)
    if src.state_dict is not None:
        try:
            module.load_state_dict(src.state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise RtsegError(f"checkpoint {src.ref} does not match its arch ({first}); was it written by another rtseg?") from None
    return module.eval()


def size_divisor(src: ModelSource) -> int:
    """Input H and W of this model must be multiples of this (its space's divisor)."""
    if src.arch is None:
        return 1
    from rtseg.spaces import get_space

    return get_space(src.arch.space).size_divisor

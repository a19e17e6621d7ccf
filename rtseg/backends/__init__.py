"""Backends: where a network runs (PyTorch, ONNX Runtime, TensorRT), each one declared once in :data:`TABLE`.

A backend is one row of data, the way Ultralytics' exporter keeps one table of formats: its name and
aliases, the model files it runs as they are, the model kinds it can run at all, its precisions and
devices, the packages it needs and the line that installs them, the converter that writes its file
from a PyTorch model, its runner (:mod:`rtseg.backends.runner`) and its latency timer
(:mod:`rtseg.backends.timers`, a thin adapter that times what the runner runs). Code refers to the
runner, converter and timer by ``"module:attribute"``, so reading the table imports nothing heavy
(an ONNX-only deploy install has no PyTorch) and a backend's code is imported only when it is used.

Everything that picks a backend goes through the table: :func:`rtseg.runtime.load_runner`,
:func:`rtseg.backends.timers.make_timer` (``profile-ops``, ``lut validate``),
:func:`rtseg.export.export_model` and ``rtseg bench``. :meth:`Backend.check` refuses an unknown
backend, a missing package, a device or a precision the backend does not run, before any work starts.

Adding a backend: write its runner (a :class:`~rtseg.backends.runner.Runner` with an ``open``
classmethod), its timer (an :class:`~rtseg.backends.timers.OpTimer`) and, if it runs a file of its
own, its converter, in this package; then add its row here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from rtseg.backends.device import device_kind
from rtseg.errors import MissingDependencyError, RtsegError

#: Every precision rtseg deploys in; a backend's row names those it runs. INT8 models are files
#: (the calibrated QDQ ONNX ``rtseg export --int8`` writes, or an engine built from it): PyTorch does not run them.
PRECISIONS = ("fp32", "fp16", "int8")
FLOAT_PRECISIONS = ("fp32", "fp16")


@dataclass(frozen=True)
class Backend:
    """One backend, as data (see the module docstring)."""

    name: str
    aliases: tuple[str, ...]
    #: What the runner is handed: ``module`` (a PyTorch network), ``onnx`` (a file or bytes) or ``engine`` (a file).
    takes: str
    #: Model files it runs as they are; ``rtseg bench``/``demo`` default to it for these.
    suffixes: tuple[str, ...]
    #: Model kinds (:func:`rtseg.runtime.source.model_kind`) it can run, converting where needed.
    runs: tuple[str, ...]
    precisions: tuple[str, ...]
    devices: tuple[str, ...]  # device kinds: "cpu", "cuda"
    fp16_devices: tuple[str, ...]  # where fp16 is a deployment target of this backend
    #: Importable packages it needs, with the name a person knows them by.
    requires: tuple[tuple[str, str], ...]
    install: str
    runner: str  # "module:Class" of its Runner
    timer: str  # "module:Class" of its OpTimer
    converter: str | None = None  # "module:function" writing its file (None: runs the PyTorch module itself)
    artifact: str | None = None  # the file rtseg export writes for it

    def load(self, what: str) -> Any:
        """The runner, timer or converter named in this row, imported now."""
        ref = getattr(self, what)
        if ref is None:
            raise RtsegError(f"the {self.name} backend has no {what}")
        module, attr = ref.split(":")
        return getattr(importlib.import_module(module), attr)

    def require(self) -> Any:
        """Import what this backend needs and return the first package, or raise
        :class:`MissingDependencyError` with the install line (never fall back to another backend)."""
        first = None
        for module, label in self.requires:
            try:
                mod = importlib.import_module(module)
            except Exception:  # ImportError, or a broken install raising OSError on its shared libraries
                raise MissingDependencyError(f"the {self.name} backend needs {label}, which is not installed here: {self.install}") from None
            first = mod if first is None else first
        return first

    def check(self, device: str | None = None, precision: str | None = None, kind: str | None = None) -> None:
        """Refuse flags this backend cannot honour, before any work: a missing package first, then
        the precision, the device kind and the model kind."""
        self.require()
        if precision is not None:
            if precision not in PRECISIONS:
                raise RtsegError(f"unknown precision {precision!r}; choose {' or '.join(self.precisions)}")
            if precision not in self.precisions:
                raise RtsegError(f"the {self.name} backend runs {' or '.join(self.precisions)}, not {precision}; "
                                 f"run an {precision} model on {' or '.join(b.name for b in TABLE.values() if precision in b.precisions)}")
        if device is not None:
            dev = device_kind(device)
            if dev not in self.devices:
                raise RtsegError(f"the {self.name} backend runs on {' or '.join(self.devices)}, not {device!r}; "
                                 f"use --device {self.devices[0]} or another --backend")
            if precision == "fp16" and dev not in self.fp16_devices:
                raise RtsegError(f"fp16 on the CPU is not a deployment target of the {self.name} backend; use --precision fp32 or --device cuda")
        if kind is not None and kind not in self.runs:
            raise RtsegError(f"the {self.name} backend cannot run this {kind} model; use one of {', '.join(b.name for b in TABLE.values() if kind in b.runs)}")


_TRT_INSTALL = "pip install 'rtseg[trt]' on the GPU machine"

TABLE: dict[str, Backend] = {
    "torch": Backend(
        name="torch", aliases=("pytorch",), takes="module", suffixes=(".pt", ".pth", ".ckpt", ".json"),
        runs=("checkpoint", "arch", "builtin"), precisions=FLOAT_PRECISIONS, devices=("cpu", "cuda"), fp16_devices=("cuda",),
        requires=(("torch", "PyTorch"),), install="pip install 'rtseg[torch]'",
        runner="rtseg.backends.pytorch:TorchRunner", timer="rtseg.backends.timers:TorchTimer"),
    "onnxruntime": Backend(
        name="onnxruntime", aliases=("ort", "onnx"), takes="onnx", suffixes=(".onnx",),
        runs=("checkpoint", "arch", "builtin", "onnx"), precisions=PRECISIONS, devices=("cpu", "cuda"), fp16_devices=("cpu", "cuda"),
        requires=(("onnxruntime", "ONNX Runtime"),), install="pip install onnxruntime (onnxruntime-gpu on a GPU machine)",
        runner="rtseg.backends.ort:OrtRunner", timer="rtseg.backends.timers:OnnxRuntimeTimer",
        converter="rtseg.backends.onnx_export:export_onnx", artifact="model.onnx"),
    "tensorrt": Backend(
        name="tensorrt", aliases=("trt",), takes="engine", suffixes=(".engine", ".plan", ".trt"),
        runs=("checkpoint", "arch", "builtin", "onnx", "engine"), precisions=PRECISIONS, devices=("cuda",), fp16_devices=("cuda",),
        requires=(("tensorrt", "TensorRT"),), install=_TRT_INSTALL,
        runner="rtseg.backends.tensorrt:TensorRTRunner", timer="rtseg.backends.timers:TensorRTTimer",
        converter="rtseg.backends.tensorrt_build:build_engine", artifact="model.engine"),
}

#: Backend names, in the table's order.
BACKENDS = tuple(TABLE)
_ALIASES = {a: b.name for b in TABLE.values() for a in (b.name, *b.aliases)}


def get_backend(name: str) -> Backend:
    """The table row of ``name`` (aliases ``ort``, ``onnx``, ``trt``, ``pytorch`` accepted)."""
    key = _ALIASES.get(str(name).strip().lower())
    if key is None:
        raise RtsegError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return TABLE[key]


def normalize_backend(name: str) -> str:
    """The canonical name of a backend or alias (refuses an unknown one)."""
    return get_backend(name).name


def default_backend(kind: str) -> str:
    """The backend that runs a model kind as it is: an ONNX file on ONNX Runtime, an engine on
    TensorRT, anything PyTorch builds on torch."""
    return next((b.name for b in TABLE.values() if b.takes == kind), "torch")


def backends_for(kind: str) -> tuple[str, ...]:
    """Every backend that can run a model kind (converting it where needed)."""
    return tuple(b.name for b in TABLE.values() if kind in b.runs)


__all__ = ["BACKENDS", "Backend", "FLOAT_PRECISIONS", "PRECISIONS", "TABLE", "backends_for", "default_backend", "device_kind", "get_backend",
           "normalize_backend"]

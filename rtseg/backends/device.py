"""Which device a measurement runs on: its name, its folder under ``engines/``, and what decides its speed.

One place names a device. :func:`device_kind` tells a GPU (``cuda``) from the CPU by a device
string, for every decision rtseg makes on it; :func:`device_name` is the human-readable name a
runner, a bench record or a demo shows (``"AMD EPYC (2 cores)"``, ``"NVIDIA H100 80GB HBM3
(sm_90)"``, a GPU written by :func:`gpu_label`);
:func:`device_slug` is the folder of that device under ``engines/`` (``amd-epyc``,
``nvidia-h100-80gb-hbm3``), the same folder for its LUTs and its exported models (a CPU LUT carries
its thread count in its file name, not in the folder).

A LUT is only meaningful on the device it was measured on, with the same thread count on a CPU (a
2-thread and a 16-thread timing of one operator differ several-fold). :func:`detect_device` names
the device the way the user will recognise it (GPU model, or the CPU model from ``/proc/cpuinfo``)
and records what else decides speed: compute capability, driver and CUDA/cuDNN versions on a GPU;
logical cores and the torch thread count on a CPU. :meth:`DeviceInfo.identity` is the part two
runs must share for their timings to be comparable.
"""

from __future__ import annotations

import functools
import os
import re
import platform
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from rtseg.errors import RtsegError
from rtseg.io import slugify


def parse_device(device: str) -> str:
    """Normalize ``cpu`` / ``cuda`` / ``cuda:N`` (``cuda`` becomes ``cuda:0``)."""
    d = str(device).strip().lower()
    if d == "cpu":
        return "cpu"
    if d == "cuda":
        return "cuda:0"
    if d.startswith("cuda:") and d[5:].isdigit():
        return d
    raise RtsegError(f"unknown device {device!r}: use cpu, cuda or cuda:N")


_DEVICE_NAME = re.compile(r"^(cpu|cuda|cuda:\d{1,3})$")


def cuda_device_count() -> int | None:
    """GPUs torch sees here; None when torch is not installed (a deploy install: the runner that
    loads the model checks its own device then)."""
    import importlib.util
    import sys

    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device_name(device: str, name: str = "--device", present: bool = True) -> str:
    """``device`` if it is spelt ``cpu``, ``cuda`` or ``cuda:N`` (exactly: ``CPU``, ``meta``, ``cuda:x``
    are refused) and, with ``present``, a GPU asked for is one this machine has; else one
    :class:`RtsegError` saying which devices there are."""
    text = str(device)
    if not _DEVICE_NAME.match(text):
        hint = f"; did you mean {text.strip().lower()}?" if _DEVICE_NAME.match(text.strip().lower()) else ""
        raise RtsegError(f"{name} {text!r} is not a device rtseg runs on: use cpu, cuda or cuda:N{hint}")
    if present and device_kind(text) == "cuda":
        count = cuda_device_count()
        index = int(text[5:]) if ":" in text else 0
        if count == 0:
            raise RtsegError(f"{name} {text}: there is no CUDA GPU here (or this PyTorch was built without CUDA); use --device cpu")
        if count is not None and index >= count:
            raise RtsegError(f"{name} {text}: only {count} CUDA device(s) here (cuda:0..cuda:{count - 1})")
    return text


def cpu_model() -> str:
    """The CPU model name as the kernel reports it (``/proc/cpuinfo``), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _parse_size(text: str) -> int | None:
    text = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text.rstrip("KMGB")
    return int(digits) * mult if digits.isdigit() else None


def cpu_cache_bytes() -> int | None:
    """Size of the largest CPU cache level (the last-level cache) from sysfs, or None if unknown."""
    best: tuple[int, int] | None = None
    root = "/sys/devices/system/cpu/cpu0/cache"
    try:
        names = os.listdir(root)
    except OSError:
        return None
    for name in names:
        if not name.startswith("index"):
            continue
        try:
            with open(f"{root}/{name}/level", encoding="utf-8") as fh:
                level = int(fh.read().strip())
            with open(f"{root}/{name}/size", encoding="utf-8") as fh:
                size = _parse_size(fh.read())
        except (OSError, ValueError):
            continue
        if size and (best is None or level > best[0]):
            best = (level, size)
    return best[1] if best else None


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (None keeps the current one) and return it."""
    import torch

    if threads is not None:
        if threads < 1:
            raise RtsegError(f"--threads must be a positive integer, got {threads}")
        torch.set_num_threads(int(threads))
    return int(torch.get_num_threads())


def _nvidia_driver(index: int) -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", str(index)],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip()
    return text.splitlines()[0].strip() if out.returncode == 0 and text else None


#: What :func:`nvidia_smi_gpus` asks nvidia-smi for, one key per query field.
_SMI_FIELDS = {"index": "index", "name": "name", "compute_capability": "compute_cap", "memory_mib": "memory.total",
               "driver": "driver_version"}


def nvidia_smi_gpus() -> list[dict[str, Any]] | None:
    """The GPUs the NVIDIA driver sees, from ``nvidia-smi`` (no torch needed): index, name, compute
    capability, memory (MiB) and driver per GPU. None when nvidia-smi is absent or fails (no
    driver); older drivers without the ``compute_cap`` field give None for it."""
    def query(fields: list[str]) -> list[list[str]] | None:
        try:
            out = subprocess.run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=15, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        if out.returncode != 0:
            return None
        return [[c.strip() for c in line.split(",")] for line in out.stdout.strip().splitlines() if line.strip()]

    keys = list(_SMI_FIELDS)
    rows = query([_SMI_FIELDS[k] for k in keys])
    if rows is None:  # a driver too old for compute_cap: ask again without it
        keys.remove("compute_capability")
        rows = query([_SMI_FIELDS[k] for k in keys])
        if rows is None:
            return None
    gpus = []
    for r in rows:
        d: dict[str, Any] = {"compute_capability": None, **dict(zip(keys, r))}
        for k in ("index", "memory_mib"):
            try:
                d[k] = int(float(d[k]))
            except (TypeError, ValueError, KeyError):
                d[k] = None
        gpus.append(d)
    return gpus


@dataclass
class DeviceInfo:
    """A measured device: ``kind`` is ``cpu`` or ``cuda``; ``arg`` the device string it was run with."""

    kind: str
    arg: str
    name: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """Folder name under ``engines/`` (see :func:`device_slug`)."""
        return device_slug(self)

    def identity(self) -> dict[str, Any]:
        """What must match for two timings to be comparable."""
        ident: dict[str, Any] = {"kind": self.kind, "name": self.name}
        if self.kind == "cpu":
            ident["threads"] = self.details.get("threads")
        else:
            ident["compute_capability"] = self.details.get("compute_capability")
        return ident

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "arg": self.arg, "name": self.name, "slug": self.slug, **self.details}

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "DeviceInfo":
        details = {k: v for k, v in d.items() if k not in ("kind", "arg", "name", "slug")}
        return DeviceInfo(kind=str(d.get("kind", "cpu")), arg=str(d.get("arg", "cpu")), name=str(d.get("name", "?")), details=details)


def detect_device(device: str = "cpu", threads: int | None = None) -> DeviceInfo:
    """Describe ``device`` (and set the torch thread count on a CPU); refuses a CUDA device that is not there."""
    import torch

    arg = parse_device(device)
    if device_kind(arg) == "cpu":
        n = set_threads(threads)
        return DeviceInfo(
            "cpu", arg, cpu_model(),
            {"threads": n, "logical_cores": os.cpu_count(), "llc_bytes": cpu_cache_bytes(), "machine": platform.machine(),
             "os": platform.platform()},
        )
    if not torch.cuda.is_available():
        raise RtsegError(f"--device {device} asked for a GPU but torch sees no CUDA device here; use --device cpu or run on the GPU machine")
    index = int(arg.split(":")[1])
    if index >= torch.cuda.device_count():
        raise RtsegError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    set_threads(threads)
    props = torch.cuda.get_device_properties(index)
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return DeviceInfo(
        "cuda", arg, torch.cuda.get_device_name(index),
        {
            "index": index,
            "compute_capability": f"{props.major}.{props.minor}",
            "memory_gb": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "llc_bytes": int(getattr(props, "L2_cache_size", 0)) or None,
            "driver": _nvidia_driver(index),
            "cuda": torch.version.cuda,
            "cudnn": cudnn,
            "host_cpu": cpu_model(),
        },
    )


def device_kind(device: Any) -> str:
    """``cuda`` or ``cpu`` for a device (``cpu``, ``cuda``, ``cuda:N``, a ``torch.device``, or a
    timing clock such as ``thread``): the one place rtseg tells a GPU from the CPU by its name."""
    return "cuda" if str(device).strip().lower().startswith("cuda") else "cpu"


def gpu_model(device: str = "cuda") -> tuple[str, str] | None:
    """The GPU model of a ``cuda``/``cuda:N`` device and its compute capability, via torch (None
    without a CUDA torch: a deployed engine-only demo names its GPU from the CUDA memory adapter)."""
    try:
        import torch

        if torch.cuda.is_available():
            idx = torch.device(device).index or 0
            p = torch.cuda.get_device_properties(idx)
            return p.name, f"{p.major}{p.minor}"
    except Exception:  # a CPU-only torch, or no torch at all
        pass
    return None


def cuda_index(device: Any) -> int | None:
    """The GPU index of ``cuda``/``cuda:N`` (None for ``cpu``); another spelling is a user error."""
    arg = parse_device(device)
    return None if device_kind(arg) == "cpu" else int(arg.split(":")[1])


def sm_arch(compute_capability: Any) -> str | None:
    """``sm_90`` for a compute capability written ``9.0`` or ``90`` (None when unknown)."""
    cc = str(compute_capability or "").replace(".", "")
    return f"sm_{cc}" if cc else None


def gpu_label(name: Any, compute_capability: Any) -> str:
    """``"NVIDIA H100 80GB HBM3 (sm_90)"``: how a runner, a bench record and ``rtseg doctor`` name a GPU."""
    sm = sm_arch(compute_capability)
    return f"{name} ({sm})" if sm else str(name)


def device_name(device: str = "cpu") -> str:
    """``"AMD EPYC (2 cores)"`` or ``"NVIDIA H100 80GB HBM3 (sm_90)"`` (``unknown GPU`` without a CUDA torch)."""
    if device_kind(device) == "cuda":
        gpu = gpu_model(device)
        if gpu is None:
            return "unknown GPU"
        return gpu_label(*gpu)
    return f"{cpu_model()} ({os.cpu_count() or 1} cores)"


def device_slug(device: "str | DeviceInfo" = "cpu") -> str:
    """The folder of a device under ``engines/``: its model name, slugified (``amd-epyc``,
    ``nvidia-h100-80gb-hbm3``). One folder per machine for LUTs and exports alike; ``device`` is a
    device string (``cpu``, ``cuda:N``) or a :class:`DeviceInfo` from :func:`detect_device`."""
    if isinstance(device, DeviceInfo):
        return slugify(device.name)
    if device_kind(device) == "cuda":
        gpu = gpu_model(device)
        return slugify(gpu[0] if gpu else "unknown GPU")
    return slugify(cpu_model())


F = TypeVar("F", bound=Callable[..., Any])


def keeps_torch_threads(fn: F) -> F:
    """Decorator: the function may set torch's thread count for its measurements (the LUT's); the
    caller's setting is restored afterwards, so a library call leaves no global state behind."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import torch

        prev = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != prev:
                torch.set_num_threads(prev)

    return wrapper  # type: ignore[return-value]


_ALLOCATOR: str | None = None


def steady_allocator() -> str:
    """Keep freed memory in this process's heap (glibc: no mmap for large blocks, no trimming).

    PyTorch's CPU tensors come from malloc. With glibc's defaults, large activations are sometimes
    served by fresh ``mmap`` pages (zeroed by page faults on every call) and sometimes from the heap,
    depending on the allocation history, so the same network measured in two processes came out
    at two different speeds (``docs/luts.md``, "Measuring on a shared CPU").
    Fixing the allocator's mode makes LUT entries and end-to-end timings reproducible; a deployed
    CPU process gets the same steady behaviour from these settings or from jemalloc/tcmalloc (the
    usual PyTorch CPU inference advice). Returns a description recorded in the LUT's provenance;
    idempotent; a no-op off glibc.
    """
    global _ALLOCATOR
    if _ALLOCATOR is not None:
        return _ALLOCATOR
    desc = "platform default"
    try:
        import ctypes
        import ctypes.util

        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            m_trim_threshold, m_mmap_max = -1, -4
            if libc.mallopt(m_mmap_max, 0) == 1 and libc.mallopt(m_trim_threshold, 1 << 30) == 1:
                desc = "glibc malloc, mallopt M_MMAP_MAX=0 M_TRIM_THRESHOLD=1GiB (freed memory stays in the heap)"
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        pass
    _ALLOCATOR = desc
    return desc

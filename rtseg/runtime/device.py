"""Human-readable names of the device a runner measures on (CPU model or GPU model).

The CPU model comes from :mod:`rtseg.latency.device` (the LUT provenance), so a runner, a bench
record and a LUT name the same machine the same way.

Names go into every measurement record and, slugified, into the default output folder
``engines/<device-slug>/``, so a number or an engine can always be traced to the hardware it came
from. GPU names come from torch when it has CUDA (the engine-only path passes its own name from the
CUDA memory adapter instead).
"""

from __future__ import annotations

import os

from rtseg.io import slugify
from rtseg.latency.device import cpu_model


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), as the LUT provenance names it."""
    return cpu_model()


def is_cuda(device: str) -> bool:
    return str(device).strip().lower().startswith("cuda")


def gpu_name(device: str = "cuda") -> str:
    """The GPU model of a ``cuda``/``cuda:N`` device, via torch (``unknown GPU`` without it)."""
    try:
        import torch

        if torch.cuda.is_available():
            idx = torch.device(device).index or 0
            p = torch.cuda.get_device_properties(idx)
            return f"{p.name} (sm_{p.major}{p.minor})"
    except Exception:  # a CPU-only torch, or no torch at all (deployed engine-only demo)
        pass
    return "unknown GPU"


def device_name(device: str = "cpu") -> str:
    """``"AMD EPYC (2 cores)"`` or ``"NVIDIA H100 80GB HBM3 (sm_90)"``."""
    if is_cuda(device):
        return gpu_name(device)
    return f"{cpu_name()} ({os.cpu_count() or 1} cores)"


def device_slug(device: str = "cpu") -> str:
    """The folder name of a device under ``engines/``: ``amd-epyc``, ``nvidia-h100-80gb-hbm3`` (the
    LUT profiler's folder for the same device, less its CPU thread-count suffix: exported files do
    not depend on threads)."""
    if is_cuda(device):
        return slugify(gpu_name(device).split(" (sm_")[0])
    return slugify(cpu_name())

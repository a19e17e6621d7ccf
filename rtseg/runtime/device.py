"""Human-readable names of the device a runner measures on (CPU model or GPU model).

Names go into every measurement record and, slugified, into the default output folder
``engines/<device-slug>/``, so a number or an engine can always be traced to the hardware it came
from. GPU names come from torch when it has CUDA (the engine-only path passes its own name from the
CUDA memory adapter instead).
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

from rtseg.io import slugify


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


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
    """The folder name of a device under ``engines/``: ``cpu-amd-epyc``, ``nvidia-h100-80gb-hbm3``."""
    if is_cuda(device):
        return slugify(gpu_name(device).split(" (sm_")[0])
    return "cpu-" + slugify(cpu_name())

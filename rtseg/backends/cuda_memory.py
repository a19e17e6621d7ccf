"""Device memory and streams for the TensorRT runner, from cuda-python or pycuda (one small adapter).

Why two: cuda-python (``cuda.bindings.runtime``, spelled ``cuda.cudart`` before 12.x bindings) is
what TensorRT's own samples use since 10.x and installs from wheels; pycuda is what many deployments
already have but needs a compiler to install. Either lets a deployed demo run an engine without
PyTorch. Selection: ``RTSEG_CUDA_MEMORY=cuda-python|pycuda`` (or the ``memory=`` argument) forces one;
otherwise cuda-python is preferred when both are importable.
"""

from __future__ import annotations

import importlib.util
import os
from abc import ABC, abstractmethod
from typing import Any, Iterable

import numpy as np

from rtseg.backends import TABLE
from rtseg.errors import MissingDependencyError, RtsegError

BACKENDS = ("cuda-python", "pycuda")
ENV_VAR = "RTSEG_CUDA_MEMORY"
INSTALL_HINT = f"{TABLE['tensorrt'].install} (it brings cuda-python; pip install pycuda works too)"


def available_backends() -> list[str]:
    """The adapters whose package is importable here, in preference order."""
    out = []
    if _has_module("cuda.bindings") or _has_module("cuda.cudart"):
        out.append("cuda-python")
    if _has_module("pycuda"):
        out.append("pycuda")
    return out


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # parent package missing
        return False


def choose_backend(preference: str | None, available: Iterable[str]) -> str:
    """Pick an adapter: the preferred one if given (it must be available), else the first available."""
    avail = list(available)
    if preference:
        pref = preference.strip().lower().replace("_", "-")
        if pref in ("cuda", "cudapython", "cuda-bindings"):
            pref = "cuda-python"
        if pref not in BACKENDS:
            raise RtsegError(f"unknown CUDA memory backend {preference!r}; choose {' or '.join(BACKENDS)}")
        if pref not in avail:
            pkg = "cuda-python" if pref == "cuda-python" else "pycuda"
            raise MissingDependencyError(f"the {pref} CUDA memory backend was asked for but {pkg} is not installed: pip install {pkg}, or {INSTALL_HINT}")
        return pref
    for b in BACKENDS:
        if b in avail:
            return b
    raise MissingDependencyError(f"running a TensorRT engine needs cuda-python or pycuda for device memory, and neither is installed: {INSTALL_HINT}")


class CudaMemory(ABC):
    """Device buffers, one stream, async copies and device properties."""

    name: str

    @abstractmethod
    def alloc(self, nbytes: int) -> int: ...

    @abstractmethod
    def free(self, ptr: int) -> None: ...

    @property
    @abstractmethod
    def stream(self) -> int:
        """The raw ``cudaStream_t`` handle TensorRT's ``execute_async_v3`` takes."""

    @abstractmethod
    def htod(self, ptr: int, host: np.ndarray) -> None: ...

    @abstractmethod
    def dtoh(self, host: np.ndarray, ptr: int) -> None: ...

    @abstractmethod
    def synchronize(self) -> None: ...

    @abstractmethod
    def device_properties(self) -> dict[str, Any]:
        """``{"name": ..., "compute_capability": "9.0"}`` of the current device."""

    def close(self) -> None:  # pragma: no cover - GPU only
        pass


class CudaPythonMemory(CudaMemory):  # pragma: no cover - needs a GPU and cuda-python
    name = "cuda-python"

    def __init__(self, device_index: int = 0) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # type: ignore[no-redef]  # cuda-python < 12.6 spelling
        self.rt = cudart
        self._check(cudart.cudaSetDevice(device_index), "cudaSetDevice")
        self.device_index = device_index
        self._stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, msg = self.rt.cudaGetErrorString(err)
            raise RtsegError(f"CUDA error in {what}: {msg.decode() if isinstance(msg, bytes) else msg} (is a CUDA GPU and driver present?)")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(max(1, int(nbytes))), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    @property
    def stream(self) -> int:
        return int(self._stream)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, kind, self._stream), "cudaMemcpyAsync H2D")

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, kind, self._stream), "cudaMemcpyAsync D2H")

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def device_properties(self) -> dict[str, Any]:
        p = self._check(self.rt.cudaGetDeviceProperties(self.device_index), "cudaGetDeviceProperties")
        name = p.name.decode(errors="replace").rstrip("\x00") if isinstance(p.name, bytes) else str(p.name)
        return {"name": name, "compute_capability": f"{p.major}.{p.minor}"}

    def close(self) -> None:
        self.rt.cudaStreamDestroy(self._stream)


class PyCudaMemory(CudaMemory):  # pragma: no cover - needs a GPU and pycuda
    name = "pycuda"

    def __init__(self, device_index: int = 0) -> None:
        import pycuda.driver as cuda

        self.cuda = cuda
        try:
            cuda.init()
            self.dev = cuda.Device(device_index)
            # the primary context is the one the CUDA runtime (and TensorRT) uses, so buffers are shared
            self.ctx = self.dev.retain_primary_context()
            self.ctx.push()
            self._stream = cuda.Stream()
        except cuda.Error as exc:
            raise RtsegError(f"pycuda cannot open CUDA device {device_index}: {exc} (is a CUDA GPU and driver present?)") from None
        self._allocs: dict[int, Any] = {}

    def alloc(self, nbytes: int) -> int:
        a = self.cuda.mem_alloc(max(1, int(nbytes)))
        self._allocs[int(a)] = a
        return int(a)

    def free(self, ptr: int) -> None:
        a = self._allocs.pop(ptr, None)
        if a is not None:
            a.free()

    @property
    def stream(self) -> int:
        return int(self._stream.handle)

    def htod(self, ptr: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(ptr, host, self._stream)

    def dtoh(self, host: np.ndarray, ptr: int) -> None:
        self.cuda.memcpy_dtoh_async(host, ptr, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def device_properties(self) -> dict[str, Any]:
        major, minor = self.dev.compute_capability()
        return {"name": self.dev.name(), "compute_capability": f"{major}.{minor}"}

    def close(self) -> None:
        for ptr in list(self._allocs):
            self.free(ptr)
        self.ctx.pop()


def open_cuda_memory(preference: str | None = None, device_index: int = 0) -> CudaMemory:
    """The adapter chosen by :func:`choose_backend` (``preference`` or ``$RTSEG_CUDA_MEMORY``)."""
    name = choose_backend(preference or os.environ.get(ENV_VAR) or None, available_backends())
    if name == "cuda-python":
        return CudaPythonMemory(device_index)
    return PyCudaMemory(device_index)

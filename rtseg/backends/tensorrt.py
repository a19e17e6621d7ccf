"""TensorRT runner: a serialized engine, device memory from cuda-python or pycuda, no PyTorch.

Inference uses the TensorRT 10/11 tensor-address API (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3`` on our own stream). Before deserializing, the engine's sidecar is read: an
engine built by another TensorRT version or on another GPU model is refused with a message saying
so (engines are not portable; TensorRT itself would only report "Serialization assertion ...
version tag does not match"). A corrupt or foreign file that TensorRT cannot deserialize is refused
the same way, and an input size outside the engine's shape (or its optimization profile) too.

Timing: :meth:`infer` is H2D + execute + D2H + sync (what the demo waits). :meth:`benchmark` times
the network only: enqueue + stream synchronize with the input already on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtseg.errors import RtsegError
from rtseg.backends.device import gpu_label
from rtseg.backends.metadata import read_metadata
from rtseg.backends.tensorrt_build import import_tensorrt
from rtseg.backends.timing import time_samples
from rtseg.backends.runner import Runner, RunnerInfo
from rtseg.backends.cuda_memory import CudaMemory, open_cuda_memory


def check_engine_compat(meta: dict[str, Any] | None, trt_version: str, gpu: dict[str, Any] | None, path: Path) -> None:
    """Refuse an engine whose sidecar says it was built with another TensorRT or on another GPU."""
    eng = (meta or {}).get("artifacts", {}).get("engine")
    if not eng:
        return
    built = str(eng.get("tensorrt", ""))
    if built and built != str(trt_version):
        raise RtsegError(
            f"engine {path} was built with TensorRT {built} but this machine has TensorRT {trt_version}; engines are not "
            "portable across TensorRT versions: rebuild it here with rtseg export --trt"
        )
    cc = eng.get("compute_capability")
    if gpu and cc and str(gpu.get("compute_capability")) != str(cc):
        raise RtsegError(
            f"engine {path} was built for a GPU of compute capability {cc} ({eng.get('gpu', '?')}) but this GPU is "
            f"{gpu.get('name')} ({gpu.get('compute_capability')}); rebuild it here with rtseg export --trt"
        )


class TensorRTRunner(Runner):  # pragma: no cover - needs TensorRT and a GPU
    def __init__(
        self,
        engine_path: str | Path,
        input_hw: tuple[int, int] | None = None,
        batch: int | None = None,
        memory: str | None = None,
        device: str = "cuda",
        extra: dict[str, Any] | None = None,
    ) -> None:
        trt = import_tensorrt()
        path = Path(engine_path)
        if not path.exists():
            raise RtsegError(f"engine file not found: {path} (build it with rtseg export --trt)")
        meta = read_metadata(path)
        idx = int(str(device).split(":")[1]) if ":" in str(device) else 0
        self.mem: CudaMemory = open_cuda_memory(memory, idx)
        gpu = self.mem.device_properties()
        check_engine_compat(meta, trt.__version__, gpu, path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        data = path.read_bytes()
        self.engine = self.runtime.deserialize_cuda_engine(data) if data else None
        if self.engine is None:
            raise RtsegError(
                f"TensorRT {trt.__version__} cannot load {path}: the file is corrupt, not an engine, or was built by another "
                "TensorRT version or GPU; rebuild it here with rtseg export --trt"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if not self.inputs or not outs:
            raise RtsegError(f"engine {path} has inputs {self.inputs} and outputs {outs}; it needs at least one of each")
        self.output_name = outs[0]
        shapes = {n: tuple(int(d) for d in self.engine.get_tensor_shape(n)) for n in self.inputs}
        # an image model (one NCHW input with 3 channels) gets the Runner checks; one-op engines from
        # the LUT profiler (any channel count, several inputs) run with their built shapes
        first = shapes[self.inputs[0]]
        image = len(self.inputs) == 1 and len(first) == 4 and first[1] == 3
        self.in_shapes = self._set_input_shapes(path, shapes, meta, input_hw, batch)
        self.out_shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))
        self._allocate(trt, names)
        self.info = self._runner_info(trt, path, meta, gpu, image, extra)

    def _set_input_shapes(self, path: Path, shapes: dict[str, tuple[int, ...]], meta: dict[str, Any] | None,
                          input_hw: tuple[int, int] | None, batch: int | None) -> dict[str, tuple[int, ...]]:
        """The shape each input runs at: the built one, or for a dynamic engine the asked ``input_hw``
        and ``batch`` (else the size it was optimized for), set on the context and checked against
        the optimization profile."""
        inp = (meta or {}).get("input", {})
        meta_hw = inp.get("export_hw")  # the size a dynamic engine was optimized for
        if isinstance(inp.get("shape"), list) and all(isinstance(v, int) for v in inp["shape"][2:]):
            meta_hw = inp["shape"][2:]
        in_shapes: dict[str, tuple[int, ...]] = {}
        for name, shape in shapes.items():
            want = shape
            if name == self.inputs[0] and len(shape) == 4:
                if input_hw is not None:
                    hw = tuple(int(v) for v in input_hw)
                elif shape[2] > 0 and shape[3] > 0:
                    hw = (shape[2], shape[3])
                else:
                    hw = tuple(int(v) for v in meta_hw) if meta_hw else (0, 0)
                n = batch if batch is not None else (shape[0] if shape[0] > 0 else 1)
                want = (int(n), shape[1], *hw)
            if any(d < 0 for d in shape):
                if any(d <= 0 for d in want):
                    raise RtsegError(f"engine {path} has a dynamic input size; give it with --input HxW")
                if not self.context.set_input_shape(name, want):
                    mn, _, mx = self.engine.get_tensor_profile_shape(name, 0)
                    raise RtsegError(
                        f"input shape {want} is outside engine {path}'s optimization profile (min {tuple(mn)}, max {tuple(mx)}); "
                        "use an input inside it or rebuild with a wider --dynamic range"
                    )
            elif tuple(want) != shape:
                raise RtsegError(f"engine {path} was built for input {shape}, not {tuple(want)}; rebuild it with that --input/--batch or use --dynamic")
            in_shapes[name] = tuple(int(v) for v in want)
        return in_shapes

    def _allocate(self, trt: Any, names: list[str]) -> None:
        """Host arrays for the inputs and the output, and a device buffer bound to every I/O tensor."""
        self.host_in = {n: np.zeros(self.in_shapes[n], np.dtype(trt.nptype(self.engine.get_tensor_dtype(n)))) for n in self.inputs}
        self.host_out = np.zeros(self.out_shape, np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name))))
        self.buffers: dict[str, int] = {}
        for name in names:
            shp = tuple(int(d) for d in self.context.get_tensor_shape(name))
            dt = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            self.buffers[name] = self.mem.alloc(int(np.prod(shp)) * dt.itemsize)
            self.context.set_tensor_address(name, self.buffers[name])

    def _runner_info(self, trt: Any, path: Path, meta: dict[str, Any] | None, gpu: dict[str, Any], image: bool,
                     extra: dict[str, Any] | None) -> RunnerInfo:
        """What runs: TensorRT's version, the GPU, the precision the sidecar records for this file, the shapes."""
        in0 = self.in_shapes[self.inputs[0]]
        arts = (meta or {}).get("artifacts", {})  # the entry of this file (model.engine or model-int8.engine)
        eng_meta = next((a for a in arts.values() if isinstance(a, dict) and a.get("file") == Path(path).name), arts.get("engine", {}))
        return RunnerInfo(
            backend="tensorrt",
            backend_version=str(trt.__version__),
            device=gpu_label(gpu.get("name"), gpu.get("compute_capability")),
            precision=eng_meta.get("precision") or ("fp16" if eng_meta.get("fp16_mode", "fp32") != "fp32" else "fp32"),
            input_hw=(in0[2], in0[3]) if len(in0) == 4 else (0, 0),
            batch=in0[0] if in0 else 1,
            num_classes=self.out_shape[1] if image and len(self.out_shape) == 4 else 0,
            extra={"memory": self.mem.name, "engine": str(path), "image_model": image,
                   "timed": "network only: enqueue + stream sync, input resident on the GPU, monotonic clock",
                   "data_info": (meta or {}).get("data_info"), **(extra or {})},
        )

    @classmethod
    def open(cls, artifact: Any, *, input_hw: tuple[int, int] | None, batch: int, device: str, precision: str | None,
             threads: int | None, cuda_graphs: bool, memory: str | None, num_classes: int | None,
             extra: dict[str, Any]) -> "TensorRTRunner":
        return cls(artifact, input_hw=input_hw, batch=batch, memory=memory, device=device, extra=extra)

    def execute(self) -> None:
        """One run on the inputs already on the device (enqueue + stream sync, no host copies): what
        :meth:`benchmark` and the latency timers time once :meth:`upload` has placed the inputs."""
        if not self.context.execute_async_v3(self.mem.stream):
            raise RtsegError("TensorRT execution failed (see the TensorRT messages above)")
        self.mem.synchronize()

    def upload(self, batch: np.ndarray, *more: np.ndarray) -> None:
        """Copy inputs (in the engine's input order) to the device, where :meth:`execute` reads them."""
        arrays = (batch, *more)
        if len(arrays) != len(self.inputs):
            raise RtsegError(f"the engine takes {len(self.inputs)} inputs, got {len(arrays)}")
        for name, x in zip(self.inputs, arrays):
            if tuple(x.shape) != self.in_shapes[name]:
                raise RtsegError(f"input shape {tuple(x.shape)} does not match the engine's {self.in_shapes[name]}")
            host = self.host_in[name]
            np.copyto(host, x, casting="unsafe")
            self.mem.htod(self.buffers[name], host)

    def infer(self, batch: np.ndarray, *more: np.ndarray) -> np.ndarray:
        """H2D, execute, D2H: inputs in the engine's input order (one image batch for a model)."""
        self.upload(batch, *more)
        if not self.context.execute_async_v3(self.mem.stream):
            raise RtsegError("TensorRT execution failed (see the TensorRT messages above)")
        self.mem.dtoh(self.host_out, self.buffers[self.output_name])
        self.mem.synchronize()
        return self.host_out.astype(np.float32, copy=True)

    def samples(self, warmup: int = 10, repeats: int = 100) -> list[float]:
        rng = np.random.default_rng(0)
        self.infer(*(rng.standard_normal(self.in_shapes[n]).astype(np.float32) for n in self.inputs))
        return time_samples(self.execute, [()], warmup=warmup, repeats=repeats, device="cpu")

    def close(self) -> None:
        for ptr in self.buffers.values():
            self.mem.free(ptr)
        self.buffers = {}
        self.mem.close()

"""Latency timers: each backend of :data:`rtseg.backends.TABLE` times a module the way it will be deployed.

One interface for an operator and for a whole network, so a LUT entry and the end-to-end latency
it predicts are measured under identical settings (thread count, precision, memory format, graph
optimization, execution provider):

    timer = make_timer("onnxruntime", device_info, "fp32", batch=1)
    prepared = timer.prepare(module, input_sets)   # export / session / engine build: not timed
    stats = prepared.time(warmup=5, repeats=30)      # rtseg.backends.timing protocol

``input_sets`` are several sets of example inputs (fp32, CPU) that the timing loop rotates through;
each backend moves them to its device, dtype and layout once, before timing.

A timer runs what its backend's runner runs: the TensorRT timer times a
:class:`~rtseg.backends.tensorrt.TensorRTRunner` (inputs uploaded once, then
:meth:`~rtseg.backends.tensorrt.TensorRTRunner.execute`), the ONNX Runtime timer a session from the
runner's own factory (:func:`rtseg.backends.ort_session.make_session`), the torch timer the module
on the device, as :class:`~rtseg.backends.pytorch.TorchRunner` does.

TensorRT is never replaced by another backend: when ``tensorrt`` cannot be imported the timer
refuses to start with :class:`MissingDependencyError` naming the extra to install (FasterSeg's
silent fallback to PyTorch timings is the failure this prevents).
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from rtseg.backends import FLOAT_PRECISIONS, PRECISIONS, get_backend
from rtseg.backends.device import DeviceInfo
from rtseg.backends.onnx_export import DEFAULT_OPSET, export_onnx, simplify_onnx
from rtseg.backends.ort import session_calls
from rtseg.backends.pytorch import place
from rtseg.backends.ort_session import make_session
from rtseg.backends.tensorrt import TensorRTRunner
from rtseg.backends.tensorrt_build import build_engine
from rtseg.backends.trt_batch import SubgraphEngine, export_merged
from rtseg.backends.timing import CLOCKS, TimingStats, median_ci, sample_until_stable, time_samples
from rtseg.errors import RtsegError


@dataclass
class Prepared:
    """A module made ready on a backend: ``fn(*args[i])`` runs it once, synchronously or on CUDA."""

    fn: Callable[..., Any]
    args: list[tuple[Any, ...]]
    clock: str  # "cpu" (perf_counter around a synchronous call) or "cuda:N" (CUDA events)
    keep: list[Any] = field(default_factory=list)  # sessions, engines, temp dirs kept alive

    def samples(self, warmup: int, repeats: int, min_time_s: float = 0.0, max_repeats: int | None = None) -> list[float]:
        with torch.inference_mode():
            return time_samples(self.fn, self.args, warmup=warmup, repeats=repeats, device=self.clock,
                                min_time_s=min_time_s, max_repeats=max_repeats)

    def stable_samples(self, warmup: int, repeats: int, min_time_s: float = 0.0, max_repeats: int = 400,
                       rel_ci: float = 0.05, max_s: float | None = None) -> list[float]:
        """Samples until the median settles (see :func:`rtseg.backends.timing.sample_until_stable`)."""

        def take(wu: int, n: int) -> list[float]:
            return self.samples(wu, n, min_time_s if wu else 0.0, max_repeats)

        return sample_until_stable(take, warmup, repeats, rel_ci=rel_ci, max_repeats=max_repeats, max_s=max_s)

    def time(self, warmup: int, repeats: int, min_time_s: float = 0.0, max_repeats: int | None = None) -> TimingStats:
        return TimingStats.from_samples(self.samples(warmup, repeats, min_time_s, max_repeats))

    def close(self) -> None:
        for obj in self.keep:  # runners before the temporary folders holding their files
            if isinstance(obj, tempfile.TemporaryDirectory):
                obj.cleanup()
            elif callable(getattr(obj, "close", None)) and not isinstance(obj, nn.Module):
                obj.close()
        self.keep.clear()


@dataclass
class BatchPrepared:
    """Several modules made ready together (:meth:`OpTimer.prepare_batch`): ``take(warmup, n)``
    returns ``n`` samples (ms) per module, in the modules' order."""

    take: Callable[[int, int], list[list[float]]]
    count: int
    keep: list[Any] = field(default_factory=list)
    describe: Callable[[], dict[str, Any]] | None = None  # what the backend did (e.g. subgraphs it had to time alone)

    def samples(self, warmup: int, repeats: int) -> list[list[float]]:
        with torch.inference_mode():
            return self.take(warmup, repeats)

    def stable_samples(self, warmup: int, repeats: int, rel_ci: float = 0.05, max_repeats: int = 400,
                       max_s: float | None = None) -> list[list[float]]:
        """Samples of every module, more rounds added until every median's 95% CI is within
        ``rel_ci`` (the rule of :func:`rtseg.backends.timing.sample_until_stable`, applied to the
        least settled module), ``max_repeats`` samples each or ``max_s`` seconds of samples."""
        out = self.samples(warmup, repeats)
        step = max(1, repeats)
        while out and len(out[0]) < max_repeats and (max_s is None or sum(sum(s) for s in out) / 1000.0 < max_s):
            unsettled = False
            for s in out:
                lo, hi = median_ci(s)
                med = sorted(s)[len(s) // 2]
                if med > 0 and (hi - lo) > rel_ci * med:
                    unsettled = True
                    break
            if not unsettled:
                break
            more = self.samples(0, min(step, max_repeats - len(out[0])))
            out = [a + b for a, b in zip(out, more)]
        return out

    def close(self) -> None:
        Prepared(lambda: None, [], "cpu", keep=self.keep).close()


class OpTimer(ABC):
    """Times modules on one backend, device, precision and batch."""

    name: str = ""
    #: How many LUT entries the profiler hands :meth:`prepare_batch` at once; 1: one at a time
    #: through :meth:`prepare` (the torch and onnxruntime timers; TensorRT batches, see its class).
    batch_size: int = 1
    #: The precisions this timer measures operators in.
    precisions: tuple[str, ...] = FLOAT_PRECISIONS

    def __init__(self, device: DeviceInfo, precision: str = "fp32", batch: int = 1, clock: str = "wall") -> None:
        if clock not in CLOCKS:
            raise RtsegError(f"unknown clock {clock!r}: use {' or '.join(CLOCKS)}")
        if clock == "thread" and (device.kind != "cpu" or device.details.get("threads") != 1):
            raise RtsegError("--clock thread measures the CPU time of one thread: use it with --device cpu --threads 1")
        if precision not in self.precisions:
            raise RtsegError(f"the {self.name} timer measures {' or '.join(self.precisions)}, not {precision!r}")
        if precision == "fp16" and device.kind != "cuda":
            raise RtsegError("fp16 is measured on a GPU (CPU fp16 kernels are not a deployment target): use --device cuda or --precision fp32")
        if batch < 1:
            raise RtsegError(f"--batch must be a positive integer, got {batch}")
        self.device = device
        self.precision = precision
        self.batch = batch
        self.clock = clock

    def _clock(self) -> str:
        """The ``time_samples`` device string for this timer's clock."""
        if self.clock == "thread":
            return "thread"
        return self.device.arg if self.device.kind == "cuda" and self.name == "torch" else "cpu"

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.precision == "fp16" else torch.float32

    @property
    @abstractmethod
    def version(self) -> str: ...

    def settings(self) -> dict[str, Any]:
        """Backend settings recorded in a LUT's provenance."""
        return {}

    @abstractmethod
    def prepare(self, module: nn.Module, input_sets: Sequence[tuple[torch.Tensor, ...]], simplify: bool = False) -> Prepared:
        """``module`` made ready to time. ``simplify``: a whole network is timed in the form it is
        deployed in (a backend that runs an exported graph simplifies it first, as ``rtseg export``
        does); a backend that runs the module as it is ignores it."""

    def prepare_batch(self, modules: Sequence[nn.Module], input_sets: Sequence[Sequence[tuple[torch.Tensor, ...]]],
                      key: Any = None) -> BatchPrepared:
        """Several modules at once. This default prepares each one and times them in interleaved
        rounds (each module once per round), so a burst of load spreads over all of them; a
        backend with a cheaper way (TensorRT: one engine for all, timed per layer) overrides it.
        ``key`` names the group (the same key, the same modules' structure: a backend may reuse
        what it built for it; this default ignores it)."""
        prepared: list[Prepared] = []
        try:
            for m, sets in zip(modules, input_sets):
                prepared.append(self.prepare(m, sets))
        except BaseException:
            for p in prepared:
                p.close()
            raise

        def take(warmup: int, n: int) -> list[list[float]]:
            if warmup:
                for p in prepared:
                    p.samples(warmup, 1)
            out: list[list[float]] = [[] for _ in prepared]
            for _ in range(max(1, n)):
                for i, p in enumerate(prepared):
                    out[i] += p.samples(0, 1)
            return out

        return BatchPrepared(take, len(prepared), keep=list(prepared))

    def time_module(self, module: nn.Module, input_sets: Sequence[tuple[torch.Tensor, ...]], warmup: int, repeats: int,
                    min_time_s: float = 0.0, max_repeats: int | None = None) -> TimingStats:
        prepared = self.prepare(module, input_sets)
        try:
            return prepared.time(warmup, repeats, min_time_s, max_repeats)
        finally:
            prepared.close()


class TorchTimer(OpTimer):
    """Eager PyTorch in inference mode. On CUDA: cuDNN autotuning, and channels_last for fp16, which
    lets cuDNN use tensor-core NHWC kernels (the layout TensorRT picks too); on CPU the default
    contiguous layout, which is what oneDNN-backed eager convs are fastest with at batch 1."""

    name = "torch"

    def __init__(self, device: DeviceInfo, precision: str = "fp32", batch: int = 1, clock: str = "wall",
                 channels_last: bool | None = None) -> None:
        super().__init__(device, precision, batch, clock)
        self.channels_last = (device.kind == "cuda" and precision == "fp16") if channels_last is None else channels_last
        if device.kind == "cuda":
            torch.backends.cudnn.benchmark = True

    @property
    def version(self) -> str:
        return torch.__version__

    def settings(self) -> dict[str, Any]:
        return {"channels_last": self.channels_last, "cudnn_benchmark": self.device.kind == "cuda", "inference_mode": True}

    def prepare(self, module: nn.Module, input_sets: Sequence[tuple[torch.Tensor, ...]], simplify: bool = False) -> Prepared:
        module, args = place(module, input_sets, self.device.arg, self.dtype, self.channels_last)  # as the torch runner places its network
        return Prepared(module, args, self._clock(), keep=[module])


class OnnxRuntimeTimer(OpTimer):
    """The module exported to ONNX (the same exporter as ``rtseg export``) and run by an ONNX Runtime
    session from :func:`rtseg.backends.ort_session.make_session` (graph optimization ALL, the CPU or
    CUDA execution provider, the LUT's thread count), through the backend's own device-resident calls
    (:func:`rtseg.backends.ort.session_calls`: I/O binding on CUDA, so the timing is the run, not
    host copies). ``int8``: the exported graph quantized in QDQ form around each operator
    (:func:`rtseg.backends.onnx_int8.quantize_onnx`, calibrated on the timing inputs, the settings
    ``rtseg export --int8`` uses), so an operator is timed as it runs inside the exported INT8 net."""

    name = "onnxruntime"
    precisions = PRECISIONS

    @property
    def version(self) -> str:
        import onnxruntime

        return onnxruntime.__version__

    def settings(self) -> dict[str, Any]:
        quant = {"quantization": "QDQ, uint8 activations, int8 per-channel weights (rtseg export --int8)"} if self.precision == "int8" else {}
        return {**quant, "graph_optimization": "ORT_ENABLE_ALL", "opset": DEFAULT_OPSET, "threads": self.device.details.get("threads"),
                "provider": "CUDAExecutionProvider" if self.device.kind == "cuda" else "CPUExecutionProvider",
                "io_binding": self.device.kind == "cuda"}

    def prepare(self, module: nn.Module, input_sets: Sequence[tuple[torch.Tensor, ...]], simplify: bool = False) -> Prepared:
        """``module`` exported to ONNX and opened in a session; ``simplify`` runs onnxslim on the graph
        first, as ``rtseg export`` and the runtime do, so a whole network is timed as it is deployed."""
        tmp = tempfile.TemporaryDirectory(prefix="rtseg-ort-")
        path = Path(tmp.name) / "m.onnx"
        module = module.eval().to("cpu", dtype=self.dtype)
        first = tuple(t.to(dtype=self.dtype) for t in input_sets[0])
        try:
            export_onnx(module, first, path, opset=DEFAULT_OPSET)
            if simplify:
                simplify_onnx(path)
            if self.precision == "int8":
                path = _quantized(path, input_sets)
            return self.prepare_onnx(path, input_sets, keep=[tmp])
        except BaseException:
            tmp.cleanup()
            raise

    def prepare_onnx(self, path: str | Path, input_sets: Sequence[tuple[torch.Tensor, ...]], keep: Sequence[Any] = ()) -> Prepared:
        """An ONNX file run as it is (already exported: ``rtseg export``'s, or :meth:`prepare`'s);
        ``keep`` lives as long as the session (the folder holding the file)."""
        sess = make_session(path, device=self.device.arg, threads=self.device.details.get("threads") if self.device.kind == "cpu" else None)
        names = [i.name for i in sess.get_inputs()]
        np_dtype = "float16" if self.precision == "fp16" else "float32"
        feeds = [{n: t.to(dtype=self.dtype).numpy().astype(np_dtype, copy=False) for n, t in zip(names, s)} for s in input_sets]
        fn, args, bound = session_calls(sess, feeds, self.device.arg)
        return Prepared(fn, args, self._clock(), keep=[sess, *keep, *bound])


def _quantized(path: Path, input_sets: Sequence[tuple[torch.Tensor, ...]]) -> Path:
    """``path``'s QDQ INT8 twin beside it, its activation ranges calibrated on the timing inputs."""
    import onnx

    from rtseg.backends.onnx_int8 import quantize_onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    if all(n.op_type == "Identity" for n in graph.node):  # the profiler's identity baseline: nothing to quantize
        return path
    weights = {t.name for t in graph.initializer}
    names = [i.name for i in graph.input if i.name not in weights]
    feeds = [{n: t.to(torch.float32).numpy() for n, t in zip(names, s)} for s in input_sets]
    return quantize_onnx(path, path.with_name("int8.onnx"), feeds)[0]


class TensorRTTimer(OpTimer):
    """TensorRT engines built from the modules' ONNX graphs, with fp16 enabled for ``--precision
    fp16``. LUT entries go through :meth:`prepare_batch`: up to :attr:`batch_size` one-operator
    subgraphs per engine, each timed per layer by TensorRT's ``IProfiler``
    (:mod:`rtseg.backends.trt_batch`; one engine per entry, as FasterSeg timed operators, would cost
    thousands of builds for the ``ssr`` space, see ``docs/luts.md``). Whole networks
    (skeletons, calibration, ``lut validate``) and the reference operator get an engine each through
    :meth:`prepare`. One builder is reused and every build shares a timing cache, by default the
    one ``rtseg export --trt`` keeps beside the LUT (set :attr:`timing_cache`), so a re-run skips
    TensorRT's tactic timing. Needs ``tensorrt`` and a CUDA device; refuses otherwise."""

    name = "tensorrt"
    batch_size = 64

    def __init__(self, device: DeviceInfo, precision: str = "fp32", batch: int = 1, clock: str = "wall",
                 workspace_gb: float = 1.0) -> None:
        get_backend("tensorrt").require()
        super().__init__(device, precision, batch, clock)
        if device.kind != "cuda":
            raise RtsegError("the tensorrt backend runs on a GPU: use --device cuda (or --backend torch/onnxruntime on a CPU)")
        self.workspace_gb = workspace_gb
        self._tmp = tempfile.TemporaryDirectory(prefix="rtseg-trt-")
        self.timing_cache = Path(self._tmp.name) / "timing.cache"
        self._builder: Any = None
        self._groups: dict[Any, Path] = {}  # prepare_batch key -> its merged ONNX (the engine beside it)
        self.engines_built = 0

    def builder(self) -> Any:  # pragma: no cover - needs TensorRT
        """One ``trt.Builder`` for every build of this timer (each new one reloads the kernel library)."""
        if self._builder is None:
            import tensorrt as trt

            self._builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
        return self._builder

    @property
    def version(self) -> str:
        import tensorrt

        return str(tensorrt.__version__)

    def settings(self) -> dict[str, Any]:
        return {"fp16": self.precision == "fp16", "workspace_gb": self.workspace_gb, "opset": DEFAULT_OPSET}

    def prepare(self, module: nn.Module, input_sets: Sequence[tuple[torch.Tensor, ...]], simplify: bool = False) -> Prepared:
        tmp = tempfile.TemporaryDirectory(prefix="rtseg-trt-op-", dir=self._tmp.name)
        onnx_path, engine_path = Path(tmp.name) / "m.onnx", Path(tmp.name) / "m.engine"
        export_onnx(module.eval().cpu().float(), tuple(t.float() for t in input_sets[0]), onnx_path, opset=DEFAULT_OPSET)
        if simplify:
            simplify_onnx(onnx_path)
        build_engine(onnx_path, engine_path, fp16=self.precision == "fp16", workspace_gb=self.workspace_gb, timing_cache=self.timing_cache,
                     progress=False, builder=self.builder())
        self.engines_built += 1
        runner = TensorRTRunner(engine_path, device=self.device.arg)
        runner.upload(*(t.float().numpy() for t in input_sets[0]))  # once; then enqueue + stream sync only: the engine, not PCIe copies
        return Prepared(runner.execute, [()], "cpu", keep=[runner, tmp])


    def prepare_batch(self, modules: Sequence[nn.Module], input_sets: Sequence[Sequence[tuple[torch.Tensor, ...]]],
                      key: Any = None) -> BatchPrepared:  # pragma: no cover - needs TensorRT
        """All ``modules`` as independent subgraphs of one engine, timed per layer (see the class
        docstring). The engine of a ``key`` seen before is loaded again, not rebuilt (the recheck
        re-times every group: the weights differ, the timings do not depend on them)."""
        inputs = [sets[0] for sets in input_sets]
        if key is not None and key in self._groups:
            onnx_path = self._groups[key]
            engine = SubgraphEngine(onnx_path, len(modules), inputs, onnx_path.parent, self.precision == "fp16", self.workspace_gb,
                                    self.timing_cache, self.device.arg, builder=self.builder())
            return BatchPrepared(engine.take, len(modules), keep=[engine], describe=engine.summary)
        folder = Path(tempfile.mkdtemp(prefix="sg-", dir=self._tmp.name))  # kept until the timer goes: a recheck loads it again
        onnx_path = export_merged(modules, inputs, folder / "subgraphs.onnx", opset=DEFAULT_OPSET, device=self.device.arg)
        engine = SubgraphEngine(onnx_path, len(modules), inputs, folder, self.precision == "fp16", self.workspace_gb,
                                self.timing_cache, self.device.arg, builder=self.builder())
        self.engines_built += 1
        if key is not None:
            self._groups[key] = onnx_path
        return BatchPrepared(engine.take, len(modules), keep=[engine], describe=engine.summary)


def make_timer(backend: str, device: DeviceInfo, precision: str = "fp32", batch: int = 1, clock: str = "wall") -> OpTimer:
    """The timer of ``backend`` (a row of :data:`rtseg.backends.TABLE`) reading ``clock`` (see
    :data:`rtseg.backends.timing.CLOCKS`). The backend's packages are checked first: a missing
    TensorRT must never turn into another backend's timings."""
    spec = get_backend(backend)
    spec.require()
    return spec.load("timer")(device, precision, batch, clock)


def input_bytes(input_sets: Sequence[tuple[torch.Tensor, ...]] | tuple[torch.Tensor, ...]) -> int:
    first = input_sets[0] if input_sets and isinstance(input_sets[0], tuple) else input_sets
    return int(sum(t.numel() * t.element_size() for t in first))  # type: ignore[union-attr]

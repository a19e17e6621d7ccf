"""ONNX -> serialized TensorRT engine, for TensorRT 10.x and 11.x (deploy.md sec. 1).

FP16 across the two eras:

* TensorRT 11 removed ``BuilderFlag.FP16``: every network is strongly typed, so an FP16 engine is
  built from an ONNX whose tensors are already FP16. Given an FP32 ONNX and ``fp16=True``,
  :func:`build_engine` writes the FP16 variant (:func:`rtseg.backends.onnx_export.convert_fp16`, FP32 I/O)
  beside the engine and builds from it.
* TensorRT 10 builds an FP16 ONNX the same way (strongly typed network, the form 10.12+ recommends)
  and an FP32 ONNX with ``fp16=True`` through the deprecated FP16 builder flag (weak typing).

INT8 is explicit quantization only: the engine is built from a calibrated QDQ ONNX with symmetric
activations, ``model-int8.trt.onnx`` of ``rtseg export --int8 --trt`` (the implicit calibrator API is
deprecated since 10.1 and removed in 11; TensorRT's quantization has no zero point).
TensorRT 11 builds it strongly typed with no precision flag (the Q/DQ nodes say what runs in INT8;
the other layers run in the ONNX's float type, FP32, since opset-17 Q/DQ nodes take FP32 only);
TensorRT 10 builds it weakly typed with the INT8 flag, plus the FP16 flag so the layers left
unquantized may run in FP16 (:func:`precision_plan`).

Always: the parse result is checked and every parser error reported (never TensorRT's later
"network must have at least one output"); a timing cache is loaded from and saved back to
``timing_cache`` (rebuilds of the same layers on the same GPU skip tactic timing); an optimization
profile is added when ``dynamic`` gives min/opt/max shapes; a progress display follows the builder's
phases (``IProgressMonitor``, TensorRT >= 10); and the engine's layer precisions are read back with
the engine inspector, so "FP16 requested, FP32 built" (TensorRT 11 given an FP32 ONNX) is caught.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from rtseg.backends import get_backend
from rtseg.backends.onnx_fp16 import convert_fp16, is_fp16_onnx
from rtseg.backends.onnx_int8 import is_int8_onnx
from rtseg.errors import RtsegError
from rtseg.io import atomic_write_bytes
from rtseg.reporting import Reporter

#: ``{"input": ((1, 3, 256, 512), (1, 3, 512, 1024), (1, 3, 1024, 2048))}``: min, opt, max per input.
DynamicShapes = Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]]


def import_tensorrt() -> Any:
    """``import tensorrt``, or one clear error with the install line of the tensorrt backend's row."""
    return get_backend("tensorrt").require()


def trt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except ValueError:  # pragma: no cover
        return 10


def _parser_errors(parser: Any) -> list[str]:  # pragma: no cover - needs TensorRT
    out = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        parts = []
        for attr in ("node_name", "node_operator"):
            fn = getattr(err, attr, None)
            if callable(fn):
                try:
                    v = fn()
                    if v:
                        parts.append(f"{attr.split('_')[1]}={v}")
                except Exception:
                    pass
        desc = err.desc() if callable(getattr(err, "desc", None)) else str(err)
        out.append(f"{desc} ({', '.join(parts)})" if parts else desc)
    return out


def _make_monitor(trt: Any, reporter: Reporter) -> Any:  # pragma: no cover - needs TensorRT
    """The builder's ``IProgressMonitor`` callbacks turned into ``reporter`` tasks, one per phase."""

    class ReporterMonitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.tasks: dict[str, tuple[Any, Any]] = {}  # phase -> (context manager, bar)
            self.cancelled = False

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            indent = "  " if parent_phase else ""
            cm = reporter.task(f"TensorRT {indent}{phase_name}", total=max(1, num_steps))
            try:
                self.tasks[phase_name] = (cm, cm.__enter__())
            except Exception:  # rich < 14 refuses a second live display (e.g. profile-ops' own bar)
                pass

        def step_complete(self, phase_name: str, step: int) -> bool:
            task = self.tasks.get(phase_name)
            if task is not None:
                task[1].update(completed=step + 1)
            return not self.cancelled  # False cancels the build

        def phase_finish(self, phase_name: str) -> None:
            task = self.tasks.pop(phase_name, None)
            if task is not None:
                task[0].__exit__(None, None, None)

    return ReporterMonitor()


def layer_precisions(engine: Any, trt: Any) -> dict[str, int]:  # pragma: no cover - needs TensorRT
    """Count engine layers by the precision the inspector reports (both the 10.x and 11.x JSON)."""
    counts: dict[str, int] = {}
    try:
        info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception:
        return counts
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):
            continue
        text = json.dumps(layer.get("Outputs", layer))
        key = ("Int8" if ("Int8" in text or "INT8" in text) else "Half" if ("Half" in text or "FP16" in text)
               else "Float" if ("Float" in text or "FP32" in text) else "other")
        counts[key] = counts.get(key, 0) + 1
    return counts


def trt_unsupported(onnx_path: str | Path) -> list[str]:
    """Nodes TensorRT's ONNX parser is known to refuse, found before a long build is started:
    antialiased Resize ("Antialiasing is not supported", onnx-tensorrt operators.md) and
    control flow rtseg nets never need (deploy.md sec. 3.1-3.2)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    found = []
    for n in model.graph.node:
        attrs = {a.name: a for a in n.attribute}
        if n.op_type == "Resize" and "antialias" in attrs and attrs["antialias"].i:
            found.append(f"Resize {n.name or n.output[0]!r} with antialias=1 (use antialias=False in the model)")
    return found


def precision_plan(major: int, onnx_fp16: bool, fp16: bool, int8: bool = False) -> dict[str, Any]:
    """How TensorRT ``major`` builds the requested precision from an ONNX (FP16 or not): whether to
    write the FP16 variant first, whether the network is strongly typed, the builder flags to set and
    the mode recorded in the sidecar (see the module docstring)."""
    if int8:
        if major >= 11:
            return {"convert_fp16": False, "strongly_typed": True, "flags": [], "mode": "int8 explicit (QDQ), strongly typed"}
        flags = ["INT8", "FP16"] if fp16 else ["INT8"]
        return {"convert_fp16": False, "strongly_typed": False, "flags": flags,
                "mode": "int8 explicit (QDQ), builder flags " + " + ".join(flags)}
    convert = fp16 and not onnx_fp16 and major >= 11
    strongly_typed = major >= 11 or onnx_fp16 or convert
    flags = ["FP16"] if fp16 and not strongly_typed else []
    mode = ("strongly-typed" if strongly_typed else "builder-flag") if fp16 else "fp32"
    return {"convert_fp16": convert, "strongly_typed": strongly_typed, "flags": flags, "mode": mode}


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    fp16: bool = True,
    workspace_gb: float = 4.0,
    timing_cache: Path | None = None,
    dynamic: DynamicShapes | None = None,
    progress: bool = True,
    info: dict[str, Any] | None = None,
    builder: Any = None,
    max_aux_streams: int | None = None,
    reporter: Reporter | None = None,
    int8: bool = False,
) -> Path:
    """Build and write a serialized engine from ``onnx_path`` (see the module docstring).

    ``info``, when given, is filled with what was done: TensorRT version, FP16 mode
    (``strongly-typed`` or ``builder-flag``), the ONNX actually parsed, the profile, the timing
    cache and the layer precision counts; the export pipeline records it in the sidecar.
    ``builder`` reuses a ``trt.Builder`` across many builds (creating one loads TensorRT's kernel
    library, seconds each time); ``max_aux_streams=0`` keeps every layer on one stream, so layer
    timings never overlap (the LUT profiler's many-subgraph engines). ``reporter`` shows the
    builder's phases as progress bars (with ``progress``; silent by default). ``int8`` builds the
    explicitly quantized engine of a QDQ ONNX (``fp16`` then lets the unquantized layers use FP16
    where TensorRT 10 allows it).
    """
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    _check_buildable(onnx_path, workspace_gb, int8)
    major = trt_major(trt)  # pragma: no cover - from here on TensorRT is present
    plan = precision_plan(major, is_fp16_onnx(onnx_path), fp16, int8)
    source = onnx_path
    if plan["convert_fp16"]:
        source = engine_path.with_name(engine_path.stem + ".fp16.onnx")
        convert_fp16(onnx_path, source)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = builder if builder is not None else trt.Builder(logger)
    network = _parse_network(trt, builder, logger, source, plan["strongly_typed"])
    config = _builder_config(trt, builder, plan, workspace_gb, max_aux_streams)
    cache = _attach_timing_cache(config, timing_cache)
    profile_info = _add_profile(builder, config, network, dynamic, source)
    if progress and reporter is not None and hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _make_monitor(trt, reporter)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RtsegError("TensorRT failed to build the engine (see the TensorRT messages above); try a larger --workspace-gb")
    atomic_write_bytes(engine_path, bytes(serialized))
    if cache is not None and timing_cache is not None:
        atomic_write_bytes(Path(timing_cache), bytes(config.get_timing_cache().serialize()))

    if info is not None:
        engine = trt.Runtime(logger).deserialize_cuda_engine(bytes(serialized))
        precisions = layer_precisions(engine, trt) if engine is not None else {}
        warning = _precision_warning(precisions, fp16, int8)
        if warning:
            info["warning"] = warning
        info.update({
            "tensorrt": str(trt.__version__),
            "fp16_mode": plan["mode"],
            "precision": "int8" if int8 else "fp16" if fp16 else "fp32",
            "parsed_onnx": source.name,
            "workspace_gb": workspace_gb,
            "profile": profile_info or None,
            "timing_cache": str(timing_cache) if timing_cache else None,
            "layer_precisions": precisions,
        })
    return engine_path


def _check_buildable(onnx_path: Path, workspace_gb: float, int8: bool) -> None:
    """Refuse, before TensorRT spends minutes on it, a missing ONNX, a bad workspace, nodes the
    parser is known to refuse, or an INT8 build from an ONNX without Q/DQ nodes."""
    if not onnx_path.exists():
        raise RtsegError(f"ONNX file not found: {onnx_path} (export it first with rtseg export)")
    if workspace_gb <= 0:
        raise RtsegError(f"workspace must be positive, got {workspace_gb} GB")
    bad = trt_unsupported(onnx_path)
    if bad:
        raise RtsegError(f"TensorRT cannot build {onnx_path}: {'; '.join(bad)}")
    if int8:
        import onnx

        if not is_int8_onnx(onnx.load(str(onnx_path), load_external_data=False)):
            raise RtsegError(f"{onnx_path} has no QuantizeLinear/DequantizeLinear nodes: a TensorRT INT8 engine is built from the "
                             "calibrated QDQ ONNX (rtseg export --int8 writes model-int8.onnx)")


def _parse_network(trt: Any, builder: Any, logger: Any, source: Path, strongly_typed: bool) -> Any:  # pragma: no cover - needs TensorRT
    """The network parsed from ``source``, every parser error reported (never TensorRT's later
    "network must have at least one output")."""
    flags = 0
    if strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse_from_file(str(source))
    if not ok or parser.num_errors:
        errs = _parser_errors(parser) or ["the parser gave no details"]
        raise RtsegError(f"TensorRT {trt.__version__} cannot parse {source}: {' | '.join(errs)}")
    if network.num_outputs == 0:
        raise RtsegError(f"TensorRT parsed {source} but found no network output; the ONNX graph is empty or its outputs are unused")
    return network


def _builder_config(trt: Any, builder: Any, plan: dict[str, Any], workspace_gb: float,
                    max_aux_streams: int | None) -> Any:  # pragma: no cover - needs TensorRT
    """The builder config: workspace, detailed profiling (so the inspector reports precisions),
    aux streams and the precision flags of ``plan``."""
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if hasattr(trt, "ProfilingVerbosity"):
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # so the inspector reports precisions
    if max_aux_streams is not None and hasattr(config, "max_aux_streams"):
        config.max_aux_streams = int(max_aux_streams)
    if "FP16" in plan["flags"] and not getattr(builder, "platform_has_fast_fp16", True):
        raise RtsegError("this GPU has no fast FP16; build with --fp32")
    for flag in plan["flags"]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    return config


def _attach_timing_cache(config: Any, timing_cache: Path | None) -> Any:  # pragma: no cover - needs TensorRT
    """Load the timing cache into ``config`` (a cache from another GPU or TensorRT: start afresh); None without one."""
    if timing_cache is None:
        return None
    timing_cache = Path(timing_cache)
    data = timing_cache.read_bytes() if timing_cache.exists() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        cache = config.create_timing_cache(b"")  # a cache from another GPU/TensorRT: start afresh
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _add_profile(builder: Any, config: Any, network: Any, dynamic: DynamicShapes | None,
                 source: Path) -> dict[str, Any]:  # pragma: no cover - needs TensorRT
    """The optimization profile of ``dynamic`` (min/opt/max per input) added to ``config``; what it
    holds, per input. A network with dynamic axes and no shapes for them is refused."""
    profile_info: dict[str, Any] = {}
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if dynamic:
        profile = builder.create_optimization_profile()
        for t in inputs:
            if t.name not in dynamic:
                if any(int(d) < 0 for d in t.shape):
                    raise RtsegError(f"input {t.name!r} has dynamic axes {tuple(t.shape)} but no min/opt/max shapes were given")
                continue
            mn, opt, mx = (tuple(int(v) for v in s) for s in dynamic[t.name])
            if not (all(a <= b <= c for a, b, c in zip(mn, opt, mx)) and len(mn) == len(t.shape)):
                raise RtsegError(f"bad optimization profile for {t.name!r}: need min <= opt <= max per axis, got {mn}, {opt}, {mx}")
            profile.set_shape(t.name, mn, opt, mx)
            profile_info[t.name] = {"min": list(mn), "opt": list(opt), "max": list(mx)}
        config.add_optimization_profile(profile)
    elif any(int(d) < 0 for t in inputs for d in t.shape):
        raise RtsegError(f"{source} has dynamic input axes; build with --dynamic (and a shape range) or export with a fixed --input")
    return profile_info


def _precision_warning(precisions: dict[str, int], fp16: bool, int8: bool) -> str | None:
    """A warning when the engine inspector reports none of the layers the requested precision asked for."""
    if fp16 and not int8 and precisions and not precisions.get("Half"):
        # TensorRT 11 given an FP32 ONNX silently builds FP32 (deploy.md sec. 1.2); weak typing may
        # also pick FP32 everywhere for a tiny net. Either way the user must know.
        return "FP16 was asked for but the engine inspector reports no FP16 layer"
    if int8 and precisions and not precisions.get("Int8"):
        return "INT8 was asked for but the engine inspector reports no INT8 layer"
    return None

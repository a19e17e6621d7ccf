"""``rtseg doctor``: what this machine can do for rtseg, one row per component, with the fix.

Each row names a component (Python, torch and its CUDA/cuDNN, each GPU, onnx, onnxruntime and its
execution providers, onnxslim, fvcore, TensorRT, cuda-python/pycuda, OpenCV with its window
support, writable video codecs and camera backends, the ``engines/`` folder), its status (``ok``,
``warn``: present but limited, ``missing``), the version found, what it enables, and for anything
not ok the one line that fixes it and the rtseg commands it disables, in the spirit of
``yolo checks`` (Ultralytics) but saying what each gap costs in rtseg terms.

Nothing here needs torch: every optional import is tried, and a failure (missing package, or a
broken install raising OSError on its shared libraries) becomes a row. So the doctor runs on a
deploy machine that has only TensorRT, a CUDA memory package and OpenCV. The *core* is what any
rtseg run needs: Python >= 3.10, numpy, typer and rich, and at least one backend that can run a
model (torch, onnxruntime, or TensorRT with cuda-python/pycuda); :attr:`DoctorReport.ok` is False
(and ``rtseg doctor`` exits 1) only when the core fails. Device detection and the codec probe are
the ones the profiler and the demo use (:mod:`rtseg.backends.device`, :mod:`rtseg.video.writer`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from rtseg.version import __version__
from rtseg.backends.device import cpu_model, detect_device, gpu_label, nvidia_smi_gpus, sm_arch

STATUSES = ("ok", "warn", "missing")

#: rtseg commands (or command options) each component is needed for; shown when it is not ok.
DISABLES: dict[str, list[str]] = {
    "torch": ["profile-ops", "lut validate", "search", "train", "eval", "export", "quickstart", "arch show",
              "bench/demo of checkpoints, arch JSONs and built-in archs"],
    "gpu": ["--device cuda (profile-ops, lut validate, search, train, bench, demo)", "profile-ops --precision fp16",
            "export --trt", "profile-ops --backend tensorrt"],
    "numpy": ["every command"],
    "cli": ["every command (the CLI itself)"],
    "onnx": ["export", "profile-ops --backend onnxruntime/tensorrt", "bench/demo --backend onnxruntime/tensorrt of a checkpoint or arch"],
    "onnxruntime": ["profile-ops --backend onnxruntime", "export (parity gates)", "bench/demo of .onnx files", "lut validate of onnxruntime LUTs"],
    "onnxruntime-cuda": ["profile-ops/bench/demo --backend onnxruntime --device cuda"],
    "onnxslim": ["export's graph simplification (the ONNX is kept unsimplified, with a note)"],
    "onnxscript": ["export's fallback exporter (torch.onnx dynamo), used only when the TorchScript exporter fails"],
    "fvcore": ["arch show (FLOPs)", "search (the FLOPs budget --flops-g)", "quickstart"],
    "matplotlib": ["lut validate --plot", "search/train plots (trajectories.png, curve.png)", "quickstart report figures"],
    "tensorrt": ["export --trt", "profile-ops --backend tensorrt", "bench/demo of .engine files", "lut validate of tensorrt LUTs"],
    "cuda-memory": ["running .engine files (bench/demo --backend tensorrt, profile-ops --backend tensorrt)"],
    "opencv": ["demo", "quickstart (demo stage)"],
    "opencv-window": ["demo --show"],
    "codecs": ["demo --save"],
    "cameras": ["demo --source 0 (webcam)"],
}

TORCH_FIX = ("pip install torch==2.13.0 (CPU), or on a GPU machine the CUDA build for its driver "
             "(pytorch.org/get-started/locally)")
TRT_FIX = "pip install 'rtseg[trt]' on the GPU machine (tensorrt>=10 and cuda-python)"


@dataclass
class CheckRow:
    """One component: ``status`` is ok, warn (present but limited) or missing."""

    component: str
    status: str
    version: str | None = None
    detail: str = ""
    enables: str = ""
    fix: str | None = None
    disables: list[str] = field(default_factory=list)
    core: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    rows: list[CheckRow]
    ok: bool  # the core works (see the module docstring)
    device: str  # the best device here for rtseg's timings: cuda:0 when torch sees a GPU, else cpu
    machine: dict[str, Any] = field(default_factory=dict)

    def row(self, component: str) -> CheckRow | None:
        return next((r for r in self.rows if r.component == component), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "rtseg.doctor", "schema_version": 1, "ok": self.ok, "device": self.device, "machine": self.machine,
                "rows": [r.to_dict() for r in self.rows],
                "counts": {s: sum(r.status == s for r in self.rows) for s in STATUSES}}


# -- helpers ---------------------------------------------------------------------------------------
def _dist_version(*names: str) -> str | None:
    """The installed version of the first distribution found among ``names`` (no import)."""
    for n in names:
        try:
            return importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _try_import(name: str) -> tuple[Any, str | None]:
    """``(module, None)`` or ``(None, one-line reason)``: a missing package, or a broken install
    (shared libraries that fail to load raise OSError or similar, not ImportError)."""
    try:
        return importlib.import_module(name), None
    except Exception as exc:  # ImportError, OSError from a broken CUDA/TensorRT install, ...
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"{type(exc).__name__}: {text}"[:200]


def _version_of(mod: Any, *dists: str) -> str | None:
    return str(getattr(mod, "__version__", "") or "") or _dist_version(*dists)


def _missing(component: str, key: str, reason: str | None, fix: str, enables: str, core: bool = False) -> CheckRow:
    not_installed = reason is None or reason.startswith("ModuleNotFoundError")
    return CheckRow(component, "missing", None, "not installed" if not_installed else f"fails to import ({reason})",
                    enables, fix, DISABLES[key], core)


# -- the checks ------------------------------------------------------------------------------------
def check_python() -> CheckRow:
    v = platform.python_version()
    ok = sys.version_info >= (3, 10)
    return CheckRow("Python", "ok" if ok else "missing", v, sys.executable,
                    "everything (rtseg needs Python >= 3.10)", None if ok else "install Python 3.10 or newer",
                    [] if ok else DISABLES["cli"], core=True)


def check_numpy() -> CheckRow:
    mod, why = _try_import("numpy")
    if mod is None:
        return _missing("numpy", "numpy", why, "pip install numpy", "arrays for every backend", core=True)
    return CheckRow("numpy", "ok", mod.__version__, "", "arrays for every backend", core=True)


def check_cli() -> CheckRow:
    found, lacking = [], []
    for name in ("typer", "rich"):
        mod, _ = _try_import(name)
        (found if mod is not None else lacking).append(f"{name} {_version_of(mod, name)}" if mod is not None else name)
    if lacking:
        return CheckRow("typer + rich", "missing", ", ".join(found) or None, f"missing: {', '.join(lacking)}", "the command line",
                        f"pip install {' '.join(lacking)}", DISABLES["cli"], core=True)
    return CheckRow("typer + rich", "ok", ", ".join(found), "", "the command line, tables and progress bars", core=True)


def check_torch(smi_gpus: list[dict[str, Any]] | None) -> tuple[CheckRow, Any]:
    """The torch row, and torch itself (None when it does not import)."""
    torch, why = _try_import("torch")
    enables = "operators, archs, profiling, search, training, export, the torch runner"
    if torch is None:
        return _missing("torch", "torch", why, TORCH_FIX, enables), None
    cuda_build = torch.version.cuda
    parts = [f"CUDA build {cuda_build}" if cuda_build else "CPU build"]
    try:
        cudnn = torch.backends.cudnn.version() if cuda_build and torch.backends.cudnn.is_available() else None
    except Exception:  # pragma: no cover - cuDNN library that fails to load
        cudnn = None
    if cudnn:
        parts.append(f"cuDNN {cudnn}")
    sees = bool(smi_gpus)
    try:
        available = bool(cuda_build) and torch.cuda.is_available()
    except Exception:  # pragma: no cover - a driver error while probing
        available = False
    if available:
        parts.append(f"{torch.cuda.device_count()} CUDA device(s)")
        return CheckRow("torch", "ok", torch.__version__, ", ".join(parts), enables + ", on the GPU"), torch
    if sees and not cuda_build:
        return CheckRow("torch", "warn", torch.__version__, ", ".join(parts) + f"; the driver sees {len(smi_gpus or [])} GPU(s) torch cannot use",
                        enables + " (CPU only)",
                        "install the CUDA build of torch for this driver (pytorch.org/get-started/locally) to time and train on the GPU",
                        DISABLES["gpu"]), torch
    if sees:
        return CheckRow("torch", "warn", torch.__version__, ", ".join(parts) + "; torch.cuda.is_available() is False although the driver sees a GPU",
                        enables + " (CPU only)",
                        "check that the driver supports this torch's CUDA version and that CUDA_VISIBLE_DEVICES is not empty",
                        DISABLES["gpu"]), torch
    return CheckRow("torch", "ok", torch.__version__, ", ".join(parts), enables), torch


def check_gpus(torch: Any, smi_gpus: list[dict[str, Any]] | None) -> list[CheckRow]:
    """One row per GPU: from torch when it has CUDA (the profiler's own description), else nvidia-smi."""
    rows = []
    torch_cuda = False
    if torch is not None:
        try:
            torch_cuda = bool(torch.version.cuda) and torch.cuda.is_available()
        except Exception:  # pragma: no cover
            torch_cuda = False
    if torch_cuda:
        for i in range(torch.cuda.device_count()):
            try:
                d = detect_device(f"cuda:{i}").to_dict()
            except Exception as exc:  # pragma: no cover - a device that fails to answer
                rows.append(CheckRow(f"GPU {i}", "warn", None, f"torch cannot describe it: {exc}", "GPU timing, fp16, TensorRT"))
                continue
            rows.append(CheckRow(
                f"GPU {i}", "ok", sm_arch(d.get("compute_capability")),
                f"{d['name']}, compute capability {d.get('compute_capability')}, {d.get('memory_gb')} GB, driver {d.get('driver') or '?'}, "
                f"CUDA {d.get('cuda')}, cuDNN {d.get('cudnn')}; LUT folder engines/{d.get('slug')}/",
                "--device cuda, fp16 profiling, CUDA graphs, TensorRT engines"))
        return rows
    if smi_gpus:
        for g in smi_gpus:
            cc = g.get("compute_capability")
            rows.append(CheckRow(
                f"GPU {g.get('index')}", "warn", sm_arch(cc),
                f"{g.get('name')}, compute capability {cc or '?'}, {round((g.get('memory_mib') or 0) / 1024, 1)} GB, driver {g.get('driver')} "
                "(seen by nvidia-smi; torch cannot use it)",
                "--device cuda, fp16 profiling, CUDA graphs, TensorRT engines",
                "see the torch row; TensorRT engines can still run through cuda-python/pycuda", DISABLES["gpu"][:2]))
        return rows
    return [CheckRow("GPU", "missing", None, "no NVIDIA GPU visible (nvidia-smi absent or sees none; torch sees no CUDA device)",
                     "--device cuda, fp16 profiling, CUDA graphs, TensorRT engines",
                     "run on a machine with an NVIDIA GPU and its driver; on this machine use --device cpu", DISABLES["gpu"])]


def check_onnx() -> CheckRow:
    mod, why = _try_import("onnx")
    enables = "ONNX export, one-operator graphs for the onnxruntime/tensorrt profilers"
    if mod is None:
        return _missing("onnx", "onnx", why, "pip install onnx", enables)
    return CheckRow("onnx", "ok", mod.__version__, f"opset up to {getattr(mod.defs, 'onnx_opset_version', lambda: '?')()}", enables)


def check_onnxruntime(gpu_present: bool) -> CheckRow:
    mod, why = _try_import("onnxruntime")
    enables = "the onnxruntime runner and profiler, export parity gates"
    if mod is None:
        return _missing("onnxruntime", "onnxruntime", why, "pip install onnxruntime (onnxruntime-gpu on a GPU machine)", enables)
    try:
        providers = list(mod.get_available_providers())
    except Exception as exc:  # pragma: no cover
        providers = []
        why = str(exc)
    detail = "providers: " + (", ".join(providers) or "none")
    if gpu_present and "CUDAExecutionProvider" not in providers:
        return CheckRow("onnxruntime", "warn", mod.__version__, detail + " (no CUDA provider on a GPU machine)", enables + " (CPU only)",
                        "pip uninstall -y onnxruntime && pip install onnxruntime-gpu", DISABLES["onnxruntime-cuda"])
    return CheckRow("onnxruntime", "ok", mod.__version__, detail, enables)


def check_simple(component: str, key: str, module: str, dists: tuple[str, ...], fix: str, enables: str) -> CheckRow:
    mod, why = _try_import(module)
    if mod is None:
        return _missing(component, key, why, fix, enables)
    return CheckRow(component, "ok", _version_of(mod, *dists), "", enables)


def check_tensorrt(gpu_present: bool) -> CheckRow:
    """Import, version era (rtseg targets 10.x and 11.x), and on a GPU a builder and a runtime."""
    mod, why = _try_import("tensorrt")
    enables = "export --trt (FP16 engines), the tensorrt profiler and runner"
    if mod is None:
        return _missing("TensorRT", "tensorrt", why, TRT_FIX, enables)
    from rtseg.backends.tensorrt_build import trt_major

    version = str(mod.__version__)
    major = trt_major(mod)
    era = f"TensorRT {major}.x" + (" (strongly typed FP16 only)" if major >= 11 else " (FP16 builder flag or strongly typed)")
    if major not in (10, 11):
        return CheckRow("TensorRT", "warn", version, f"{era}: rtseg is written for TensorRT 10 and 11", enables,
                        "pip install 'tensorrt>=10,<12'", DISABLES["tensorrt"])
    if not gpu_present:
        return CheckRow("TensorRT", "warn", version, f"{era}; no GPU here, so no builder or runtime could be created", enables,
                        "run on the GPU machine", DISABLES["tensorrt"])
    made = []
    try:
        logger = mod.Logger(mod.Logger.ERROR)
        builder = mod.Builder(logger)
        made.append("builder" + (" (fast FP16)" if getattr(builder, "platform_has_fast_fp16", False) else ""))
        del builder
        runtime = mod.Runtime(logger)
        made.append("runtime")
        del runtime
    except Exception as exc:
        return CheckRow("TensorRT", "warn", version, f"{era}; {' and '.join(made) or 'nothing'} created, then: {type(exc).__name__}: {exc}"[:300],
                        enables, "check the CUDA driver and that tensorrt matches its CUDA version (pip install 'rtseg[trt]')",
                        DISABLES["tensorrt"])
    return CheckRow("TensorRT", "ok", version, f"{era}; {' and '.join(made)} created", enables)


def check_cuda_memory(gpu_present: bool) -> CheckRow:
    """cuda-python or pycuda: device memory for engines without torch (:mod:`rtseg.backends.cuda_memory`)."""
    from rtseg.backends.cuda_memory import available_backends

    avail = available_backends()
    versions = {"cuda-python": _dist_version("cuda-python", "cuda-bindings"), "pycuda": _dist_version("pycuda")}
    enables = "device memory and streams for TensorRT engines, with no torch needed"
    if not avail:
        return CheckRow("cuda-python / pycuda", "missing", None, "neither is installed", enables,
                        "pip install cuda-python (or pip install 'rtseg[trt]')", DISABLES["cuda-memory"])
    found = ", ".join(f"{a} {versions.get(a) or '?'}" for a in avail)
    if not gpu_present:
        return CheckRow("cuda-python / pycuda", "ok", found, "installed (preferred first); not opened: no GPU here", enables)
    from rtseg.backends.cuda_memory import open_cuda_memory

    try:
        mem = open_cuda_memory(avail[0])
        props = mem.device_properties()
        mem.close()
    except Exception as exc:
        return CheckRow("cuda-python / pycuda", "warn", found, f"{avail[0]} could not open the GPU: {exc}"[:300], enables,
                        "check the CUDA driver; RTSEG_CUDA_MEMORY=pycuda or cuda-python picks the other package", DISABLES["cuda-memory"])
    return CheckRow("cuda-python / pycuda", "ok", found, f"{avail[0]} opened {gpu_label(props.get('name'), props.get('compute_capability'))}",
                    enables)


def check_opencv() -> list[CheckRow]:
    """OpenCV itself (which wheel), a window for --show, the codecs it can write, its camera backends."""
    cv2, why = _try_import("cv2")
    if cv2 is None:
        return [_missing("OpenCV", "opencv", why, "pip install opencv-python-headless (servers) or opencv-python (a desktop)",
                         "video files, webcams and the overlay of the demo")]
    wheel = next((d for d in ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
                  if _dist_version(d)), "OpenCV")
    try:
        from rtseg.video.cvutil import gui_unavailable_reason, opencv_gui_backend
        from rtseg.video.writer import CODECS, probe_codec
    except Exception as exc:  # rtseg.video itself failed to import (a dependency of the demo pipeline)
        why = f"{type(exc).__name__}: {exc}"
        return [CheckRow("OpenCV", "warn", cv2.__version__, f"{wheel}; rtseg.video does not import ({why[:150]}), so the window, "
                         "codec and camera checks were skipped", "video files, webcams and the demo overlay",
                         "install what the error names (see the rows above)", DISABLES["opencv"])]
    gui = opencv_gui_backend()
    rows = [CheckRow("OpenCV", "ok", cv2.__version__, f"{wheel}, GUI: {gui or 'none (headless)'}", "video files, webcams and the demo overlay")]
    reason = gui_unavailable_reason()
    if reason:
        fix = ("pip uninstall -y opencv-python-headless && pip install opencv-python (a desktop with a display)" if gui is None
               else "run where a display is available (DISPLAY/WAYLAND_DISPLAY), or use --no-show --save out.mp4")
        rows.append(CheckRow("OpenCV window", "missing", None, reason.split(";")[0], "demo --show", fix, DISABLES["opencv-window"]))
    else:
        rows.append(CheckRow("OpenCV window", "ok", gui, "a window can open here", "demo --show"))
    try:
        writable = {s: probe_codec(s) for s in CODECS}
    except Exception as exc:  # pragma: no cover - a broken FFmpeg inside OpenCV
        writable, why = {}, str(exc)
    ok = {s: c for s, c in writable.items() if c}
    detail = ", ".join(f"{s} {c}" for s, c in ok.items()) or "none"
    if not ok:
        rows.append(CheckRow("video codecs", "missing", None, "this OpenCV cannot write and read back any video", "demo --save",
                             "pip install opencv-python-headless (its FFmpeg writes mp4v and MJPG)", DISABLES["codecs"]))
    else:
        browser = any(c == "avc1" for c in ok.values())
        rows.append(CheckRow("video codecs", "ok", None, detail + ("" if browser else " (no H.264: .mp4 files play in VLC/ffplay, not browsers)"),
                             "demo --save (written, then read back)"))
    try:
        cams = [cv2.videoio_registry.getBackendName(b) for b in cv2.videoio_registry.getCameraBackends()]
    except Exception:  # pragma: no cover - very old OpenCV
        cams = []
    devices = sorted(str(p) for p in Path("/dev").glob("video*")) if sys.platform.startswith("linux") else []
    if not cams:
        rows.append(CheckRow("camera backends", "missing", None, "OpenCV has no camera backend", "demo --source 0",
                             "pip install opencv-python-headless (V4L2 on Linux)", DISABLES["cameras"]))
    else:
        where = f"; devices: {', '.join(devices)}" if devices else ("; no /dev/video* device here" if sys.platform.startswith("linux") else "")
        rows.append(CheckRow("camera backends", "ok", None, ", ".join(cams) + where, "demo --source 0 (webcam)"))
    return rows


def check_engines(root: str | Path = "engines", device_slugs: list[str] | None = None) -> CheckRow:
    """What the default output folder holds, per device folder; this machine's folders are marked."""
    root = Path(root)
    enables = "LUTs (profile-ops) and exported models (export) kept per device"
    if not root.is_dir():
        return CheckRow("engines/ folder", "ok", None, f"{root}/ does not exist yet in {Path.cwd()}: rtseg profile-ops (LUTs) and "
                        "rtseg export (models) create it", enables)
    mine = set(device_slugs or [])
    parts = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        luts = sorted(p.name for p in d.glob("lut-*.json"))
        engines = [p for p in d.rglob("*") if p.suffix in (".engine", ".plan")]
        onnx = list(d.rglob("*.onnx"))
        here = " (this machine)" if d.name in mine else ""
        parts.append(f"{d.name}{here}: {len(luts)} LUT(s){' ' + ', '.join(luts[:3]) if luts else ''}"
                     f"{' ...' if len(luts) > 3 else ''}, {len(engines)} engine(s), {len(onnx)} ONNX")
    if not parts:
        return CheckRow("engines/ folder", "ok", None, f"{root}/ is empty: rtseg profile-ops writes the first LUT here", enables)
    return CheckRow("engines/ folder", "ok", None, "; ".join(parts), enables)


def _guarded(component: str, check: Callable[[], list[CheckRow]]) -> list[CheckRow]:
    """A check that raised (a half-installed package failing deep inside) becomes a warn row, so
    one broken part never hides the others."""
    try:
        return check()
    except Exception as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return [CheckRow(component, "warn", None, f"the check itself failed: {type(exc).__name__}: {text}"[:300], "",
                         "reinstall the package named in the error", [])]


def collect(engines_root: str | Path = "engines") -> DoctorReport:
    """Every row, in the order a user reads them: interpreter, compute, model formats, TensorRT, video, files."""
    smi = nvidia_smi_gpus() or []
    rows = [check_python(), check_numpy(), check_cli()]
    torch_row, torch = check_torch(smi)
    rows.append(torch_row)
    gpu_rows = _guarded("GPU", lambda: check_gpus(torch, smi))
    rows += gpu_rows
    gpu_present = any(r.component.startswith("GPU ") for r in gpu_rows)
    rows += _guarded("onnx", lambda: [check_onnx()])
    rows += _guarded("onnxruntime", lambda: [check_onnxruntime(gpu_present)])
    rows += _guarded("onnxslim", lambda: [check_simple("onnxslim", "onnxslim", "onnxslim", ("onnxslim",), "pip install onnxslim",
                                                       "ONNX graph simplification in export")])
    rows += _guarded("onnxscript", lambda: [check_simple("onnxscript", "onnxscript", "onnxscript", ("onnxscript",), "pip install onnxscript",
                                                         "the dynamo exporter, export's fallback")])
    rows += _guarded("fvcore", lambda: [check_simple("fvcore", "fvcore", "fvcore", ("fvcore",), "pip install fvcore",
                                                     "FLOPs (multiply-adds) of archs and operators")])
    rows += _guarded("matplotlib", lambda: [check_simple("matplotlib", "matplotlib", "matplotlib", ("matplotlib",), "pip install matplotlib",
                                                         "plots (LUT scatter, search, training)")])
    rows += _guarded("TensorRT", lambda: [check_tensorrt(gpu_present)])
    rows += _guarded("cuda-python / pycuda", lambda: [check_cuda_memory(gpu_present)])
    rows += _guarded("OpenCV", check_opencv)
    slugs = []
    try:
        from rtseg.backends.device import device_slug

        slugs.append(device_slug("cpu"))
        if torch is not None and gpu_present and torch_row.status == "ok":
            slugs.append(device_slug("cuda"))
    except Exception:  # pragma: no cover - a device that fails to describe itself
        pass
    rows += _guarded("engines/ folder", lambda: [check_engines(engines_root, slugs)])

    by = {r.component: r for r in rows}
    backends = [by.get("torch"), by.get("onnxruntime")]
    trt_ok = by.get("TensorRT") is not None and by["TensorRT"].status == "ok" and by["cuda-python / pycuda"].status == "ok"
    can_run = any(r is not None and r.status in ("ok", "warn") for r in backends) or trt_ok
    core_ok = all(r.status == "ok" for r in rows if r.core) and can_run
    cuda_ok = torch is not None and torch_row.status == "ok" and gpu_present
    machine = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "gpus": len([r for r in gpu_rows if r.component.startswith("GPU ")]), "runnable_backend": can_run}
    try:
        machine["rtseg"] = __version__
    except Exception:  # pragma: no cover
        pass
    return DoctorReport(rows, core_ok, "cuda:0" if cuda_ok else "cpu", machine)


__all__ = ["CheckRow", "DISABLES", "DoctorReport", "STATUSES", "collect"]

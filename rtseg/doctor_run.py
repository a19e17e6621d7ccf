"""``rtseg doctor --run``: a short end-to-end check of every rtseg path on the best device here.

Steps, each timed and recorded; a step that raises is a ``failed`` row with its error and the run
goes on to the next (a later step that needs its output says so as its own error):

1. ``profile``: :func:`rtseg.latency.profile.profile_ops` on a bounded sample of the ``ssr``
   space: the operators of a few seeded random archs (plus the skeleton), fp16 on CUDA, fp32 on
   one CPU thread. The whole space's profiling time is extrapolated from it (labelled so).
2. ``lut validate``: :func:`rtseg.latency.validate.validate_lut` on exactly those archs.
3. ``export``: ``baseline1`` to FP32 and FP16 ONNX with the export's parity gates, and on a GPU the
   same ONNX files run on onnxruntime's CUDA provider against torch on the GPU.
4. ``export --trt``: the engine build and its parity gate, when TensorRT imports and a GPU is here.
5. ``bench``: ``baseline1`` on every backend that can run here: torch eager, torch with CUDA
   graphs (GPU), onnxruntime on the CPU provider and on the CUDA provider (GPU), the TensorRT engine.
6. ``demo``: a short synthetic street video is rendered to a file, then segmented by the best
   model exported above (engine, else ONNX, else torch) through the demo pipeline, saved and read back.

Budget: ``minutes`` (8 by default, what a GPU run is sized for) scales the repeats and frame
counts; a step that would start after the budget is spent is recorded as ``skipped`` with that
reason. ``doctor.json`` and ``doctor.md`` are rewritten atomically after every step, so an
interrupted run keeps what it measured. The checks of :func:`rtseg.doctor.collect` head both.
"""

from __future__ import annotations

import datetime as _dt
import random
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from rtseg.doctor import collect
from rtseg.errors import RtsegError
from rtseg.io import atomic_write_json, atomic_write_text, parse_hw
from rtseg.rundir import claim_run_dir
from rtseg.backends.device import device_kind, parse_device

NUM_CLASSES = 19  # Cityscapes: the LUT default and baseline1's class count
GPU_HW = (512, 1024)
CPU_HW = (64, 128)
DEFAULT_MINUTES = 8.0


@dataclass
class RunConfig:
    out: Path = Path("rtseg-out/doctor")
    minutes: float = DEFAULT_MINUTES
    device: str | None = None  # None: cuda:0 when torch sees a GPU, else cpu
    input_hw: tuple[int, int] | None = None  # None: 512x1024 on a GPU, 64x128 on a CPU
    archs: int | None = None  # archs whose operators are profiled and validated (None: 4 on a GPU, 2 on a CPU)
    demo_frames: int | None = None
    seed: int = 0
    overwrite: bool = False  # write into a folder that holds something other than an earlier doctor run


@dataclass
class StepResult:
    name: str
    what: str
    status: str  # ok, failed, skipped
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    where: str | None = None  # file:line of the innermost rtseg frame of a failure

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    """Sizes of every step for one device and budget."""

    device: str
    cuda: bool
    precision: str
    input_hw: tuple[int, int]
    threads: int | None
    archs: int
    profile_warmup: int
    profile_repeats: int
    profile_max_entry_s: float
    validate_warmup: int
    validate_repeats: int
    validate_rounds: int
    bench_warmup: int
    bench_iters: int
    demo_frames: int
    clock: str = "wall"  # the profile's and validation's clock: one thread's CPU time on a CPU (see profile-ops --clock)


def make_plan(cfg: RunConfig, cuda_available: bool) -> Plan:
    """Sizes for the device and the budget: the defaults fit about 8 minutes on a GPU at 512x1024
    and a minute or two on a small CPU at 64x128; ``minutes`` scales repeats and frames from there."""
    device = parse_device(cfg.device) if cfg.device else ("cuda:0" if cuda_available else "cpu")
    cuda = device_kind(device) == "cuda"
    if cuda and not cuda_available:
        raise RtsegError(f"--device {cfg.device} asked for a GPU but torch sees no CUDA device here; use --device cpu")
    if cfg.minutes <= 0:
        raise RtsegError(f"--minutes must be positive, got {cfg.minutes}")
    hw = parse_hw(cfg.input_hw or (GPU_HW if cuda else CPU_HW), 16)
    f = min(2.0, max(0.25, cfg.minutes / DEFAULT_MINUTES))

    def n(base: float, floor: int = 1) -> int:
        return max(floor, int(round(base * f)))

    if cuda:
        return Plan(device, True, "fp16", hw, None, cfg.archs or 4, 5, n(25, 5), 1.0, 10, n(40, 10), 5, n(20, 5), n(200, 20),
                    cfg.demo_frames or n(120, 20))
    # one thread and its CPU time: a CPU shared with other work then times the operators and the
    # networks alike (docs/luts.md, "Measuring on a shared CPU")
    return Plan(device, False, "fp32", hw, 1, cfg.archs or 2, 2, n(5, 3), 0.5, 3, n(16, 8), 2, n(5, 3), n(20, 10),
                cfg.demo_frames or n(30, 8), clock="thread")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _error_text(exc: BaseException) -> tuple[str, str | None]:
    """One line for the report, and where in rtseg it was raised (the innermost rtseg frame)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    where = None
    for fr in traceback.extract_tb(exc.__traceback__):
        if "/rtseg/" in fr.filename.replace("\\", "/"):
            where = f"{fr.filename.replace(chr(92), '/').split('/rtseg/')[-1]}:{fr.lineno}"
    return f"{type(exc).__name__}: {text}"[:500], (f"rtseg/{where}" if where else None)


def run_doctor(cfg: RunConfig, say: Callable[[str], None] = print, checks: Any = None) -> dict[str, Any]:
    """Run every step into ``cfg.out`` (see the module docstring); returns what doctor.json holds.

    ``checks`` is a :class:`rtseg.doctor.DoctorReport` already collected (collected here if None)."""
    t_start = time.monotonic()
    deadline = t_start + cfg.minutes * 60.0
    out = Path(cfg.out)
    # a doctor run replaces the previous one in its folder, but never a training run, a search or the user's own files
    folder = claim_run_dir(out, "doctor", {"minutes": cfg.minutes, "seed": cfg.seed}, overwrite=cfg.overwrite, replaceable=True)
    try:
        state = _run_doctor(cfg, out, say, checks, t_start, deadline)
        folder.finish()
        return state
    finally:
        folder.release()


def _run_doctor(cfg: RunConfig, out: Path, say: Callable[[str], None], checks: Any, t_start: float, deadline: float) -> dict[str, Any]:
    checks = checks if checks is not None else collect()
    ok_rows = {r.component: r.status for r in checks.rows}
    torch_ok = ok_rows.get("torch") in ("ok", "warn")
    cuda_available = device_kind(checks.device) == "cuda"
    plan = make_plan(cfg, cuda_available)
    h, w = plan.input_hw
    state: dict[str, Any] = {
        "format": "rtseg.doctor-run", "schema_version": 1, "started": _now(),
        "config": {"out": str(out), "minutes": cfg.minutes, "seed": cfg.seed},
        "plan": asdict(plan), "checks": checks.to_dict(), "steps": [], "figures": {},
    }
    ctx: dict[str, Any] = {}  # what later steps use from earlier ones

    def write() -> None:
        state["elapsed_s"] = round(time.monotonic() - t_start, 1)
        atomic_write_json(out / "doctor.json", state)
        atomic_write_text(out / "doctor.md", render_markdown(state))

    def step(name: str, what: str, fn: Callable[[], dict[str, Any]], needs: str | None = None) -> StepResult:
        """Run ``fn`` as one recorded row; ``needs`` is a reason to skip it (a missing part)."""
        if needs is None and time.monotonic() > deadline:
            needs = f"the time budget (--minutes {cfg.minutes:g}) was spent before this step"
        if needs is not None:
            res = StepResult(name, what, "skipped", 0.0, error=needs)
            say(f"[{name}] skipped: {needs}")
        else:
            say(f"[{name}] {what} ...")
            t0 = time.monotonic()
            try:
                res = StepResult(name, what, "ok", 0.0, fn())
            except KeyboardInterrupt:
                state["steps"].append(StepResult(name, what, "failed", round(time.monotonic() - t0, 2), error="interrupted (Ctrl-C)").to_dict())
                write()
                raise
            except Exception as exc:  # every failure is a row; the run goes on
                err, where = _error_text(exc)
                res = StepResult(name, what, "failed", 0.0, error=err, where=where)
                reports = getattr(exc, "reports", None)  # a failed parity gate carries its figures
                if reports:
                    res.summary["parity"] = [r.to_dict() for r in reports]
            res.seconds = round(time.monotonic() - t0, 2)
            say(f"[{name}] {res.status} in {res.seconds:.1f} s" + (f": {res.error}" if res.error else ""))
        state["steps"].append(res.to_dict())
        write()
        return res

    no_torch = None if torch_ok else "torch does not import here (see the torch row)"
    write()
    step("profile", f"profile-ops on {plan.archs} random ssr archs' operators at {h}x{w} (torch, {plan.device}, {plan.precision})",
         lambda: _profile(plan, cfg, out, ctx), needs=no_torch)
    step("lut validate", f"lut validate on those {plan.archs} archs, end to end",
         lambda: _validate(plan, cfg, ctx), needs=no_torch or (None if ctx.get("lut") else "no LUT (the profile step did not finish)"))
    step("export", f"export baseline1 to FP32 and FP16 ONNX at {h}x{w} with parity",
         lambda: _export(plan, out, ctx), needs=no_torch or (None if ok_rows.get("onnxruntime") in ("ok", "warn") else "onnxruntime does not import"))
    trt_why = None
    if ok_rows.get("TensorRT") != "ok":
        trt_why = "TensorRT is not usable here (see the TensorRT row)"
    elif not plan.cuda:
        trt_why = "TensorRT builds for a GPU; this run is on the CPU"
    step("export --trt", "TensorRT FP16 engine of baseline1 and its parity gate", lambda: _export_trt(plan, out, ctx),
         needs=trt_why or no_torch)
    for backend, label, why in _bench_rows(plan, ok_rows, ctx, torch_ok):
        step(f"bench {label}", f"bench baseline1 at {h}x{w} on {label}", lambda b=backend: _bench(plan, b, ctx), needs=why)
    step("demo", f"demo on a rendered {plan.demo_frames}-frame video file", lambda: _demo(plan, cfg, out, ctx),
         needs=None if ok_rows.get("OpenCV") == "ok" else "OpenCV does not import (see the OpenCV row)")
    state["finished"] = _now()
    state["failed"] = [s["name"] for s in state["steps"] if s["status"] == "failed"]
    write()
    return state


# -- steps -----------------------------------------------------------------------------------------
def sample_archs(n: int, seed: int) -> list[Any]:
    """The seeded random ``ssr`` archs whose operators the doctor profiles and then validates."""
    from rtseg.spaces import get_space

    space = get_space("ssr")
    rng = random.Random(seed)
    archs = []
    for i in range(max(2, n)):
        a = space.sample(rng, num_classes=NUM_CLASSES, head="classifier")
        a.name = f"ssr-doctor-{seed}-{i}"
        archs.append(a)
    return archs


def space_entries(h: int, w: int) -> int:
    """How many LUT entries a full ``profile-ops --space ssr`` measures at ``h x w`` (what the
    profiler enumerates, skeleton operators included)."""
    from rtseg.latency.entries import skeleton_plan
    from rtseg.spaces import get_space

    space = get_space("ssr")
    keys = {s.key for s in space.candidate_signatures(h, w, NUM_CLASSES, heads=tuple(space.heads))}
    for p in skeleton_plan(space, h, w, NUM_CLASSES, list(space.heads)).values():
        keys.update(s.key for s in p["fixed"])
    return len(keys)


def _profile(plan: Plan, cfg: RunConfig, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    from rtseg.latency.lut import load_lut
    from rtseg.latency.profile import profile_ops
    from rtseg.spaces import get_space

    h, w = plan.input_hw
    archs = sample_archs(plan.archs, cfg.seed)
    space = get_space("ssr")
    sigs, seen = [], set()
    for a in archs:
        for s in space.signatures(a, h, w):
            if s.key not in seen:
                seen.add(s.key)
                sigs.append(s)
    ctx["archs"] = archs
    t0 = time.monotonic()
    path = profile_ops("ssr", h, w, backend="torch", device=plan.device, precision=plan.precision, warmup=plan.profile_warmup,
                       repeats=plan.profile_repeats, max_repeats=4 * plan.profile_repeats, out_path=out / "lut.json",
                       num_classes=NUM_CLASSES, progress=False, threads=plan.threads, heads=["classifier"], signatures=sigs,
                       force=True, max_entry_s=plan.profile_max_entry_s, calibration_archs=0, clock=plan.clock)
    seconds = time.monotonic() - t0
    ctx["lut"] = path
    lut = load_lut(path)
    total = space_entries(h, w)
    per = seconds / max(1, len(lut.entries))
    return {"lut": path.name, "entries": len(lut.entries), "seconds": round(seconds, 1), "s_per_entry": round(per, 3),
            "constant_ms": lut.constant_ms, "space_entries": total,
            "whole_space_s_extrapolated": round(per * total, 0),
            "note": "whole_space_s_extrapolated = s_per_entry x space_entries (recheck included, calibration not): an extrapolation, not a measurement"}


def _validate(plan: Plan, cfg: RunConfig, ctx: dict[str, Any]) -> dict[str, Any]:
    from rtseg.latency.validate import validate_lut

    res = validate_lut(ctx["lut"], archs=ctx["archs"], seed=cfg.seed, warmup=plan.validate_warmup, repeats=plan.validate_repeats,
                       rounds=plan.validate_rounds, progress=False)
    return {"samples": res.samples, "mape": res.mape, "within_10pct": res.within_10pct, "kendall_tau": res.kendall_tau,
            "mean_error": res.mean_error, "speed_corrected": res.speed_corrected, "uncorrected": res.uncorrected,
            "rows": [{"name": r.name, "predicted_ms": r.predicted_ms, "measured_ms": r.measured_ms, "error": r.error} for r in res.rows]}


def _export(plan: Plan, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions

    res = export_model("baseline1", ExportOptions(input_hw=plan.input_hw, fp16=True, trt=False, out_dir=out / "export",
                                                  device=plan.device if plan.cuda else "cuda"))
    ctx["onnx"], ctx["onnx_fp16"] = res.onnx, res.onnx_fp16
    d = res.to_dict()
    summary = {"onnx": _rel(res.onnx, out), "onnx_fp16": _rel(res.onnx_fp16, out), "exporter": d["exporter"], "opset": d["opset"],
               "parity": d["parity"], "parity_on": "cpu (onnxruntime CPU provider against torch on the CPU)", "notes": d["notes"],
               "stage_seconds": d["stage_seconds"]}
    if plan.cuda:
        summary["parity_device"] = _parity_on_device(plan, res)
        failed = [p["name"] for p in summary["parity_device"] if not p.get("passed")]
        if failed:
            from rtseg.export.parity import ParityGateError, ParityReport

            reports = [ParityReport(**p) for p in d["parity"] + summary["parity_device"] if "error" not in p]
            raise ParityGateError(f"parity on {plan.device} failed for {', '.join(failed)}", reports)
    return summary


def _parity_on_device(plan: Plan, res: Any) -> list[dict[str, Any]]:  # pragma: no cover - needs a GPU
    """The exported ONNX files on onnxruntime's CUDA provider against the torch model on the GPU
    (TF32 off for the reference, so the FP32 gate compares against true FP32)."""
    import torch

    from rtseg.export.parity import compare, parity_inputs
    from rtseg.backends.ort import OrtRunner
    from rtseg.runtime.source import build_module, resolve_model

    src = resolve_model("baseline1")
    module = build_module(src).to(plan.device).eval()
    inputs = parity_inputs(1, *plan.input_hw, src.data_info)
    prev = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            ref = [module(torch.from_numpy(x).to(plan.device)).float().cpu().numpy() for x in inputs]
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = prev
    reports = []
    for path, precision in ((res.onnx, "fp32"), (res.onnx_fp16, "fp16")):
        try:
            runner = OrtRunner(path, input_hw=plan.input_hw, batch=1, device=plan.device)
            try:
                cand = [runner.infer(x) for x in inputs]
            finally:
                runner.close()
            reports.append(compare(ref, cand, precision, f"onnx {precision} (onnxruntime {plan.device})", f"torch fp32 ({plan.device})").to_dict())
        except Exception as exc:
            reports.append({"name": f"onnx {precision} (onnxruntime {plan.device})", "passed": False, "error": _error_text(exc)[0]})
    return reports


def _export_trt(plan: Plan, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover - needs TensorRT and a GPU
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions

    res = export_model("baseline1", ExportOptions(input_hw=plan.input_hw, fp16=True, trt=True, out_dir=out / "export", device=plan.device))
    ctx["engine"] = res.engine
    ctx["onnx"], ctx["onnx_fp16"] = res.onnx, res.onnx_fp16
    d = res.to_dict()
    return {"engine": _rel(res.engine, out), "parity": [p for p in d["parity"] if "tensorrt" in p.get("name", "")],
            "build_s": d["stage_seconds"].get("trt_build"), "notes": d["notes"], "stage_seconds": d["stage_seconds"]}


def _bench_rows(plan: Plan, ok_rows: dict[str, str], ctx: dict[str, Any], torch_ok: bool) -> list[tuple[str, str, str | None]]:
    """(backend key, label, reason to skip or None) for every backend the doctor benchmarks."""
    no_torch = None if torch_ok else "torch does not import here"
    ort = ok_rows.get("onnxruntime")
    rows = [("torch", "torch eager", no_torch)]
    rows.append(("torch-graphs", "torch CUDA graphs", no_torch or (None if plan.cuda else "CUDA graphs need a GPU")))
    ort_why = None if ort in ("ok", "warn") else "onnxruntime does not import"
    rows.append(("ort-cpu", "onnxruntime CPUExecutionProvider", ort_why or no_torch))
    cuda_ep = None
    if not plan.cuda:
        cuda_ep = "this run is on the CPU"
    elif ort != "ok":
        cuda_ep = "onnxruntime has no CUDA provider here (see the onnxruntime row)"
    rows.append(("ort-cuda", "onnxruntime CUDAExecutionProvider", ort_why or cuda_ep or no_torch))
    trt_why = None if ok_rows.get("TensorRT") == "ok" and plan.cuda else "TensorRT is not usable here (see the TensorRT row)"
    rows.append(("tensorrt", "TensorRT engine", trt_why))
    return rows


def _bench(plan: Plan, backend: str, ctx: dict[str, Any]) -> dict[str, Any]:
    from rtseg.runtime.bench import run_bench

    kw: dict[str, Any] = dict(input_hw=plan.input_hw, warmup=plan.bench_warmup, iters=plan.bench_iters, threads=plan.threads)
    if backend in ("torch", "torch-graphs"):
        rep = run_bench(["baseline1"], ["torch"], device=plan.device, precision=plan.precision, cuda_graphs=backend == "torch-graphs", **kw)
    elif backend == "ort-cpu":
        rep = run_bench(["baseline1"], ["onnxruntime"], device="cpu", precision="fp32", **kw)
    elif backend == "ort-cuda":
        rep = run_bench(["baseline1"], ["onnxruntime"], device=plan.device, precision=plan.precision, **kw)
    else:  # pragma: no cover - needs TensorRT and a GPU
        model = str(ctx["engine"]) if ctx.get("engine") else "baseline1"
        rep = run_bench([model], ["tensorrt"], device=plan.device, precision="fp16", **kw)
    row = rep.to_dict()["results"][0]
    keep = ("model", "backend", "backend_version", "precision", "device", "input", "median_ms", "mean_ms", "p90_ms", "p99_ms", "fps",
            "n", "timed", "cuda_graphs", "providers", "threads")
    return {k: row[k] for k in keep if k in row}


def _demo(plan: Plan, cfg: RunConfig, out: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    import cv2

    from rtseg.data.synthetic import video_frames
    from rtseg.runtime import load_runner
    from rtseg.video import DemoOptions, model_meta, open_source, run_demo
    from rtseg.video.writer import VideoWriter, probe_codec

    h, w = plan.input_hw
    suffix = next((s for s in (".mp4", ".avi", ".mkv") if probe_codec(s, (h, w))), None)
    if suffix is None:
        raise RtsegError("this OpenCV cannot write .mp4, .avi or .mkv files (see the video codecs row)")
    video = out / f"input{suffix}"
    with VideoWriter(video, fps=15) as wr:
        for rgb, _label in video_frames(plan.demo_frames, h, w, seed=cfg.seed + 7):
            wr.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    written = wr.result
    if ctx.get("engine"):  # pragma: no cover - needs TensorRT
        model, backend, precision = str(ctx["engine"]), "tensorrt", "fp16"
    elif ctx.get("onnx"):
        model, backend, precision = str(ctx["onnx_fp16"] if plan.cuda and ctx.get("onnx_fp16") else ctx["onnx"]), "onnxruntime", plan.precision
    else:
        model, backend, precision = "baseline1", "torch", plan.precision
    try:
        runner = load_runner(model, backend=backend, device=plan.device, precision=precision, input_hw=plan.input_hw, threads=plan.threads)
    except Exception:
        if backend != "onnxruntime" or not plan.cuda:
            raise
        backend = "torch"  # no CUDA provider: the GPU path is torch
        model = "baseline1"
        runner = load_runner(model, backend=backend, device=plan.device, precision=plan.precision, input_hw=plan.input_hw)
    src = None
    try:
        meta = model_meta(runner, name=model)
        src = open_source(str(video))
        res = run_demo(src, runner, meta, DemoOptions(save=out / f"demo{suffix}", max_frames=plan.demo_frames, show=False, baseline_iters=10),
                       model_name=Path(model).name)
    finally:
        if src is not None:
            src.stop()
        runner.close()
    rec = res.record
    return {"model": _rel(Path(model), out) if Path(model).exists() else model, "backend": backend, "input_video": video.name,
            "input_codec": written.codec if written else None, "frames": rec.get("frames"), "inference_fps": rec.get("inference_fps"),
            "end_to_end_fps": rec.get("end_to_end_fps"), "standalone_inference_fps": rec.get("standalone_inference_fps"),
            "output": {k: (rec.get("output") or {}).get(k) for k in ("path", "codec", "frames_written", "frames_read_back")},
            "end_reason": rec.get("end_reason")}


def _rel(p: Path | None, root: Path) -> str | None:
    if p is None:
        return None
    try:
        return str(Path(p).relative_to(root))
    except ValueError:
        return str(p)


# -- the report ------------------------------------------------------------------------------------
def render_markdown(state: dict[str, Any]) -> str:
    """doctor.md: the checks, then one row per step with its figures or its error."""
    checks = state.get("checks", {})
    plan = state.get("plan", {})
    m = checks.get("machine", {})
    lines = ["# rtseg doctor --run", "",
             f"Machine: {m.get('cpu')} ({m.get('logical_cores')} logical cores), {m.get('platform')}, Python {m.get('python')}, "
             f"rtseg {m.get('rtseg')}. Device used: **{plan.get('device')}** ({plan.get('precision')}), input "
             f"{'x'.join(str(v) for v in plan.get('input_hw', []))}. Started {state.get('started')}, "
             f"{state.get('elapsed_s')} s so far (budget {state.get('config', {}).get('minutes')} min).", "",
             "## Checks", "", "| component | status | version | details |", "|---|---|---|---|"]
    for r in checks.get("rows", []):
        lines.append(f"| {r['component']} | {r['status']} | {r.get('version') or ''} | {_md(r.get('detail', ''))} |")
    missing = [r for r in checks.get("rows", []) if r["status"] != "ok" and r.get("fix")]
    if missing:
        lines += ["", "| not ok | fix | disables |", "|---|---|---|"]
        for r in missing:
            lines.append(f"| {r['component']} | `{_md(r['fix'])}` | {_md('; '.join(r.get('disables', [])))} |")
    lines += ["", "## Steps", "", "| step | status | seconds | result |", "|---|---|---:|---|"]
    for s in state.get("steps", []):
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']:.1f} | {_md(step_line(s))} |")
    lines += ["", "Figures are measured on the device named above by this run; the whole-space profiling time is an "
              "extrapolation from the sample (its step says so). Full records: doctor.json.", ""]
    return "\n".join(lines)


def step_line(s: dict[str, Any]) -> str:
    """One line per step: its key figures, or its error."""
    if s["status"] != "ok":
        return (s.get("error") or "") + (f" ({s['where']})" if s.get("where") else "")
    d = s.get("summary", {})
    name = s["name"]
    if name == "profile":
        return (f"{d['entries']} entries in {d['seconds']} s ({d['s_per_entry']} s/entry); the whole space ({d['space_entries']} entries) "
                f"would take ~{d['whole_space_s_extrapolated']:.0f} s (extrapolated)")
    if name == "lut validate":
        return f"{d['samples']} archs: MAPE {100 * d['mape']:.1f}%, within 10% {100 * d['within_10pct']:.0f}%, Kendall tau {d['kendall_tau']:.2f}"
    if name.startswith("export"):
        par = d.get("parity", []) + d.get("parity_device", [])
        text = ", ".join(f"{p['name']}: {100 * p['agreement']:.3f}% agree, max|diff| {p['max_abs_diff']:.2g}" for p in par if "agreement" in p)
        return text + (f"; build {d['build_s']} s" if d.get("build_s") else "")
    if name.startswith("bench"):
        return f"median {d['median_ms']:.3f} ms, p90 {d['p90_ms']:.3f} ms, {d['fps']:.1f} FPS ({d.get('precision')}, {d.get('device')})"
    if name == "demo":
        o = d.get("output") or {}
        return (f"{d['frames']} frames via {d['backend']}: inference {d['inference_fps']:.1f} FPS, end-to-end {d['end_to_end_fps']:.1f} FPS; "
                f"{o.get('path') and Path(o['path']).name} ({o.get('codec')}, {o.get('frames_read_back')} frames read back)")
    return ""


def _md(text: str) -> str:
    return str(text).replace("|", "/").replace("\n", " ")


__all__ = ["Plan", "RunConfig", "StepResult", "make_plan", "render_markdown", "run_doctor", "sample_archs", "space_entries", "step_line"]


"""``rtseg quickstart``: the whole pipeline on this machine, offline, in one folder with a report.

    profile-ops (ssr, small input) -> lut validate -> search (the default strategy, LUT latency budget,
    synthetic data) -> train the result, and baseline1 scaled to the same budget with the same recipe
    -> export ONNX (+ TensorRT when importable) -> bench
    -> demo on the synthetic street video, rendered to a file first and replayed from it

One runtime from LUT to deployment: the LUT is measured on the runtime the demo deploys
(``backend``: onnxruntime on this CPU), so the latency that steers the search, the search's measured
check of its result and the demo's FPS are all figures of that one runtime.

Each stage calls the same library function as its command, with settings scaled to a time budget
(``minutes``, default 15 on a 2-core CPU). Every stage writes its own artifacts under ``out``; the
report (``report.md`` and ``report.html``) links them: the LUT validation scatter, the search
trajectories, the training curve, the benchmark table, overlay frames and the output video.
Stages that already finished are skipped on a re-run (``resume``), so an interrupted quickstart
continues where it stopped. Every timed stage (profile, validate, bench, demo) runs on one CPU thread:
the LUT and the end-to-end measurements then use the same setting, and an OpenMP pool that
oversubscribes a busy machine (docs/luts.md, "Measuring on a shared CPU") cannot skew them.
The demo replays a file rather than rendering the scene live so that its end-to-end FPS is held to
the network's (the report gives the ratio), not to the renderer's speed.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from rtseg.backends.device import device_kind
from rtseg.backends.measure import LatencyMeasure
from rtseg.data import dataset_info
from rtseg.errors import RtsegError
from rtseg.export.pipeline import export_model
from rtseg.export.profiles import ExportOptions
from rtseg.io import atomic_write_json, atomic_write_text, read_json
from rtseg.latency.lut import load_lut
from rtseg.latency.profile import profile_ops
from rtseg.latency.validate import validate_lut
from rtseg.reporting import Reporter, SilentReporter
from rtseg.rundir import MARKER
from rtseg.runtime import load_runner
from rtseg.runtime.bench import run_bench
from rtseg.search import DEFAULT_STRATEGY, get_strategy, run_strategy
from rtseg.search.staged import stage_names
from rtseg.spaces import get_space, load_arch
from rtseg.spaces.families import pick_nearest
from rtseg.train.config import TrainConfig
from rtseg.train.pipeline import train
from rtseg.train.workers import final_miou
from rtseg.video import DemoOptions, model_meta, open_source, render_synthetic_video, run_demo

#: The quickstart's input size: small enough for a CPU, large enough for the 1/8 stage to see context.
QUICK_HW = (64, 128)
#: The demo's input video (the synthetic street scene at twice the model's input size), in ``out``.
DEMO_INPUT = "demo_input.mp4"


@dataclass
class QuickstartConfig:
    out: Path = Path("rtseg-out/quickstart")
    minutes: float = 15.0
    input_hw: tuple[int, int] = QUICK_HW
    budget_fraction: float = 0.6  # search budget T as a fraction of baseline1's predicted latency
    device: str = "cpu"
    backend: str = "onnxruntime"  # the deploy runtime: the LUT is measured on it and the demo runs on it
    seed: int = 0
    demo_frames: int = 300  # a run of a second or more, so thread start-up and the last frame's latency weigh little
    resume: bool = True
    profile_repeats: int = 5  # timed runs per operator (the command's default is more; the space must fit in ~a minute)
    validate_samples: int = 8


@dataclass
class StageLog:
    name: str
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


def _share(cfg: QuickstartConfig, fraction: float, floor: float = 0.25) -> float:
    return max(floor, cfg.minutes * fraction)


#: The stages in order: each a function of the run's :class:`_Quick` returning its summary.
STAGES = ("profile", "validate", "search", "train", "export", "bench", "demo")


@dataclass
class _Quick:
    """What every stage reads: the config, the run folder, the input size, the dataset's classes and the reporter."""

    cfg: QuickstartConfig
    out: Path
    num_classes: int
    reporter: Reporter

    @property
    def hw(self) -> tuple[int, int]:
        return self.cfg.input_hw

    @property
    def lut_path(self) -> Path:
        return self.out / "lut.json"


def run_quickstart(cfg: QuickstartConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run every stage into ``cfg.out`` and return the report's data (also written as report.json).

    ``reporter`` shows each stage's progress and one line per stage (default: silence)."""
    reporter = reporter or SilentReporter()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "quickstart.json"
    state: dict[str, Any] = read_json(state_path, "quickstart state") if cfg.resume and state_path.exists() else {}
    stages: dict[str, Any] = state.setdefault("stages", {})
    q = _Quick(cfg, out, dataset_info("synthetic").num_classes, reporter)
    for name in STAGES:
        if name in stages:
            reporter.message(f"\\[{name}] done before, kept (delete {state_path} to redo)")
            continue
        reporter.message(f"\\[{name}] ...")
        t0 = time.monotonic()
        result = _STAGE_FUNCS[name](q)
        result["seconds"] = round(time.monotonic() - t0, 1)
        stages[name] = result
        atomic_write_json(state_path, state)
        reporter.message(f"\\[{name}] {result['seconds']:.0f} s")
    report = write_report(out, state)
    state["report"] = str(report)
    atomic_write_json(state_path, state)
    return state


def _profile_stage(q: _Quick) -> dict[str, Any]:
    """profile-ops on the deploy runtime, one thread, fewer repeats than the command's defaults (the
    whole space must fit in about a minute). On a CPU the LUT is timed on the thread clock (CPU time of
    the one inference thread): the search's calibration and measured pick then compare figures that
    other work on the machine does not inflate."""
    cfg, (h, w) = q.cfg, q.hw
    profile_ops("ssr", h, w, cfg.backend, cfg.device, "fp32", warmup=min(2, cfg.profile_repeats), repeats=cfg.profile_repeats,
                min_time_s=0.0, max_repeats=3 * cfg.profile_repeats,
                num_classes=q.num_classes, heads=["classifier"], out_path=q.lut_path, progress=True, threads=1,
                clock="thread" if cfg.device == "cpu" else "wall")
    lut = load_lut(q.lut_path)
    return {"lut": str(q.lut_path), "entries": len(lut.entries), "device": lut.provenance["device"].get("name"), "backend": lut.backend,
            "constant_ms": lut.constant_ms}


def _validate_stage(q: _Quick) -> dict[str, Any]:
    """Predicted against measured end-to-end latency of random archs."""
    cfg = q.cfg
    repeats = max(3 * cfg.profile_repeats, 5)
    res = validate_lut(q.lut_path, samples=cfg.validate_samples, seed=cfg.seed, warmup=3, repeats=repeats,
                       rounds=min(5, repeats), plot=q.out / "lut_validation.png", progress=False)
    return {"mape": res.mape, "within_10pct": res.within_10pct, "kendall_tau": res.kendall_tau, "samples": res.samples,
            "speed_corrected": res.speed_corrected, "uncorrected": res.uncorrected, "corrected": res.corrected,
            "round_agreement": res.round_agreement, "plot": "lut_validation.png"}


def _search_stage(q: _Quick) -> dict[str, Any]:
    """The default search (every stage at a quickstart's scale) at a budget between the cheapest arch
    and baseline1."""
    cfg, (h, w), out = q.cfg, q.hw, q.out
    lut = load_lut(q.lut_path)
    base = load_arch("baseline1").with_(num_classes=q.num_classes)
    base_ms = lut.predict(base, h, w).total_ms
    cheapest_ms = lut.predict(get_space("ssr").cheapest_arch(lut.cost, h, w, q.num_classes), h, w).total_ms
    # a fraction of baseline1, but never below halfway from the cheapest arch (at small inputs the
    # fixed parts dominate and a plain fraction can be infeasible)
    target = max(cfg.budget_fraction * base_ms, 0.5 * (cheapest_ms + base_ms))
    scale = min(1.0, cfg.minutes / 15.0)  # a shorter quickstart scores fewer archs

    def n(full: int, least: int) -> int:
        return max(least, round(full * scale))

    scfg = get_strategy(DEFAULT_STRATEGY).make_config(
        space="ssr", lut=str(q.lut_path), latency_ms=target, input_hw=(h, w), seed=cfg.seed, device=cfg.device,
        gradient_epochs=3, gradient_train_len=96, gradient_minutes=_share(cfg, 0.06, floor=0.1),
        oneshot_epochs=4, oneshot_train_len=128, oneshot_evaluations=n(24, 4), oneshot_score_len=n(48, 8),
        oneshot_minutes=_share(cfg, 0.1, floor=0.1), epochs=1, train_len=n(160, 16), val_len=n(32, 8), batch=8,
        population=n(4, 2), parents=2, evaluations=n(6, 3), jobs=2, final_round=2, final_factor=4, finalists=3)
    folder = out / "search"
    res = run_strategy(DEFAULT_STRATEGY, scfg, folder, resume=_started(folder), reporter=q.reporter)
    s = dict(res.summary)
    s["baseline1_predicted_ms"] = base_ms
    return s


def _started(folder: Path) -> bool:
    """Whether a stage's run folder holds a run this quickstart started (and so is resumed)."""
    return (folder / MARKER).exists() or (folder / "last.pt").exists() or (folder / "config.json").exists()


def _train_stage(q: _Quick) -> dict[str, Any]:
    """Train the searched arch within its share of the time, then baseline1 scaled to the same budget
    (measured on the deploy runtime) with the same recipe and as many epochs: what the search bought."""
    cfg, out = q.cfg, q.out
    tcfg = TrainConfig(epochs=100, batch=8, minutes=_share(cfg, 0.2), train_len=400, val_len=48, seed=cfg.seed,
                       device=cfg.device, resume=_started(out / "train"))
    s = train(out / "search" / "arch.json", "synthetic", q.hw, tcfg, out / "train", reporter=q.reporter)
    ref_arch, knobs = _baseline_scaled(q)
    ref_path = out / "baseline1-scaled.json"
    ref_arch.save(ref_path)
    keep = ("best_miou", "best_epoch", "epochs", "steps", "train_img_per_s", "stopped_by")
    searched = load_arch(out / "search" / "arch.json")
    if ref_arch.genotype == searched.genotype and ref_arch.head == searched.head:  # the search kept it: one net, one training
        r, same = s, True
    else:
        rcfg = replace(tcfg, epochs=int(s["epochs"]), minutes=None, resume=_started(out / "train-baseline1"))
        r, same = train(ref_path, "synthetic", q.hw, rcfg, out / "train-baseline1", reporter=q.reporter), False
    return {**{k: s[k] for k in keep if k in s}, "final_miou": final_miou(s),
            "baseline1_scaled": {"arch": ref_path.name, "knobs": knobs, "final_miou": final_miou(r),
                                 "epochs": r.get("epochs"), "steps": r.get("steps"), "same_net_as_searched": same}}


def _baseline_scaled(q: _Quick) -> tuple[Any, dict[str, Any]]:
    """Baseline1 scaled to the search's T as measured on the deploy runtime: the reference the search
    itself measured and competed against, when it did (one member, not two picks of one family that
    measurement noise can tell apart); else the member measured nearest T here."""
    cfg, out = q.cfg, q.out
    summary = read_json(out / "search" / "search.json", "search summary")
    ref = (summary.get("stages") or {}).get("reference") or {}
    if ref.get("measured_latency_ms") is not None and (out / "search" / "reference.json").exists():
        return load_arch(read_json(out / "search" / "reference.json", "search reference")["arch"]), ref["knobs"]
    lut = load_lut(q.lut_path)
    measure = LatencyMeasure(q.hw, backend=cfg.backend, device=cfg.device, threads=1, clock=lut.clock, warmup=3, repeats=20)
    pick = pick_nearest("baseline1", float(summary["target_latency_ms"]), measure, input_hw=q.hw, num_classes=q.num_classes, confirm=2)
    return pick.arch(), pick.member.knobs


def _export_stage(q: _Quick) -> dict[str, Any]:
    """ONNX (FP16 checks), and a TensorRT engine where TensorRT and a GPU are present."""
    out = q.out
    trt = _tensorrt_importable()
    res = export_model(str(out / "train" / "best.pt"),
                       ExportOptions(input_hw=q.hw, fp16=True, trt=trt and torch.cuda.is_available(), out_dir=out / "export"))
    d = res.to_dict()
    if not trt:
        d["notes"] = list(d.get("notes", [])) + ["TensorRT not importable here: engine skipped (pip install 'rtseg[trt]' on a GPU)"]
    return d


def _bench_stage(q: _Quick) -> dict[str, Any]:
    """The deployed net, baseline1 scaled to the same budget, and baseline1 on torch and onnxruntime, one thread."""
    deployed = q.out / "train" / "best.pt" if q.cfg.backend == "torch" else q.out / "export" / "model.onnx"  # what the demo runs
    rep = run_bench([str(deployed), str(q.out / "baseline1-scaled.json"), "baseline1"], ["torch", "onnxruntime"],
                    input_hw=q.hw, warmup=5, iters=60, rounds=6, device=q.cfg.device, threads=1,  # interleaved: compared fairly
                    clock=load_lut(q.lut_path).clock if device_kind(q.cfg.device) == "cpu" else "wall")  # the LUT's clock
    d = rep.to_dict()
    names = list(dict.fromkeys(r["model"] for r in d["results"]))  # the models' display names, in the order given
    d["roles"] = dict(zip(("searched", "baseline1_scaled", "baseline1"), names))
    return d


def _demo_stage(q: _Quick) -> dict[str, Any]:
    """The demo on the deploy runtime, replaying the synthetic street scene rendered to a file first."""
    cfg, out, (h, w) = q.cfg, q.out, q.hw
    deployed = out / "train" / "best.pt" if cfg.backend == "torch" else out / "export" / "model.onnx"
    runner = load_runner(str(deployed), backend=cfg.backend, device=cfg.device, threads=1)
    try:
        meta = model_meta(runner, name="quickstart model")
        # The street scene is rendered to a file first and replayed: rendered live, in the capture
        # thread, it costs more per frame than the network and would be what the figure measured.
        t0 = time.monotonic()
        clip = render_synthetic_video(out / DEMO_INPUT, cfg.demo_frames, (2 * h, 2 * w), seed=cfg.seed + 7)
        render_s = time.monotonic() - t0
        video = out / "demo.mp4"
        res = run_demo(open_source(str(out / DEMO_INPUT)), runner, meta,
                       DemoOptions(save=video, max_frames=cfg.demo_frames, baseline_iters=30), model_name="quickstart")
    finally:
        runner.close()
    frames = _grab_frames(video, out, n=3)
    rec = dict(res.record)
    rec["video"] = video.name
    rec["overlay_frames"] = [f.name for f in frames]
    rec["input_video"] = {"path": DEMO_INPUT, "rendered_from": f"synthetic street scene, seed {cfg.seed + 7}",
                          "frames": clip.frames_read_back, "size_hw": list(clip.size_hw), "codec": clip.codec,
                          "fps": clip.fps, "render_s": round(render_s, 2)}
    return rec


_STAGE_FUNCS: dict[str, Callable[[_Quick], dict[str, Any]]] = {
    "profile": _profile_stage, "validate": _validate_stage, "search": _search_stage, "train": _train_stage,
    "export": _export_stage, "bench": _bench_stage, "demo": _demo_stage,
}


def _tensorrt_importable() -> bool:
    try:
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


def _grab_frames(video: Path, out: Path, n: int = 3) -> list[Path]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or 1
    paths = []
    for i in range(n):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int((i + 0.5) * total / n))
        ok, frame = cap.read()
        if not ok:
            break
        p = out / f"overlay_{i}.png"
        cv2.imwrite(str(p), frame)
        paths.append(p)
    cap.release()
    return paths


def write_report(out: Path, state: dict[str, Any]) -> Path:
    """report.md and report.html from the stages' summaries; images are linked, not embedded."""
    s = state["stages"]
    lines = ["# rtseg quickstart report", ""]
    prof, val, srch, tr = s.get("profile", {}), s.get("validate", {}), s.get("search", {}), s.get("train", {})
    lines += ["## 1. Latency LUT (profile-ops)", "",
              f"{prof.get('entries')} operator entries measured with {prof.get('backend', 'torch')} on {prof.get('device')} "
              f"({prof.get('seconds')} s): `{Path(prof.get('lut', '')).name}`; the search's budget, its measured check "
              f"and the demo all run on that runtime.", "",
              "## 2. LUT validation (predicted vs measured, end to end)", "",
              f"{val.get('samples')} random archs: MAPE {100 * val.get('mape', float('nan')):.1f}%, "
              f"within ±10%: {100 * val.get('within_10pct', float('nan')):.0f}%, Kendall tau {val.get('kendall_tau', float('nan')):.2f}"
              + (f" (compared at the LUT's typical speed, each timing scaled by the reference beside it, because those timings' rounds "
                 f"agreed best; uncorrected MAPE {100 * val['uncorrected']['mape']:.1f}%, tau {val['uncorrected']['kendall_tau']:.2f})"
                 if val.get("speed_corrected") and val.get("uncorrected") else
                 f" (uncorrected timings, whose rounds agreed best; speed-corrected MAPE {100 * val['corrected']['mape']:.1f}%, "
                 f"tau {val['corrected']['kendall_tau']:.2f})" if val.get("corrected") else "") + ".", "",
              "![LUT validation](lut_validation.png)", "",
              "## 3. Latency-constrained search (default strategy)", "",
              f"Budget T = {srch.get('target_latency_ms', 0):.3f} ms (baseline1 predicted {srch.get('baseline1_predicted_ms', 0):.3f} ms). "
              f"Searched net: predicted {srch.get('predicted_latency_ms', 0):.3f} ms"
              + (f", measured {srch['measured_latency_ms']:.3f} ms ({100 * srch['measured_over_target']:.0f}% of T)"
                 if srch.get("measured_latency_ms") else "")
              + f", {srch.get('flops', 0) / 1e9:.3f} G multiply-adds; stages: {', '.join(stage_names(srch))}; "
              f"{srch.get('evaluations')} archs trained briefly by the proxy evolution, "
              f"{len((srch.get('final_round') or {}).get('archs') or [])} of them again, longer, in the final round; "
              f"origin of the pick: {srch.get('origin')}.", "",
              "![proxy evolution](search/proxy/evolution.png)", "",
              "## 4. Training, and what the search bought", "",
              f"Both nets trained with the same recipe ({tr.get('epochs')} epochs, {tr.get('steps')} steps) on the synthetic data; "
              "final validation mIoU, and latency measured on the deploy runtime in the benchmark below.", "",
              "| net | final val mIoU | measured ms (deploy runtime) |", "|---|---|---|",
              f"| searched | {100 * tr.get('final_miou', 0):.1f} | {_bench_ms(s, 'searched')} |",
              f"| baseline1 scaled to T ({_knobs(tr)}) | {100 * (tr.get('baseline1_scaled') or {}).get('final_miou', 0):.1f} "
              f"| {_bench_ms(s, 'baseline1_scaled')} |", "",
              *(["The search kept baseline1 scaled to T (no arch it trained beat it in the final round): the two rows are one net, "
                 "trained once.", ""] if (tr.get("baseline1_scaled") or {}).get("same_net_as_searched") else []),
              "![training curve](train/curve.png)", "",
              "## 5. Export", ""]
    exp = s.get("export", {})
    for p in exp.get("parity", []):
        lines.append(f"- parity {p.get('name', p.get('what', ''))}: " + ", ".join(f"{k}={v}" for k, v in p.items() if k in ("agreement", "max_abs_diff", "passed")))
    for note in exp.get("notes", []):
        lines.append(f"- note: {note}")
    lines += ["", "## 6. Benchmark", "", "| model | backend | median ms | p90 ms | FPS |", "|---|---|---|---|---|"]
    for r in s.get("bench", {}).get("results", []):
        lines.append(f"| {Path(r['model']).name} | {r['backend']} | {r['median_ms']:.2f} | {r['p90_ms']:.2f} | {r['fps']:.1f} |")
    demo = s.get("demo", {})
    lines += ["", "## 7. Demo (ONNX Runtime, one inference thread)", "", _demo_summary(demo),
              f"Video: [{demo.get('video')}]({demo.get('video')}).", ""]
    lines += [f"![overlay]({f})" for f in demo.get("overlay_frames", [])]
    lines += ["", "Timings per stage (s): " + ", ".join(f"{k} {v.get('seconds')}" for k, v in s.items())]
    md = "\n".join(lines) + "\n"
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", _md_to_html(md))
    atomic_write_json(out / "report.json", state)
    return out / "report.html"


def _bench_ms(stages: dict[str, Any], role: str) -> str:
    """The deploy runtime's median latency of the model that played ``role`` in the benchmark stage, as text."""
    backend = (stages.get("profile") or {}).get("backend", "onnxruntime")
    bench = stages.get("bench") or {}
    name = (bench.get("roles") or {}).get(role)
    for r in bench.get("results", []):
        if r["model"] == name and r["backend"] == backend:
            return f"{r['median_ms']:.2f}"
    return "-"


def _knobs(train_stage: dict[str, Any]) -> str:
    knobs = (train_stage.get("baseline1_scaled") or {}).get("knobs") or {}
    return ", ".join(f"{k} {v}" for k, v in knobs.items())


def _demo_summary(demo: dict[str, Any]) -> str:
    """Which source the demo ran on, and its frame rates side by side, for the report."""
    src = demo.get("input_video")
    if src:
        h, w = src["size_hw"]
        where = (f"Source: the synthetic street scene rendered to [{src['path']}]({src['path']}) first ({src['frames']} frames, "
                 f"{h}x{w}, {src['codec']}) and replayed from the file, so the figures cover decoding, the pipeline "
                 "and the network, not the scene renderer. ")
    else:  # a report written by an earlier rtseg, which rendered the scene live in the capture thread
        where = f"Source: {demo.get('source', {}).get('name', 'synthetic')}, rendered live in the capture thread. "
    inf, e2e = demo.get("inference_fps", 0.0), demo.get("end_to_end_fps", 0.0)
    text = where + f"{demo.get('frames')} frames; inference FPS {inf:.1f} (in the pipeline), end-to-end FPS {e2e:.1f}"
    if inf:
        text += f" ({100 * e2e / inf:.0f}% of inference)"
    if demo.get("standalone_inference_fps"):
        text += f"; inference alone before the run {demo['standalone_inference_fps']:.1f} FPS"
    waits = demo.get("inference_waits_s")
    if waits and demo.get("wall_s"):
        text += (f"; outside the runner call, the inference thread spent {waits['for_input']:.2f} s taking frames and "
                 f"{waits['handing_on']:.2f} s handing them to the output stage, of a {demo['wall_s']:.2f} s run")
    stages = demo.get("stages", {})
    if stages:
        text += ". Mean ms per frame: " + ", ".join(f"{k} {v['mean_ms']:.2f}" for k, v in stages.items() if k != "latency")
    return text + "."


def _md_to_html(md: str) -> str:
    """A tiny Markdown subset (headings, images, links, tables, lists) so the report opens anywhere."""
    import re

    body = []
    in_table = False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-"):
                continue
            if not in_table:
                body.append("<table border=1 cellpadding=4>")
                in_table = True
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        m = re.match(r"^(#+) (.*)", line)
        if m:
            n = len(m.group(1))
            body.append(f"<h{n}>{html.escape(m.group(2))}</h{n}>")
            continue
        m = re.match(r"^!\[(.*)\]\((.*)\)$", line)
        if m:
            body.append(f'<p><img src="{html.escape(m.group(2))}" alt="{html.escape(m.group(1))}" style="max-width:100%"></p>')
            continue
        text = html.escape(line)
        text = re.sub(r"\[(.*?)\]\((.*?)\)", r'<a href="\2">\1</a>', text)
        text = re.sub(r"`(.*?)`", r"<code>\1</code>", text)
        body.append(f"<li>{text[2:]}</li>" if line.startswith("- ") else (f"<p>{text}</p>" if text else ""))
    if in_table:
        body.append("</table>")
    return "<!doctype html><meta charset=utf-8><title>rtseg quickstart</title><body style='font-family:sans-serif;max-width:1000px'>\n" + "\n".join(body) + "\n</body>\n"


def load_report(out: str | Path) -> dict[str, Any]:
    p = Path(out) / "quickstart.json"
    if not p.exists():
        raise RtsegError(f"no quickstart run in {out}")
    return json.loads(p.read_text())

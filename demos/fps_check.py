"""Is the pipeline the bottleneck? End-to-end FPS against inference-only FPS on a video file.

    python demos/fps_check.py MODEL.onnx [--input 256x512] [--frames 150] [--threads 1 2] [--repeats 3] [--json]

Writes the synthetic street video to a real file first (at the model's input size, so no resize
hides in the numbers), reads it back through the demo pipeline once per thread setting, and prints,
for the same model and backend: inference FPS measured alone (no pipeline), inference FPS inside the
pipeline, end-to-end FPS, and the two ratios. The criterion the demo is held to is
end-to-end >= 90% of inference-only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rtseg.io import parse_hw
from rtseg.runtime import load_runner
from rtseg.video import DemoOptions, model_meta, open_source, render_synthetic_video, run_demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--backend", default="onnxruntime")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--input", dest="input_hw", default=None, help="model input HxW (archs/checkpoints, dynamic ONNX)")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="runner intra-op thread counts to compare (0: the backend default)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per setting, interleaved; medians are reported (steadier on a shared machine)")
    ap.add_argument("--video", type=Path, default=None, help="keep the test video here (default: a temporary file)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    hw = parse_hw(args.input_hw) if args.input_hw else None
    console = Console(stderr=True)

    probe = load_runner(args.model, backend=args.backend, device=args.device, input_hw=hw)
    meta = model_meta(probe)
    probe.close()
    tmpdir = tempfile.TemporaryDirectory(prefix="rtseg-fps-")
    video = args.video or Path(tmpdir.name) / "street.mp4"
    written = render_synthetic_video(video, args.frames, meta.input_hw)
    console.print(f"test video: {video} ({written.frames_read_back} frames {meta.input_hw[0]}x{meta.input_hw[1]}, {written.codec})")

    runs: dict[int, list[dict]] = {t: [] for t in args.threads}
    for _ in range(max(1, args.repeats)):
        for t in args.threads:  # interleaved, so a burst of load elsewhere hits every setting alike
            runner = load_runner(args.model, backend=args.backend, device=args.device, input_hw=hw, threads=t or None)
            res = run_demo(open_source(str(video)), runner, model_meta(runner), DemoOptions(baseline_iters=30, warmup=5), model_name=args.model)
            runner.close()
            r = res.record
            r["load_avg_after"] = os.getloadavg()[0]
            runs[t].append(r)
            console.print(f"threads {t}: alone {r['standalone_inference_fps']:.1f}, in pipeline {r['inference_fps']:.1f}, "
                          f"end-to-end {r['end_to_end_fps']:.1f} FPS (load {r['load_avg_after']:.2f})")

    def med(xs: list[float]) -> float:
        return float(statistics.median(xs))

    rows = []
    for t, rs in runs.items():
        row = {
            "threads": t,
            "runs": len(rs),
            "standalone_inference_fps": med([r["standalone_inference_fps"] for r in rs]),
            "inference_fps": med([r["inference_fps"] for r in rs]),
            "end_to_end_fps": med([r["end_to_end_fps"] for r in rs]),
            "e2e_over_inference": med([r["end_to_end_fps"] / r["inference_fps"] for r in rs]),
            "e2e_over_standalone": med([r["end_to_end_fps"] / r["standalone_inference_fps"] for r in rs]),
            "frames": rs[0]["frames"],
            "stages_mean_ms": {k: round(med([r["stages"][k]["mean_ms"] for r in rs]), 2) for k in rs[0]["stages"]},
            "device": rs[0]["device"],
            "backend": f"{rs[0]['backend']} {rs[0]['backend_version']}",
            "load_avg": med([r["load_avg_after"] for r in rs]),
        }
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    t = Table(title=f"{args.model} on {rows[0]['backend']}, {rows[0]['device']}, {os.cpu_count()} cores, video file {meta.input_hw[0]}x{meta.input_hw[1]}")
    for col in ("threads", "alone FPS", "in-pipeline inference FPS", "end-to-end FPS", "e2e / inference", "e2e / alone", "load"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["threads"]), f"{r['standalone_inference_fps']:.1f}", f"{r['inference_fps']:.1f}", f"{r['end_to_end_fps']:.1f}",
                  f"{100 * r['e2e_over_inference']:.0f}%", f"{100 * r['e2e_over_standalone']:.0f}%", f"{r['load_avg']:.2f}")
    console.print(t)


if __name__ == "__main__":
    main()

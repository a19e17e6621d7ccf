"""Segment a video file (or the synthetic street video) and write the overlaid result.

    python demos/video.py MODEL INPUT [--out out.mp4] [--backend onnxruntime] [--input 256x512] [--threads 1]

MODEL is anything ``rtseg demo --model`` takes (engine, ONNX + sidecar, checkpoint, arch, built-in
name); INPUT is a video file or ``synthetic``. Every frame is processed in order (none dropped),
decoding and drawing overlap inference, and both frame rates are printed at the end. This is
``rtseg demo`` in 40 lines: copy it and change what you need (the overlay, the output, the model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtseg.errors import RtsegError
from rtseg.io import parse_hw
from rtseg.runtime import load_runner
from rtseg.video import DemoOptions, model_meta, open_source, run_demo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("input", help="video file, or synthetic[:HxW]")
    ap.add_argument("--out", type=Path, default=Path("segmented.mp4"))
    ap.add_argument("--backend", default=None, help="torch, onnxruntime or tensorrt (default: from the file)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--input", dest="input_hw", default=None, help="model input HxW (archs/checkpoints)")
    ap.add_argument("--threads", type=int, default=None, help="runner intra-op threads")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--alpha", type=float, default=0.5)
    args = ap.parse_args()
    try:
        runner = load_runner(args.model, backend=args.backend, device=args.device,
                             input_hw=parse_hw(args.input_hw) if args.input_hw else None, threads=args.threads)
        meta = model_meta(runner)  # mean/std/palette/input size recorded with the model
        source = open_source(args.input, synthetic_hw=meta.input_hw, synthetic_frames=args.frames or 150)
        result = run_demo(source, runner, meta, DemoOptions(save=args.out, max_frames=args.frames, alpha=args.alpha))
    except RtsegError as exc:
        raise SystemExit(f"error: {exc}")
    s = result.stats
    print(f"{s.frames} frames ({result.end_reason}); inference {s.inference_fps:.1f} FPS, end-to-end {s.end_to_end_fps:.1f} FPS")
    if result.output:
        print(f"wrote {result.output.path} ({result.output.codec}, {result.output.frames_read_back} frames read back)")


if __name__ == "__main__":
    main()

"""Live webcam segmentation: a window when OpenCV has GUI support, else a saved video.

    python demos/webcam.py MODEL [--camera 0] [--save webcam.mp4] [--backend tensorrt] [--device cuda]

The capture thread keeps only the newest camera frame (MJPG requested, one-frame driver buffer), so
what you see is never more than one inference behind the camera; frames the network cannot keep up
with are dropped and counted. Quit with q, Esc or Ctrl-C; the saved video is finalized either way.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtseg.errors import RtsegError
from rtseg.io import parse_hw
from rtseg.runtime import load_runner
from rtseg.video import DemoOptions, model_meta, open_source, run_demo
from rtseg.video.cvutil import gui_unavailable_reason


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--camera", default="0", help="camera index, or an rtsp:// / http:// stream URL")
    ap.add_argument("--save", type=Path, default=None, help="also write the overlaid video here")
    ap.add_argument("--backend", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--input", dest="input_hw", default=None, help="model input HxW (archs/checkpoints)")
    ap.add_argument("--frames", type=int, default=None, help="stop after N frames (default: until q/Ctrl-C)")
    args = ap.parse_args()
    no_gui = gui_unavailable_reason()
    save = args.save or (Path("webcam.mp4") if no_gui else None)
    if no_gui:
        print(f"note: {no_gui.split(';')[0]}; writing {save} instead")
    try:
        source = open_source(args.camera)  # fails fast, in one sentence, if the camera does not open
        runner = load_runner(args.model, backend=args.backend, device=args.device,
                             input_hw=parse_hw(args.input_hw) if args.input_hw else None)
        result = run_demo(source, runner, model_meta(runner),
                          DemoOptions(show=no_gui is None, save=save, max_frames=args.frames))
    except RtsegError as exc:
        raise SystemExit(f"error: {exc}")
    s = result.stats
    print(f"{s.frames} frames shown, {result.dropped} dropped ({result.end_reason})")
    print(f"inference {s.inference_fps:.1f} FPS, end-to-end {s.end_to_end_fps:.1f} FPS")


if __name__ == "__main__":
    main()

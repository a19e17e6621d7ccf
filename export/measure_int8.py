"""Reproduce the INT8 figures of export/README.md ("INT8"): which calibration settings keep the most
mIoU, and how fast INT8 runs against FP32 (and FP16) on ONNX Runtime with one thread.

    python export/measure_int8.py CHECKPOINT --gate-input 256x512 --latency-input 512x1024 --json out.json

1. Calibration settings: the checkpoint exported to FP32 ONNX at ``--gate-input``, quantized with
   every calibration method (min-max, entropy, percentile) with per-channel and per-tensor weights on
   the same ``--calib-images`` training images, each scored by the INT8 gate on the same
   ``--val-images`` validation images (mIoU drop against FP32, argmax agreement).
2. Latency: ``rtseg export --int8`` (the defaults) at ``--latency-input``, then the FP32, FP16 and
   INT8 files timed in one run, interleaved call by call on one thread, so a busy machine slows all
   of them alike; the medians and the INT8 speed-up are reported with the load average.
3. ``--lut-archs N``: an INT8 LUT (and an FP32 one, for comparison) on ONNX Runtime with one thread,
   restricted to the operators of N random ``ssr`` archs at ``--lut-input``, each validated on those
   archs (``lut validate``'s figures: MAPE, within +-10 %, Kendall tau).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def calibration_table(checkpoint: str, hw: tuple[int, int], calib_images: int, val_images: int) -> list[dict]:
    from rtseg.backends.onnx_int8 import CALIBRATION_METHODS, quantize_onnx
    from rtseg.backends.ort import OrtRunner
    from rtseg.export.int8 import int8_gate, load_split
    from rtseg.export.pipeline import calibration_data, export_model
    from rtseg.export.profiles import ExportOptions
    from rtseg.runtime.source import resolve_model

    src = resolve_model(checkpoint)
    spec, seed, _ = calibration_data(src, None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        res = export_model(checkpoint, ExportOptions(input_hw=hw, fp16=False, out_dir=Path(tmp) / "m"))
        fp32 = OrtRunner(res.onnx, input_hw=hw, batch=1)  # type: ignore[arg-type]
        calib = load_split(spec, "train", hw, calib_images, 1, seed)
        val = load_split(spec, "val", hw, val_images, 1, seed)
        for method in CALIBRATION_METHODS:
            for per_channel in (True, False):
                t0 = time.perf_counter()
                path, _ = quantize_onnx(res.onnx, Path(tmp) / f"{method}-{per_channel}.onnx", calib.inputs, method, per_channel)  # type: ignore[arg-type]
                seconds = time.perf_counter() - t0
                rep = int8_gate(fp32.infer, OrtRunner(path, input_hw=hw, batch=1).infer, val, src.num_classes)
                rows.append({"method": method, "per_channel": per_channel, "calibrate_s": round(seconds, 1), **rep.to_dict()})
                print(f"{method:10s} {'per-channel' if per_channel else 'per-tensor ':11s} mIoU fp32 {rep.miou_fp32:.2f} "
                      f"int8 {rep.miou_int8:.2f} drop {rep.drop:+.2f} agreement {rep.agreement * 100:.2f} % ({seconds:.0f} s)", flush=True)
    return rows


def latency_table(checkpoint: str, hw: tuple[int, int], calib_images: int, val_images: int, rounds: int) -> dict:
    from rtseg.backends.ort_session import make_session
    from rtseg.export.int8 import Int8Options
    from rtseg.export.pipeline import export_model
    from rtseg.export.profiles import ExportOptions

    with tempfile.TemporaryDirectory() as tmp:
        res = export_model(checkpoint, ExportOptions(input_hw=hw, fp16=True, int8=True, out_dir=Path(tmp) / "m", check=False,
                                                     int8_options=Int8Options(calib_images=calib_images, val_images=val_images)))
        files = {"fp32": res.onnx, "fp16": res.onnx_fp16, "int8": res.onnx_int8}
        sessions = {k: make_session(p, threads=1) for k, p in files.items()}
        x = np.random.default_rng(0).standard_normal((1, 3, *hw)).astype(np.float32)
        for s in sessions.values():  # warm-up
            for _ in range(2):
                s.run(None, {"input": x})
        times: dict[str, list[float]] = {k: [] for k in sessions}
        load_before = os.getloadavg()[0]
        for _ in range(rounds):  # interleaved: every round runs each model once
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, {"input": x})
                times[k].append((time.perf_counter() - t0) * 1e3)
        med = {k: float(np.median(v)) for k, v in times.items()}
        out = {"input": list(hw), "threads": 1, "rounds": rounds, "median_ms": med, "int8_speedup": med["fp32"] / med["int8"],
               "fp16_speedup": med["fp32"] / med["fp16"], "load_average": [load_before, os.getloadavg()[0]],
               "gate": res.int8.to_dict() if res.int8 else None,
               "calibration": res.metadata["artifacts"]["onnx_int8"]["calibration"]}
        print(json.dumps(out, indent=1), flush=True)
        return out


def lut_figures(n_archs: int, hw: tuple[int, int]) -> dict:
    import random

    from rtseg.latency.lut import load_lut
    from rtseg.latency.profile import profile_ops
    from rtseg.latency.validate import validate_lut
    from rtseg.spaces import get_space

    space = get_space("ssr")
    rng = random.Random(0)
    archs = [space.sample(rng, head="classifier") for _ in range(n_archs)]
    sigs = list(dict.fromkeys(s for a in archs for s in space.signatures(a, *hw)))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("int8", "fp32"):
            t0 = time.perf_counter()
            path = profile_ops("ssr", *hw, backend="onnxruntime", precision=precision, threads=1, heads=["classifier"], signatures=sigs,
                               out_path=Path(tmp) / f"{precision}.json", progress=False)
            seconds = time.perf_counter() - t0
            res = validate_lut(load_lut(path), archs=archs, progress=False).to_dict()
            out[precision] = {"entries": len(sigs), "profile_s": round(seconds), "mape": res["mape"], "within_10pct": res["within_10pct"],
                              "kendall_tau": res["kendall_tau"], "rows": res["rows"]}
            print(precision, {k: v for k, v in out[precision].items() if k != "rows"}, flush=True)
    return out


def main() -> None:
    from rtseg.io import parse_hw

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--gate-input", default="256x512")
    ap.add_argument("--latency-input", default="512x1024")
    ap.add_argument("--calib-images", type=int, default=32)
    ap.add_argument("--val-images", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--lut-archs", type=int, default=0)
    ap.add_argument("--lut-input", default="128x256")
    ap.add_argument("--skip", choices=("calibration", "latency"), action="append", default=[])
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    record: dict = {"checkpoint": a.checkpoint, "cpu": os.cpu_count()}
    if "calibration" not in a.skip:
        record["calibration"] = calibration_table(a.checkpoint, parse_hw(a.gate_input), a.calib_images, a.val_images)
    if "latency" not in a.skip:
        record["latency"] = latency_table(a.checkpoint, parse_hw(a.latency_input), a.calib_images, a.val_images, a.rounds)
    if a.lut_archs:
        record["lut"] = lut_figures(a.lut_archs, parse_hw(a.lut_input))
    if a.json:
        a.json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()

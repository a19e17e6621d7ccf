"""Which size of the CAS space gives the best nets at a latency budget? A quick probe before a search.

    python search/cas_sizes.py --lut lut-cas.json --target-ms 4.709 --out runs/cas-sizes

A CAS net (Zhang et al., "Customizable Architecture Search for Semantic Segmentation", CVPR 2019,
sec. 3.3-3.4) is a stack of cells whose width, count and node count are set before the search, not by
it. On a runtime where every operator has a fixed cost (one CPU thread), many narrow operators cost
more than a few wide ones of the same multiply-adds, so the size the search runs at decides how
good a net the budget can hold. This probe compares sizes on the same footing as ``pareto.py``'s
random archs: for each size (``--sizes``, ``--space-opt`` settings as JSON), uniformly drawn archs
whose latency, measured on the LUT's runtime (its backend, threads and clock), lies in
[``--band`` T, T] are trained by ``pareto.py``'s recipe from one seed. The LUT only names the runtime;
the sizes need no LUT of their own.

Output in OUT: one run folder per arch (a re-run skips what finished; a folder whose draws were made
at another LUT, T, band, count or seed is refused) and ``cas-sizes.json``, an
``rtseg.figures`` record (per size: the draws' measured latency and mIoU, their mean). One seed per
arch: a probe to choose a size, not a result; the search at the chosen size is then judged by
``pareto.py``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rtseg.io import atomic_write_json
from rtseg.latency.lut import load_lut
from rtseg.latency.validate import measure_archs_like_lut
from rtseg.spaces import get_space
from rtseg.train.workers import final_miou, train_one_thread

#: The sizes probed by default: the space's default (8 cells of width 8, 3-node cells) and wider,
#: shallower stacks with 2-node cells.
DEFAULT_SIZES = {
    "default": {},
    "w16-NNRNR-n2": {"width": 16, "layout": "NNRNR", "nodes": 2},
    "w16-NRNR-n2": {"width": 16, "layout": "NRNR", "nodes": 2, "ms_from": 0},
    "w20-NRNR-n2": {"width": 20, "layout": "NRNR", "nodes": 2, "ms_from": 0},
}


def draw_in_band(lut: Any, options: dict[str, Any], target: float, low: float, count: int, seed: int) -> list[tuple[dict, float]]:
    """``count`` uniform draws of the sized space whose measured latency lies in [low T, T], with it
    (measured 8 at a time in interleaved rounds; the same seeded draws every time)."""
    space = get_space("cas", options)
    rng = random.Random(seed)
    kept: list[tuple[dict, float]] = []
    for _ in range(50):
        archs = [space.sample(rng, num_classes=lut.num_classes) for _ in range(8)]
        for arch, ms in zip(archs, measure_archs_like_lut(lut, archs, repeats=30, rounds=3)):
            if low * target <= ms <= target and len(kept) < count:
                kept.append((arch.to_dict(), ms))
        if len(kept) == count:
            return kept
    raise SystemExit(f"error: fewer than {count} of 400 draws of cas {options} measured within [{low:g} T, T]; "
                     "give a larger --target-ms or a smaller --band")


def _machine() -> str:
    import platform

    import onnxruntime
    import torch

    from rtseg.backends.device import device_name

    return (f"{device_name('cpu')}, Python {platform.python_version()}, torch {torch.__version__}, "
            f"onnxruntime {onnxruntime.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lut", required=True, help="a cas LUT: its runtime (backend, threads, clock) times the draws")
    ap.add_argument("--target-ms", type=float, required=True)
    ap.add_argument("--sizes", type=json.loads, default=DEFAULT_SIZES, help="JSON object: name -> --space-opt settings")
    ap.add_argument("--per-size", type=int, default=4)
    ap.add_argument("--band", type=float, default=0.82, help="keep draws measured in [BAND x T, T]")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--data", default="synthetic")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-len", type=int, default=400)
    ap.add_argument("--val-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="runs/cas-sizes")
    args = ap.parse_args()

    lut = load_lut(args.lut)
    if lut.space != "cas":
        raise SystemExit(f"error: {args.lut} is a {lut.space} LUT; this probe times CAS nets on a cas LUT's runtime")
    out = Path(args.out)
    h, w = lut.input_hw
    drawn_path = out / "drawn.json"  # the draws are kept: a re-run trains the same archs
    settings = {"lut": str(args.lut), "target_ms": args.target_ms, "band": args.band, "per_size": args.per_size, "seed": args.seed}
    saved = json.loads(drawn_path.read_text()) if drawn_path.exists() else {"settings": settings, "sizes": {}}
    if saved.get("settings") != settings:
        raise SystemExit(f"error: {out} holds draws made with other settings ({saved.get('settings')}); give another --out")
    drawn = saved["sizes"]
    jobs = []
    for name, options in args.sizes.items():
        if name not in drawn:
            drawn[name] = draw_in_band(lut, options, args.target_ms, args.band, args.per_size, args.seed)
            atomic_write_json(drawn_path, saved)
            print(f"{name}: measured {[round(ms, 2) for _, ms in drawn[name]]} ms", file=sys.stderr)
        for i, (arch, ms) in enumerate(drawn[name]):
            jobs.append({"run": str(out / "train" / f"{name}-{i}"), "arch": arch, "seed": 0, "epochs": args.epochs, "batch": args.batch,
                         "train_len": args.train_len, "val_len": args.val_len, "data": args.data, "input_hw": [h, w]})
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        mious = [final_miou(s) for s in pool.map(train_one_thread, jobs)]

    rows, k = [], 0
    for name, options in args.sizes.items():
        got = mious[k:k + len(drawn[name])]
        lat = [ms for _, ms in drawn[name]]
        k += len(got)
        opts = ", ".join(f"{key}={v}" for key, v in options.items()) or "(the default size)"
        rows.append([name, opts, " ".join(f"{ms:.2f}" for ms in lat), " ".join(f"{100 * m:.1f}" for m in got),
                     f"{100 * statistics.mean(got):.1f}"])
        print(f"{name}: mIoU {' '.join(f'{100 * m:.1f}' for m in got)} (mean {100 * statistics.mean(got):.1f})", file=sys.stderr)
    atomic_write_json(out / "cas-sizes.json", {
        "format": "rtseg.figures", "schema_version": 1,
        "title": (f"sizes of the cas space at T = {args.target_ms:g} ms: {args.per_size} uniform draws per size measured within "
                  f"[{args.band:g} T, T], each trained by pareto.py's recipe ({args.epochs} epochs x {args.train_len} images, "
                  f"batch {args.batch}) from one seed"),
        "machine": _machine(), "command": " ".join(["python search/cas_sizes.py", *sys.argv[1:]]),
        "provenance": f"LUT {args.lut} (its runtime: {lut.backend}, {lut.threads} thread(s), {lut.clock} clock); runs under {out}/train",
        "columns": [{"name": "size", "align": "l"}, {"name": "--space-opt", "align": "l"}, {"name": "measured ms", "align": "l"},
                    {"name": "mIoU % (one seed each)", "align": "l"}, {"name": "mean mIoU %", "align": "r"}],
        "rows": rows,
    })
    print(f"wrote {out / 'cas-sizes.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()

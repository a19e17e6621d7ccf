"""Does the search beat chance at the same latency? The protocol of the search issue.

    python search/quality_experiment.py --lut LUT --fraction 0.6 --search-minutes 6 --train-minutes 3

With a LUT measured on this machine, a budget T = fraction x baseline1's predicted latency:
(a) the searched net, (b) the best of 5 random archs whose predicted latency lies in [0.8 T, T],
(c) baseline1 itself. Each is trained with the same recipe and wall-clock budget on `synthetic`,
then its validation mIoU, measured latency (the LUT's backend, device and threads) and FLOPs are
reported as a table and written to OUT/quality.json. The latencies are measured after all the
training, every candidate interleaved in the same rounds (as `rtseg lut validate` does).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from rtseg.arch import load_arch
from rtseg.flops import sum_op_flops
from rtseg.latency.lut import load_lut
from rtseg.latency.validate import measure_archs_like_lut
from rtseg.search import SearchConfig, run_search
from rtseg.spaces import get_space
from rtseg.train import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lut", required=True)
    ap.add_argument("--fraction", type=float, default=0.6)
    ap.add_argument("--search-minutes", type=float, default=6.0)
    ap.add_argument("--search-epochs", type=int, default=8)
    ap.add_argument("--search-train-len", type=int, default=96, help="synthetic images per search epoch (two halves)")
    ap.add_argument("--search-warmup-epochs", type=int, default=0)
    ap.add_argument("--train-minutes", type=float, default=3.0)
    ap.add_argument("--randoms", type=int, default=5)
    ap.add_argument("--out", default="runs/quality")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    out = Path(args.out)
    lut = load_lut(args.lut)
    h, w = lut.input_hw
    space = get_space("ssr")
    base = load_arch("baseline1").with_(num_classes=lut.num_classes)
    target = args.fraction * lut.predict(base, h, w).total_ms

    searched_path = out / "search" / "arch.json"
    if not searched_path.exists():
        run_search(SearchConfig(space="ssr", lut=args.lut, latency_ms=target, input_hw=(h, w), epochs=args.search_epochs,
                                minutes=args.search_minutes, seed=args.seed, train_len=args.search_train_len,
                                warmup_epochs=args.search_warmup_epochs), out / "search")
    candidates = {"searched": load_arch(searched_path)}
    rng = random.Random(args.seed)
    randoms = []
    while len(randoms) < args.randoms:
        a = space.sample(rng, num_classes=lut.num_classes)
        if 0.8 * target <= lut.predict(a, h, w).total_ms <= target:
            randoms.append(a)
    for i, a in enumerate(randoms):
        candidates[f"random{i}"] = a
    candidates["baseline1"] = base

    rows = []
    for name, arch in candidates.items():
        run = out / name
        summary_path = run / "summary.json"
        if summary_path.exists():
            s = json.loads(summary_path.read_text())
        else:
            s = train(arch, "synthetic", (h, w), TrainConfig(epochs=100, batch=8, minutes=args.train_minutes, train_len=400,
                                                              val_len=64, seed=args.seed), run)
        rows.append({"model": name, "val_miou": s["best_miou"], "predicted_ms": lut.predict(arch, h, w).total_ms,
                     "flops_g": sum_op_flops(space.signatures(arch, h, w)) / 1e9})
        print(json.dumps(rows[-1]))
    # all candidates timed together, interleaved (one after another on a shared CPU, each would see another machine)
    for r, ms in zip(rows, measure_archs_like_lut(lut, list(candidates.values()), seed=args.seed)):
        r["measured_ms"] = ms
    best_random = max((r for r in rows if r["model"].startswith("random")), key=lambda r: r["val_miou"])
    result = {"target_ms": target, "input": [h, w], "lut": args.lut, "rows": rows, "best_random": best_random["model"]}
    (out / "quality.json").write_text(json.dumps(result, indent=2))
    print(f"\nT = {target:.3f} ms at {h}x{w}")
    print(f"{'model':12s} {'val mIoU':>9s} {'pred ms':>8s} {'meas ms':>8s} {'GFLOPs':>7s}")
    for r in rows:
        print(f"{r['model']:12s} {100 * r['val_miou']:8.1f}% {r['predicted_ms']:8.3f} {r['measured_ms']:8.3f} {r['flops_g']:7.3f}")


if __name__ == "__main__":
    main()

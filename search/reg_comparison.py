"""How fast does each regularizer make the search decisive? (SSR paper, Tables 13-14.)

Runs the same latency-constrained ssr search four times, changing only the regularizer and shrinking:
``--reg ssr`` (the SSR loss with hierarchical progressive shrinking, the default), ``--reg entropy``
(with shrinking), ``--reg none`` (with shrinking) and ``--reg ssr --no-shrink``. Same LUT, budget,
data, seed and epoch limit. Reported per run: the epoch at which every decision had one candidate
left (total architecture entropy 0; "-" when the limit came first), the entropy left at the end,
the candidates left per level, and the decoded net's predicted latency against the target.

    python search/reg_comparison.py --lut LUT --fraction 0.6 --epochs 30 --jobs 2 --out runs/reg

Runs go ``--jobs`` at a time, one torch thread each (on a 2-core machine: 2). Search timings are
not the point here, epochs are; each run is resumable (re-run the command after an interruption).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

VARIANTS = {
    "ssr": {"reg": "ssr", "shrink": True},
    "entropy": {"reg": "entropy", "shrink": True},
    "none": {"reg": "none", "shrink": True},
    "ssr-no-shrink": {"reg": "ssr", "shrink": False},
}


def run_one(args: argparse.Namespace, name: str) -> None:
    import torch

    torch.set_num_threads(1)
    from rtseg.spaces import load_arch
    from rtseg.latency.lut import load_lut
    from rtseg.search import SearchConfig, run_search

    lut = load_lut(args.lut)
    h, w = lut.input_hw
    target = args.fraction * lut.predict(load_arch("baseline1").with_(num_classes=lut.num_classes), h, w).total_ms
    out = Path(args.out) / name
    cfg = SearchConfig(space="ssr", lut=args.lut, latency_ms=target, input_hw=(h, w), epochs=args.epochs, seed=args.seed,
                       train_len=args.train_len, val_len=16, verify_latency=False, **VARIANTS[name])
    run_search(cfg, out, resume=(out / "state.pt").exists(), progress=False)


def report(args: argparse.Namespace) -> None:
    rows = []
    for name in VARIANTS:
        run = Path(args.out) / name
        s = json.loads((run / "search.json").read_text())
        log = [json.loads(line) for line in (run / "search_log.jsonl").read_text().splitlines() if line.strip()]
        rows.append({"variant": name, "epochs_to_discrete": s["epochs_to_discrete"], "epochs_run": s["epochs_run"],
                     "final_entropy": log[-1]["total_entropy"], "candidates_left": log[-1]["candidates_left"],
                     "entropy_by_epoch": [round(e["total_entropy"], 3) for e in log],
                     "predicted_over_target": s["predicted_over_target"], "budget_fit_changes": s["budget_fit_changes"],
                     "wall_time_s": s["wall_time_s"]})
    (Path(args.out) / "reg_comparison.json").write_text(json.dumps({"lut": args.lut, "fraction": args.fraction,
                                                                     "epochs": args.epochs, "rows": rows}, indent=2))
    print(f"{'variant':15s} {'epochs to discrete':>18s} {'entropy left':>12s} {'left d/ds/c':>12s} {'pred/T':>7s} {'fit changes':>11s}")
    for r in rows:
        c = r["candidates_left"]
        print(f"{r['variant']:15s} {str(r['epochs_to_discrete'] or '-'):>18s} {r['final_entropy']:12.3f} "
              f"{c['depth']:>3d}/{c['dilation_spatial']:>3d}/{c['channels']:>3d} {r['predicted_over_target']:7.3f} {len(r['budget_fit_changes']):11d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lut", required=True)
    ap.add_argument("--fraction", type=float, default=0.6, help="budget T = fraction x baseline1's predicted latency")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--train-len", type=int, default=64, help="synthetic images per search epoch (two halves)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/reg")
    ap.add_argument("--only", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.only:
        run_one(args, args.only)
        return
    todo = [n for n in VARIANTS if not (Path(args.out) / n / "search.json").exists()]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    running: list[subprocess.Popen] = []
    for name in todo:
        while len(running) >= max(1, args.jobs):
            running.pop(0).wait()
        cmd = [sys.executable, __file__, "--lut", args.lut, "--fraction", str(args.fraction), "--epochs", str(args.epochs),
               "--train-len", str(args.train_len), "--seed", str(args.seed), "--out", args.out, "--only", name]
        running.append(subprocess.Popen(cmd, env=env))
    for p in running:
        p.wait()
    report(args)


if __name__ == "__main__":
    main()

"""Recipe: SSR-style joint search (Ye et al., IJCV 2022) under a latency budget measured on this machine.

    python search/ssr_latency.py --lut engines/<device>/lut-ssr-torch-fp32-128x256.json --fraction 0.6

Profiles nothing itself: pass a LUT from `rtseg profile-ops`. The budget T is a fraction of
baseline1's LUT-predicted latency (baseline1 is the SSR paper's hand-designed baseline, Table 7,
so the search has to find a faster net than it); everything else is the library's defaults, which you can
edit here.
"""

from __future__ import annotations

import argparse
import json

from rtseg.spaces import load_arch
from rtseg.latency.lut import load_lut
from rtseg.search import SearchConfig, run_search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lut", required=True)
    ap.add_argument("--fraction", type=float, default=0.6, help="budget T as a fraction of baseline1's predicted latency")
    ap.add_argument("--flops-g", type=float, default=None)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--reg", default="ssr", choices=["ssr", "entropy", "none"])
    ap.add_argument("--no-shrink", action="store_true")
    ap.add_argument("--out", default="runs/ssr-latency")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    lut = load_lut(args.lut)
    h, w = lut.input_hw
    base = load_arch("baseline1").with_(num_classes=lut.num_classes)
    target = args.fraction * lut.predict(base, h, w).total_ms
    cfg = SearchConfig(space="ssr", lut=args.lut, latency_ms=target, flops_g=args.flops_g, input_hw=(h, w),
                       epochs=args.epochs, reg=args.reg, shrink=not args.no_shrink, seed=args.seed)
    result = run_search(cfg, args.out)
    print(json.dumps(result.summary, indent=2))


if __name__ == "__main__":
    main()

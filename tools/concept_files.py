#!/usr/bin/env python3
"""Count the files a newcomer must open to change one concept: the files that name it.

Why: "one concept, one place" is checkable only if it is counted. A concept is given here as the identifiers
and literals that code dealing with it has to mention (its classes, its dispatch strings, its helpers); every
source file of the package (``rtseg/``), every test (``tests/``) and every experiment script (``search/``) that
matches is a file the reader has to open, or at least check, before changing it. It is an upper bound (a file
may name a backend in a help string only), so it compares one checkout with another, not concepts with each
other. Reads text only, so it runs on any checkout (``--root``).

Usage::

    python tools/concept_files.py                  # every concept, this checkout
    python tools/concept_files.py --list backend   # with the files
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

#: concept -> (what changing it means, regex over the source text)
CONCEPTS: dict[str, tuple[str, str]] = {
    "backend": ("change the onnxruntime backend (its timer, runner, converter, name, device naming)",
                r"\"onnxruntime\"|OnnxRuntimeTimer|OrtRunner|ort_session|ort_runner|make_timer|load_runner"
                r"|normalize_backend|BACKENDS\b"),
    "space": ("add a search space (its contract, registration, the search loop's probes, the relaxation)",
              r"register_space|SearchSpace\b|class \w*Supernet|hasattr\((supernet|space|sampler)"
              r"|from rtseg\.spaces\.ssr import|\brelax\b"
              r"|def test_signatures_match_the_modules_that_run|def test_candidate_signatures_cover_every"),
    "cost term": ("change the FLOPs cost term of the architecture loss",
                  r"flops_penalty|flops_weight|expected_flops|flops_budget"),
    "export profile": ("change how export profiles are found, or the default one",
                       r"load_profile|find_profile|profile_dirs|profile_names|default_profile|export/default\.json"
                       r"|ExportOptions\(\)"),
    "erfnet ops": ("change the ERFNet-family operators (non-bottleneck-1D, downsampler, upsampler)",
                   r"ERFNetNonBottleneck1D|ERFNetUpsampler|ERFNetOutput|erfnet_(nb1d|up|out)\b|DownsamplerBlock|\bNB1D\b"),
}


def files_naming(root: Path, pattern: str) -> dict[str, list[str]]:
    """The files under ``rtseg/``, ``tests/`` and ``search/`` (``.py`` and ``.json``) whose text matches."""
    rx = re.compile(pattern)
    out: dict[str, list[str]] = {}
    for top in ("rtseg", "tests", "search"):
        hits = []
        for path in sorted((root / top).rglob("*")):
            if path.suffix in (".py", ".json") and path.is_file() and "__pycache__" not in path.parts:
                if rx.search(path.read_text(encoding="utf-8", errors="replace")):
                    hits.append(str(path.relative_to(root)))
        out[top] = hits
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--list", nargs="*", metavar="CONCEPT", help="list the files of these concepts (none: all)")
    args = parser.parse_args(argv)
    if not (args.root / "rtseg").is_dir():
        print(f"error: no rtseg/ under {args.root}; pass --root to a checkout.", file=sys.stderr)
        return 2
    for name, (what, pattern) in CONCEPTS.items():
        hits = files_naming(args.root, pattern)
        counts = ", ".join(f"{len(v)} {k}/" for k, v in hits.items())
        print(f"{name:15s} {sum(map(len, hits.values())):3d} files ({counts}): {what}")
        if args.list is not None and (not args.list or name in args.list):
            for files in hits.values():
                for f in files:
                    print(f"    {f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

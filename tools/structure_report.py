#!/usr/bin/env python3
"""One report of the counts that say how readable the code is, for comparing one checkout with another.

Why: a structural clean-up is judged by counts taken the same way before and after it: import layers, upward
imports and cycles (from :mod:`import_graph`), functions longer than one screen, long files, the pairs of
places that repeat each other (the ``duplicates`` tool, when it is installed), and how much prose a newcomer
has to read (README and docs lines). It reads the source only (no import of the package), so it runs on any
checkout: ``git archive COMMIT | tar -x -C /tmp/old`` then ``--root /tmp/old``.

Usage::

    python tools/structure_report.py                 # this checkout
    python tools/structure_report.py --root /tmp/old # another one
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import import_graph  # noqa: E402  (the sibling script; reads source only)

#: A function longer than this many lines (``def`` to its last line, docstring included) no longer fits a screen.
LONG_FUNCTION_LINES = 80
#: A module longer than this many lines is listed as a long file.
LONG_FILE_LINES = 600


def long_functions(root: Path, package: str = "rtseg") -> list[tuple[int, str, str]]:
    """``(lines, file, name)`` of every function or method in ``package`` over :data:`LONG_FUNCTION_LINES`."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONG_FUNCTION_LINES:
                    found.append((lines, path.relative_to(root).as_posix(), node.name))
    return sorted(found, key=lambda row: (-row[0], row[1], row[2]))


def long_files(root: Path, package: str = "rtseg") -> list[tuple[int, str]]:
    """``(lines, file)`` of every module in ``package`` over :data:`LONG_FILE_LINES`."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > LONG_FILE_LINES:
            found.append((lines, path.relative_to(root).as_posix()))
    return sorted(found, key=lambda row: (-row[0], row[1]))


def prose_lines(root: Path) -> dict[str, int]:
    """Lines of the top README, of every README.md in the tree, and of the pages under ``docs/``."""
    skip = {".git", ".venv", "node_modules", "build", "dist"}
    readmes = [p for p in root.rglob("README.md") if not skip.intersection(p.relative_to(root).parts)]
    docs = sorted((root / "docs").glob("*.md")) if (root / "docs").is_dir() else []

    def count(paths: list[Path]) -> int:
        return sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths)

    top = root / "README.md"
    return {"README.md": count([top]) if top.exists() else 0, "READMEs": len(readmes),
            "README lines": count(readmes), "docs pages": len(docs), "docs lines": count(docs)}


def duplicate_pairs(root: Path, package: str = "rtseg") -> str:
    """The number of pairs the ``duplicates`` tool lists in ``package``, or why it could not be counted."""
    tool = shutil.which("duplicates")
    if tool is None:
        return "n/a (the duplicates tool is not installed)"
    out = subprocess.run([tool, "--repo", str(root / package), "--most", "1", "--seconds", "120"],
                         capture_output=True, text=True, check=False).stdout
    first = out.splitlines()[0] if out else ""
    if first.startswith("no duplicates"):
        return "0"
    match = re.match(r"(\d+) pairs?", first)
    return match.group(1) if match else f"n/a ({first or 'no output'})"


def report(root: Path) -> list[str]:
    """The report's lines: a summary of counts, then the lists behind them."""
    graph = import_graph.analyse(root, "rtseg")
    functions, files, prose = long_functions(root), long_files(root), prose_lines(root)
    lines = [
        f"modules in rtseg/: {graph['modules']}",
        f"import layers (all runtime imports; module-level only): {graph['layers']}; {graph['layers_module_level_only']}",
        f"upward imports (function-local, closing a cycle): {len(graph['upward_imports'])}",
        f"import cycles: {len(graph['cycles'])}",
        f"function-local imports of rtseg modules: {graph['function_local_imports']}"
        f" ({graph['function_local_only_hiding']} only hiding an ordinary import)",
        f"functions over {LONG_FUNCTION_LINES} lines in rtseg/: {len(functions)}",
        f"modules over {LONG_FILE_LINES} lines in rtseg/: {len(files)}",
        f"duplicates pairs in rtseg/: {duplicate_pairs(root)}",
        f"README.md lines: {prose['README.md']}",
        f"README.md files: {prose['READMEs']}, {prose['README lines']} lines",
        f"docs/ pages: {prose['docs pages']}, {prose['docs lines']} lines",
        "",
        "upward imports:",
        *(f"  {u['src']} -> {u['dst']}  {u['file']}:{u['line']}" for u in graph["upward_imports"]),
        "import cycles:",
        *(f"  {' -> '.join(c['loop'])}  [{len(c['modules'])} modules]" for c in graph["cycles"]),
        f"functions over {LONG_FUNCTION_LINES} lines:",
        *(f"  {n:4d}  {f}:{name}" for n, f, name in functions),
        f"modules over {LONG_FILE_LINES} lines:",
        *(f"  {n:4d}  {f}" for n, f in files),
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="the checkout to count (default: this one)")
    args = parser.parse_args(argv)
    print("\n".join(report(args.root.resolve())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Measure the import structure of a package from its own source: layers, upward imports, cycles, hidden imports.

Why: a package whose modules import each other in one direction can be read (and changed) bottom-up; imports
that run back up the layers, cycles, and imports tucked inside functions to dodge those cycles are what make a
change need more files opened than the concept it touches. This script reads the source with :mod:`ast` (it
imports nothing from the package, so it runs on any checkout, e.g. an old commit extracted with ``git archive``)
and prints four counts:

* **layers** -- every runtime import (module-level and function-local; ``if TYPE_CHECKING:`` blocks excluded)
  forms a graph whose strongly connected components are condensed into one node each; a module's layer is 0
  when it imports no module of the package and otherwise one more than the highest layer it imports. A lazy
  import is still a dependency for the reader, so it counts. The count over module-level imports alone (what
  Python executes at import time) is printed beside it.
* **upward imports** -- function-local imports ``a -> b`` where ``b`` imports ``a`` back (transitively, through
  any imports): imports running back up the layers, each one kept lazy only so that Python can load the loop.
* **cycles** -- strongly connected components of more than one module in that graph; each is printed as one
  shortest loop through its first module, with the component's size.
* **function-local imports** -- import statements (one per statement and target module) of package modules
  inside a function or method body. Those that are not upward imports *could be ordinary*: moving them to the
  top of the module creates no cycle. Some are still deliberate: they keep a heavy or optional third-party
  package (:data:`HEAVY`: torch, OpenCV, ONNX, TensorRT...) off a path that must not load it (the CLI's
  start-up, the torch-free deploy path). So each is also marked with the heavy packages that hoisting it would
  load at import time that the importer does not already load (parent packages' ``__init__`` included, as
  Python runs them); those with none *only hide an ordinary import*.

Resolution: ``import pkg.a.b`` and ``from pkg.a import b`` (when ``pkg/a/b.py`` or ``pkg/a/b/`` exists) name
the module ``pkg.a.b``; ``from pkg.a import name`` otherwise names ``pkg.a`` (its ``__init__``, whose own
imports then count). Parent packages that Python initialises implicitly are not counted as edges, the way
import linters treat them. Relative imports are resolved against the importer.

Usage::

    python tools/import_graph.py                 # the rtseg package of this checkout
    python tools/import_graph.py --root /tmp/old --list   # another checkout, with every hidden import listed
    python tools/import_graph.py --json          # one JSON object on stdout
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path


#: Third-party packages whose import costs start-up time or that an install may lack (NumPy, the ``torch`` extra,
#: OpenCV, ONNX, ONNX Runtime, TensorRT and its CUDA bindings): a function-local import that keeps one of
#: these off a module's import is deliberate.
HEAVY = frozenset({"numpy", "torch", "torchvision", "fvcore", "onnxslim", "onnxscript", "matplotlib", "cv2", "onnx",
                   "onnxruntime", "tensorrt", "cuda", "pycuda", "torchmetrics", "scipy", "PIL"})


@dataclass(frozen=True)
class Edge:
    """One import statement's resolved target: ``src`` imports ``dst`` at ``line``; ``local`` if inside a function."""

    src: str
    dst: str
    line: int
    local: bool


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Map every module of ``package`` under ``root`` to its file (packages map to their ``__init__.py``)."""
    out: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Collector(ast.NodeVisitor):
    """Collect (module names, line, local) for every import statement, skipping ``if TYPE_CHECKING:`` bodies."""

    def __init__(self, modname: str, is_package: bool, modules: set[str], package: str):
        self.modname, self.is_package, self.modules, self.package = modname, is_package, modules, package
        self.depth = 0  # function nesting
        self.found: list[tuple[str, int, bool]] = []
        self.third_party: set[str] = set()  # top-level names of non-package modules imported at module level
        self.type_only: list[tuple[str, int]] = []
        self._type_checking = 0

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._type_checking += 1
            for child in node.body:
                self.visit(child)
            self._type_checking -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _add(self, target: str, line: int) -> None:
        if target == self.modname:
            return
        if self._type_checking:
            self.type_only.append((target, line))
        else:
            self.found.append((target, line, self.depth > 0))

    def _resolve_module(self, dotted: str) -> str | None:
        """The longest prefix of ``dotted`` that is a module of the package."""
        parts = dotted.split(".")
        while parts:
            name = ".".join(parts)
            if name in self.modules:
                return name
            parts.pop()
        return None

    def _third_party(self, dotted: str) -> None:
        if self.depth == 0 and not self._type_checking:
            self.third_party.add(dotted.split(".")[0])

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not (alias.name == self.package or alias.name.startswith(self.package + ".")):
                self._third_party(alias.name)
            if alias.name == self.package or alias.name.startswith(self.package + "."):
                target = self._resolve_module(alias.name)
                if target:
                    self._add(target, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.modname.split(".")
            if not self.is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            dotted = ".".join(base + ([node.module] if node.module else []))
        else:
            dotted = node.module or ""
        if not (dotted == self.package or dotted.startswith(self.package + ".")):
            if not node.level and dotted:
                self._third_party(dotted)
            return
        for alias in node.names:
            sub = f"{dotted}.{alias.name}"
            if sub in self.modules:
                self._add(sub, node.lineno)
            else:
                target = self._resolve_module(dotted)
                if target:
                    self._add(target, node.lineno)


def collect_edges(root: Path, package: str) -> tuple[dict[str, Path], list[Edge], list[Edge], dict[str, set[str]]]:
    """Every resolved import edge of the package (runtime ones, and ``TYPE_CHECKING``-only ones apart), and
    the third-party top-level packages each module imports at module level."""
    files = module_files(root, package)
    names = set(files)
    edges: list[Edge] = []
    typing_edges: list[Edge] = []
    third: dict[str, set[str]] = {}
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        col = _Collector(mod, path.name == "__init__.py", names, package)
        col.visit(tree)
        seen: set[tuple[str, int]] = set()
        for dst, line, local in col.found:
            if (dst, line) not in seen:  # one statement importing two names of one module counts once
                seen.add((dst, line))
                edges.append(Edge(mod, dst, line, local))
        typing_edges += [Edge(mod, dst, line, False) for dst, line in col.type_only]
        third[mod] = col.third_party
    return files, edges, typing_edges, third


def strongly_connected(nodes: list[str], adj: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the strongly connected components of the graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(adj[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(adj[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                comps.append(sorted(comp))
    return comps


def layers_of(nodes: list[str], adj: dict[str, set[str]]) -> dict[str, int]:
    """Longest-path layer of each module in the condensation of ``adj`` (0 = imports nothing of the package)."""
    comps = strongly_connected(nodes, adj)  # Tarjan emits components in reverse topological order
    comp_of = {m: i for i, comp in enumerate(comps) for m in comp}
    layer_of_comp: dict[int, int] = {}
    for i, comp in enumerate(comps):
        below = [layer_of_comp[comp_of[d]] for m in comp for d in adj[m] if comp_of[d] != i]
        layer_of_comp[i] = 1 + max(below) if below else 0
    return {m: layer_of_comp[comp_of[m]] for m in nodes}


def shortest_loop(comp: list[str], adj: dict[str, set[str]]) -> list[str]:
    """One shortest cycle through the first module of a strongly connected component (BFS inside it)."""
    members = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(adj[node] & members):
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return list(reversed(path)) + [start]
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    return comp


def reachable(start: str, adj: dict[str, set[str]]) -> set[str]:
    """Every module ``start`` imports, transitively."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in adj[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def analyse(root: Path, package: str) -> dict:
    """All the counts, as one JSON-able dict."""
    files, edges, typing_edges, third = collect_edges(root, package)
    nodes = sorted(files)
    top: dict[str, set[str]] = {m: set() for m in nodes}
    full: dict[str, set[str]] = {m: set() for m in nodes}
    for e in edges:
        full[e.src].add(e.dst)
        if not e.local:
            top[e.src].add(e.dst)
    layer = layers_of(nodes, full)
    top_layer = layers_of(nodes, top)
    comps = strongly_connected(nodes, full)
    comp_of = {m: i for i, comp in enumerate(comps) for m in comp}
    cycles = [c for c in comps if len(c) > 1]
    top_cycles = [c for c in strongly_connected(nodes, top) if len(c) > 1]

    local = [e for e in edges if e.local]
    upward = [e for e in local if comp_of[e.src] == comp_of[e.dst]]
    hoistable = [e for e in local if comp_of[e.src] != comp_of[e.dst]]

    # what importing a module loads, as Python does it: its parents' __init__ first, then its module-level imports
    with_parents = {m: set(top[m]) | {".".join(m.split(".")[:i]) for i in range(1, m.count(".") + 1)} & set(nodes)
                    for m in nodes}
    loads = {m: reachable(m, with_parents) | {m} for m in nodes}
    heavy_of = {m: set().union(*(third[x] for x in loads[m])) & HEAVY for m in nodes}

    def rel(e: Edge) -> dict:
        out = {"file": str(files[e.src].relative_to(root)), "line": e.line, "src": e.src, "dst": e.dst}
        if e.local:
            out["would_load"] = sorted(heavy_of[e.dst] - heavy_of[e.src])
        return out

    by_layer: dict[int, list[str]] = defaultdict(list)
    for m in nodes:
        by_layer[layer[m]].append(m)
    per_file: dict[str, int] = defaultdict(int)
    for e in local:
        per_file[str(files[e.src].relative_to(root))] += 1
    return {
        "package": package,
        "modules": len(nodes),
        "import_edges": len({(e.src, e.dst) for e in edges}),
        "layers": len(by_layer),
        "layers_module_level_only": len(set(top_layer.values())),
        "by_layer": {str(k): v for k, v in sorted(by_layer.items())},
        "upward_imports": [rel(e) for e in upward],
        "cycles": [{"modules": c, "loop": shortest_loop(c, full)} for c in cycles],
        "module_level_cycles": [shortest_loop(c, top) for c in top_cycles],
        "function_local_imports": len(local),
        "function_local_statements": len({(e.src, e.line) for e in local}),
        "function_local_by_file": dict(sorted(per_file.items(), key=lambda kv: (-kv[1], kv[0]))),
        "function_local_hoistable": [rel(e) for e in hoistable],
        "function_local_only_hiding": sum(1 for e in hoistable if not heavy_of[e.dst] - heavy_of[e.src]),
        "type_checking_imports": len(typing_edges),
    }


def render(result: dict, show_list: bool) -> str:
    """The human summary printed by default."""
    lines = [
        f"package {result['package']}: {result['modules']} modules, {result['import_edges']} import edges",
        f"layers: {result['layers']} (all runtime imports, cycles condensed);"
        f" {result['layers_module_level_only']} counting module-level imports only",
        f"upward imports (function-local, closing a cycle): {len(result['upward_imports'])}",
    ]
    for e in result["upward_imports"]:
        lines.append(f"  {e['src']} -> {e['dst']}  {e['file']}:{e['line']}")
    lines.append(f"import cycles: {len(result['cycles'])}")
    for c in result["cycles"]:
        lines.append(f"  {' -> '.join(c['loop'])}   [{len(c['modules'])} modules: {' '.join(c['modules'])}]")
    if result["module_level_cycles"]:
        lines.append(f"  of which cycles among module-level imports alone: {len(result['module_level_cycles'])}")
    lines.append(f"function-local imports of {result['package']} modules: {result['function_local_imports']}"
                 f" in {result['function_local_statements']} statements ({len(result['upward_imports'])} upward,"
                 f" {len(result['function_local_hoistable'])} could be module-level without creating a cycle,"
                 f" {result['function_local_only_hiding']} of them without loading a heavy package the importer does"
                 " not: they only hide an ordinary import)")
    lines.append(f"TYPE_CHECKING-only imports (not counted): {result['type_checking_imports']}")
    if show_list:
        lines.append("")
        lines.append("layers:")
        for k, mods in result["by_layer"].items():
            lines.append(f"  L{k}: {' '.join(mods)}")
        lines.append("function-local imports per file:")
        for f, n in result["function_local_by_file"].items():
            lines.append(f"  {n:4d}  {f}")
        lines.append("function-local imports that could be module-level:")
        for e in result["function_local_hoistable"]:
            heavy = f"  (would load {', '.join(e['would_load'])})" if e["would_load"] else ""
            lines.append(f"  {e['file']}:{e['line']}  {e['src']} -> {e['dst']}{heavy}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="checkout holding the package (default: this one)")
    parser.add_argument("--package", default="rtseg")
    parser.add_argument("--list", action="store_true", help="also list layers and every function-local import")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    if not (args.root / args.package).is_dir():
        print(f"error: no package directory {args.root / args.package}; pass --root to a checkout.", file=sys.stderr)
        return 2
    result = analyse(args.root, args.package)
    print(json.dumps(result, indent=1) if args.json else render(result, args.list))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

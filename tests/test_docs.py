"""The READMEs and docs name only what exists, link only to what resolves, and quote measured tables as
their records give them.

Why: prose drifts. A module moved without its README (``rtseg/latency/README.md`` once described modules
that had moved to ``rtseg/backends/``) or a table typed by hand is caught here, reading text only (no
import of the package), so the check is fast.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import render_tables  # noqa: E402  (tools/ is not a package; the script imports only the standard library)

DOCS = render_tables.markdown_files(ROOT)
#: ``rtseg/...`` paths of a Python file or a folder (a placeholder such as ``rtseg/export_profiles/NAME.json`` is no path)
PATH = re.compile(r"(?<![\w./-])rtseg/(?:\w+/)*(?:\w+\.py(?![\w.])|\w+(?![\w./-]))?")
DOTTED = re.compile(r"(?<![\w./-])rtseg(?:\.\w+)+")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _module_file(dotted: str) -> Path | None:
    """The source file of module ``dotted`` (a package's ``__init__.py``), or None when it is no module."""
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level_names(path: Path) -> set[str]:
    """Names a module defines or imports at its top level (functions, classes, assignments, imports)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and isinstance(node.value, (ast.List, ast.Tuple)):
                names |= {e.value for e in node.value.elts if isinstance(e, ast.Constant)}  # a lazy module attribute is public
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try)):  # names bound in a guarded import
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
            names |= {(a.asname or a.name).split(".")[0] for n in ast.walk(node)
                      if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    return names


def _format_names() -> set[str]:
    """The ``"rtseg.NAME"`` strings the code writes as a JSON file's ``format`` (``rtseg.lut``, ``rtseg.arch``...)."""
    files = [*ROOT.joinpath("rtseg").rglob("*.py"), *ROOT.joinpath("tools").glob("*.py"), *ROOT.joinpath("search").glob("*.py")]
    return {m for f in files for m in re.findall(r"[\"'](rtseg\.\w+)[\"']", f.read_text(encoding="utf-8"))}


FORMAT_NAMES = _format_names()


def _dotted_exists(dotted: str) -> bool:
    """``rtseg.a.b`` is a module, or ``rtseg.a.NAME`` a name that module ``rtseg.a`` defines or imports, or
    a JSON format name the code writes."""
    parts = dotted.split(".")
    if _module_file(dotted) is not None or dotted in FORMAT_NAMES:
        return True
    module = _module_file(".".join(parts[:-1]))
    return module is not None and parts[-1] in _top_level_names(module)


def test_docs_are_found():
    names = {_rel(p) for p in DOCS}
    assert {"README.md", "docs/install.md", "rtseg/latency/README.md", "search/README.md"} <= names


def test_the_readme_is_a_product_page():
    assert len((ROOT / "README.md").read_text(encoding="utf-8").splitlines()) <= 200


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_every_rtseg_path_named_exists(doc: Path):
    """Every ``rtseg/...`` path a doc names is a file or folder of the checkout (``.py`` files and module
    folders alike), and every ``rtseg.x.y`` dotted name is a module or a name its module defines."""
    text = doc.read_text(encoding="utf-8")
    missing = sorted({m for m in PATH.findall(text) if not (ROOT / m).exists()})
    assert not missing, f"{_rel(doc)} names paths that do not exist: {missing}"
    wrong = sorted({d for d in DOTTED.findall(text) if not _dotted_exists(d)})
    assert not wrong, f"{_rel(doc)} names modules or names that do not exist: {wrong}"


@pytest.mark.parametrize("doc", [d for d in DOCS if _rel(d).startswith("rtseg/")], ids=_rel)
def test_package_readmes_list_existing_modules(doc: Path):
    """A README inside the package lists its folder's modules in a table: every one it names exists there."""
    listed = re.findall(r"^\| `(\w+\.py)` \|", doc.read_text(encoding="utf-8"), flags=re.M)
    assert listed, f"{_rel(doc)} lists no module"
    assert not [m for m in listed if not (doc.parent / m).is_file()], f"{_rel(doc)} lists modules not in {_rel(doc.parent)}"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_every_relative_link_resolves(doc: Path):
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert not broken, f"{_rel(doc)} links to what does not exist: {broken}"


def test_measured_tables_equal_their_records():
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "render_tables.py"), "--check"],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr


def _figures_record(rows: list[list[str]]) -> dict:
    return {"format": "rtseg.figures", "schema_version": 1, "title": "a table", "machine": "here", "command": "cmd",
            "provenance": "test", "columns": [{"name": "a"}, {"name": "b", "align": "r"}], "rows": rows}


def test_check_fails_when_a_record_changes_and_rendering_fixes_it(tmp_path: Path):
    records = tmp_path / "search" / "results" / "figures"
    records.mkdir(parents=True)
    (records / "t.json").write_text(json.dumps(_figures_record([["x", "1.0"]])))
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "page.md"
    page.write_text("# Page\n\n<!-- table: figures/t (generated by tools/render_tables.py; do not edit) -->\n"
                    "<!-- /table -->\n\nAfter.\n")
    script = [sys.executable, str(ROOT / "tools" / "render_tables.py"), "--root", str(tmp_path)]
    assert subprocess.run(script + ["--check"], capture_output=True).returncode == 1
    assert subprocess.run(script, capture_output=True).returncode == 0
    assert "| x | 1.0 |" in page.read_text() and page.read_text().endswith("<!-- /table -->\n\nAfter.\n")
    assert subprocess.run(script + ["--check"], capture_output=True).returncode == 0
    (records / "t.json").write_text(json.dumps(_figures_record([["x", "2.0"]])))
    stale = subprocess.run(script + ["--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "+| x | 2.0 |" in stale.stdout and "docs/page.md" in stale.stderr


def test_default_strategy_table_has_a_row_per_record(tmp_path: Path):
    """The lead adds records by dropping a run's search.json into search/results/default/: one more row."""
    src = sorted((ROOT / "search" / "results" / "default").glob("*.json"))
    dest = tmp_path / "search" / "results" / "default"
    dest.mkdir(parents=True)
    shutil.copy(src[0], dest / "a.json")
    shutil.copy(src[0], dest / "b.json")
    lines = render_tables.render("default-strategy", tmp_path)
    assert [line.split(" | ")[0] for line in lines if line.startswith("| `")] == ["| `a`", "| `b`"]


def test_an_unknown_table_is_one_error_line(tmp_path: Path):
    (tmp_path / "README.md").write_text("<!-- table: nope (generated by tools/render_tables.py; do not edit) -->\n<!-- /table -->\n")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "render_tables.py"), "--root", str(tmp_path), "--check"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.startswith("error: README.md: ") and len(run.stderr.splitlines()) == 1


def test_every_doc_the_code_points_to_exists():
    """Docstrings and help texts cite the page that holds a figure or a reason (``docs/luts.md``...): it exists."""
    top = "|".join(sorted(p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")))
    cited = re.compile(rf"(?<![\w/.-])((?:{top})/(?:[\w-]+/)*[\w-]+\.md)\b")
    files = [*ROOT.joinpath("rtseg").rglob("*.py"), *(p for d in ("search", "demos", "export", "tools") for p in ROOT.joinpath(d).glob("*.py"))]
    missing = sorted({f"{_rel(f)}: {m}" for f in files for m in cited.findall(f.read_text(encoding="utf-8")) if not (ROOT / m).is_file()})
    assert not missing, missing

"""The package's layout: no import cycles, no oversized source files.

The import graph is read from the source by :mod:`_imports`: every ``import`` and ``from ...
import`` of a module of ``srdefense``, at module level and inside functions alike (a
function-local import that dodges a cycle is still a cycle), including those under ``if
TYPE_CHECKING`` (layering, not run-time order). ``from pkg import name`` counts as importing
``pkg.name`` when that is a module, else ``pkg``.

To extend the checks to a part of the package still excluded, shrink :data:`CYCLES_ALLOWED_IN`
or :data:`LONG_FILES_ALLOWED`; both only ever shrink.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _imports import PACKAGE, SRC, find_cycles, import_edges, module_files

#: Subpackages whose modules may still sit on an import cycle. The command line imports
#: everything and is imported by nothing.
CYCLES_ALLOWED_IN = ("srdefense.cli",)

#: Longest source file allowed, in lines.
MAX_LINES = 600
#: Files not yet split (each its current length, so that it may only shrink).
LONG_FILES_ALLOWED: dict[str, int] = {}


def import_graph() -> dict[str, dict[str, list[str]]]:
    """Module -> the srdefense modules it imports (anywhere in its source, ``TYPE_CHECKING`` too)."""
    return import_edges(module_files(), type_checking=True, package_edges=False)


def test_graph_sees_function_level_imports():
    graph = import_graph()
    # sanity of the graph itself: known module-level edges are there
    assert "srdefense.purification.base" in graph["srdefense.purification.wavelet"]
    assert "srdefense._registry" in graph["srdefense.attacks.registry"]


def test_graph_counts_type_checking_imports_and_names_submodules_only(tmp_path: Path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import x\n")
    (pkg / "b.py").write_text("from pkg import c\n")
    (pkg / "c.py").write_text("from . import _ext\n")
    (pkg / "_ext.pyi").write_text("def f() -> None: ...\n")  # a compiled extension's stub
    edges = import_edges(module_files(tmp_path, "pkg"), type_checking=True, package_edges=False)
    assert set(edges["pkg.a"]) == {"pkg.b"}
    assert set(edges["pkg.b"]) == {"pkg.c"}  # the submodule, not the package
    assert set(edges["pkg.c"]) == {"pkg._ext"}  # the extension, not the package


def test_cycle_finder_finds_a_cycle():
    g: dict[str, dict[str, list[str]]] = {"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}}
    assert find_cycles(g) == [["a", "b", "c"]]
    assert find_cycles(g, ("c",)) == []


def test_no_import_cycles_outside_the_allowed_subpackages():
    cycles = find_cycles(import_graph(), CYCLES_ALLOWED_IN)
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("path", sorted((SRC / PACKAGE).rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_source_file_over_the_limit(path):
    rel = str(path.relative_to(SRC))
    n = len(path.read_text().splitlines())
    limit = LONG_FILES_ALLOWED.get(rel, MAX_LINES)
    assert n <= limit, f"{rel}: {n} lines (limit {limit}); split it"


def test_long_file_allow_list_only_names_long_files():
    for rel in LONG_FILES_ALLOWED:
        path = SRC / rel
        assert path.is_file(), f"{rel} is gone: drop it from LONG_FILES_ALLOWED"
        n = len(path.read_text().splitlines())
        assert n > MAX_LINES, f"{rel} is down to {n} lines: drop it from LONG_FILES_ALLOWED"

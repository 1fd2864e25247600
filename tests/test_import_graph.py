"""No import cycles among the evaluation modules, counting imports inside functions too.

The graph is read from the source by :mod:`_imports`, with the imports that run: ``from pkg import
name`` is an edge to ``pkg`` (its ``__init__`` runs) and, where ``name`` is a submodule, to ``pkg.name``;
imports under ``if TYPE_CHECKING:`` never run and are left out. Run this file as a script to print every
cycle.
"""

from __future__ import annotations

from pathlib import Path

from _imports import describe, find_cycles, module_files
from _imports import import_edges as _edges

SCOPE = "srdefense.evaluation"


def import_edges(modules: dict[str, Path]) -> dict[str, dict[str, list[str]]]:
    """The graph of this check: imports that run (not ``TYPE_CHECKING``), package edges included."""
    return _edges(modules, type_checking=False, package_edges=True)


def test_no_import_cycle_touches_the_evaluation_package() -> None:
    edges = import_edges(module_files())
    assert f"{SCOPE}.runner" in edges and edges[f"{SCOPE}.runner"]  # the graph was read
    bad = [c for c in find_cycles(edges) if any(m == SCOPE or m.startswith(SCOPE + ".") for m in c)]
    assert not bad, "\n".join(describe(c, edges) for c in bad)


def test_the_cycle_finder_finds_a_cycle_through_a_function_local_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import x\nimport pkg.a\n"
    )
    (pkg / "d.py").write_text("from .c import y\n")
    edges = import_edges(module_files(tmp_path, "pkg"))
    assert edges["pkg.sub.b"] == {"pkg.c": ["line 2 (in a function)"]}
    assert "pkg.d" not in edges["pkg.c"]  # TYPE_CHECKING only
    assert find_cycles(edges) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    assert "pkg.sub.b -> pkg.c  (line 2 (in a function))" in describe(find_cycles(edges)[0], edges)


if __name__ == "__main__":
    graph = import_edges(module_files())
    for comp in find_cycles(graph):
        print(describe(comp, graph))

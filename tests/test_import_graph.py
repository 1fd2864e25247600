"""No import cycles among the evaluation modules, counting imports inside functions too.

The graph is read from the source with :mod:`ast` (nothing is imported): an edge ``a -> b`` for every
``import`` or ``from ... import`` in module ``a``, at module level or inside a function, that names the
srdefense module ``b``. ``from pkg import name`` is an edge to ``pkg`` (its ``__init__`` runs) and, where
``name`` is a submodule, to ``pkg.name``. Imports under ``if TYPE_CHECKING:`` never run and are left out;
so is the implicit import of a parent package. Run this file as a script to print every cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "srdefense"
SCOPE = "srdefense.evaluation"


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` under ``src``, by dotted name (a package by its own name)."""
    out: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it is at module level (not inside a def)."""

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), top)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, top
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, inner)

    yield from walk(tree, True)


def import_edges(modules: dict[str, Path]) -> dict[str, dict[str, list[str]]]:
    """``{importer: {imported: ["line N (module level|in a function)", ...]}}`` between srdefense modules."""
    edges: dict[str, dict[str, list[str]]] = {m: {} for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]  # the package a relative import starts at
        for node, top in _imports(ast.parse(path.read_text(), filename=str(path))):
            where = f"line {node.lineno} ({'module level' if top else 'in a function'})"
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = here[: len(here) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
            for t in targets:
                # "import a.b.c" runs a, a.b and a.b.c: the deepest srdefense module named is the edge
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and where not in edges[name].setdefault(t, []):
                    edges[name][t].append(where)
    return edges


def find_cycles(edges: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def describe(cycle: list[str], edges: dict[str, dict[str, list[str]]]) -> str:
    """The import lines that hold one strongly connected component together."""
    members = set(cycle)
    lines = [f"cycle among {', '.join(cycle)}:"]
    for a in cycle:
        for b, where in sorted(edges[a].items()):
            if b in members:
                lines.append(f"  {a} -> {b}  ({'; '.join(where)})")
    return "\n".join(lines)


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

"""The package's import graph, read from the source with :mod:`ast` (nothing is imported), and its cycles.

An edge ``a -> b`` for every ``import`` or ``from ... import`` in module ``a``, at module level or
inside a function (a function-local import that dodges a cycle is still a cycle), that names the
module ``b`` of the package. ``import a.b.c`` is an edge to the deepest module it names. Two
readings differ between the checks that use the graph, so they are switches:

* ``type_checking``: whether imports under ``if TYPE_CHECKING:`` count (they never run, but a
  layout check may still want the modules apart);
* ``package_edges``: whether ``from pkg import sub`` (``sub`` a submodule) is an edge to ``pkg``
  as well as to ``pkg.sub`` (``pkg/__init__`` runs first), or to ``pkg.sub`` alone.

The implicit import of a parent package is never an edge. Used by ``test_layout`` and
``test_import_graph``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "srdefense"

#: ``{importer: {imported: ["line N (module level|in a function)", ...]}}``
Edges = dict[str, dict[str, list[str]]]


def module_files(src: Path = SRC, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of ``package`` under ``src``, by dotted name (a package by its own name).

    A compiled extension counts by its type stub (``.pyi`` with no ``.py`` beside it).
    """
    out: dict[str, Path] = {}
    stubs = [p for p in (src / package).rglob("*.pyi") if not p.with_suffix(".py").exists()]
    for path in sorted([*(src / package).rglob("*.py"), *stubs]):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, type_checking: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it is at module level (not inside a def)."""

    def walk(node: ast.AST, top: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if not type_checking and isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), top)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child, top
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            yield from walk(child, inner)

    yield from walk(tree, True)


def import_edges(modules: dict[str, Path], *, type_checking: bool, package_edges: bool) -> Edges:
    """The edges between ``modules`` (see the module docstring for the two switches)."""
    edges: Edges = {m: {} for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]  # where a relative import starts
        for node, top in _imports(ast.parse(path.read_text(), filename=str(path)), type_checking):
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
                subs = [f"{stem}.{a.name}" for a in node.names]
                if package_edges:
                    targets = [stem, *subs]
                else:  # each name: the submodule it is, else the module it comes from
                    targets = [s if s in modules else stem for s in subs]
            for t in targets:
                while t and t not in modules:  # the deepest module of the package named
                    t = t.rpartition(".")[0]
                if t and t != name and where not in edges[name].setdefault(t, []):
                    edges[name][t].append(where)
    return edges


def find_cycles(edges: Edges, exempt: tuple[str, ...] = ()) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted.

    Modules in (or under) a name of ``exempt`` are left out of the graph, with their edges.
    """

    def left_out(m: str) -> bool:
        return any(m == a or m.startswith(a + ".") for a in exempt)

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
            if left_out(w):
                continue
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
        if v not in index and not left_out(v):
            visit(v)
    return out


def describe(cycle: list[str], edges: Edges) -> str:
    """The import lines that hold one strongly connected component together."""
    members = set(cycle)
    lines = [f"cycle among {', '.join(cycle)}:"]
    for a in cycle:
        for b, where in sorted(edges[a].items()):
            if b in members:
                lines.append(f"  {a} -> {b}  ({'; '.join(where)})")
    return "\n".join(lines)

"""The package's layout: no import cycles, no oversized source files.

The import graph is built from the source with ``ast``: every ``import`` and ``from ... import``
of a module of ``srdefense``, at module level and inside functions alike (a function-local
import that dodges a cycle is still a cycle), including those under ``if TYPE_CHECKING``.
``from pkg import name`` counts as importing ``pkg.name`` when that is a module, else ``pkg``.

To extend the checks to a part of the package still excluded, shrink :data:`CYCLES_ALLOWED_IN`
or :data:`LONG_FILES_ALLOWED`; both only ever shrink.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "srdefense"

#: Subpackages whose modules may still sit on an import cycle. The command line imports
#: everything and is imported by nothing.
CYCLES_ALLOWED_IN = ("srdefense.cli",)

#: Longest source file allowed, in lines.
MAX_LINES = 600
#: Files not yet split (each its current length, so that it may only shrink).
LONG_FILES_ALLOWED: dict[str, int] = {}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def import_graph() -> dict[str, set[str]]:
    """Module name -> the srdefense modules it imports (anywhere in its source)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = _resolve(mod, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in mods else base)
            for t in targets:
                # `import a.b.c` names a module; keep the longest known prefix
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def import_cycles(graph: dict[str, set[str]], allowed: tuple[str, ...]) -> list[list[str]]:
    """Strongly connected components of more than one module, among the modules not allowed one."""

    def exempt(m: str) -> bool:
        return any(m == a or m.startswith(a + ".") for a in allowed)

    nodes = [m for m in graph if not exempt(m)]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    sccs: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:  # Tarjan; the graph is small, recursion is fine
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if exempt(w):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return sccs


def test_graph_sees_function_level_imports():
    graph = import_graph()
    # sanity of the graph itself: known module-level edges are there
    assert "srdefense.purification.base" in graph["srdefense.purification.wavelet"]
    assert "srdefense._registry" in graph["srdefense.attacks.registry"]


def test_cycle_finder_finds_a_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert import_cycles(g, ()) == [["a", "b", "c"]]
    assert import_cycles(g, ("c",)) == []


def test_no_import_cycles_outside_the_allowed_subpackages():
    cycles = import_cycles(import_graph(), CYCLES_ALLOWED_IN)
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

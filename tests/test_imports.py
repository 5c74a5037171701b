"""The source tree's shape: imports among pagemap's modules point down (no
cycle), and no file is too long to read as one concept.

The import graph is read with ast, not by importing: every import counts,
at module level, inside a function, or under `if TYPE_CHECKING:` (a cycle
through a type-only import is still two modules that each need the other
to be read).  `from pkg import name` is an edge to pkg.name when that is a
module, else to pkg; the implicit import of a package's __init__ on the way
to one of its modules is not an edge (every module would otherwise depend
on every package it sits in).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pagemap

SRC = Path(pagemap.__file__).resolve().parent
MAX_LINES = 500


# Imports that point up, each the back edge of a cycle: a type named only for
# the checker (`if TYPE_CHECKING:`) or a function-local import.  None today:
# a new one is a cycle to break by moving the type or the code it needs into a
# lower module, or by naming what is needed with a Protocol there.
ALLOWED_BACK_EDGES: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The pagemap modules that module `name` imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = alias.name
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target:
                    found.add(target)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module not in known:
                continue
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (iterative DFS)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for root in sorted(graph):
        if colour[root] != WHITE:
            continue
        stack: list[tuple[str, list[str]]] = [(root, sorted(graph[root]))]
        colour[root] = GREY
        while stack:
            node, todo = stack[-1]
            if not todo:
                colour[node] = BLACK
                stack.pop()
                continue
            nxt = todo.pop(0)
            if colour.get(nxt, BLACK) == GREY:
                path = [n for n, _ in stack]
                return [*path[path.index(nxt) :], nxt]
            if colour.get(nxt) == WHITE:
                colour[nxt] = GREY
                stack.append((nxt, sorted(graph[nxt])))
    return None


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = _graph()
    # A module-level import, one inside a TYPE_CHECKING block, one in a function.
    assert "pagemap.kernel.page" in graph["pagemap.kernel.pagemap"]
    assert "pagemap.kernel.removal" in graph["pagemap.kernel.writeback"]
    assert "pagemap.check.schema" in graph["pagemap.check.trace"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    graph = _graph()
    for importer, imported in ALLOWED_BACK_EDGES:
        graph[importer].discard(imported)
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_each_allowed_back_edge_still_exists() -> None:
    graph = _graph()
    gone = sorted(e for e in ALLOWED_BACK_EDGES if e[1] not in graph.get(e[0], set()))
    assert not gone, f"no longer imported, take out of ALLOWED_BACK_EDGES: {gone}"


def test_no_file_over_the_limit() -> None:
    long = {
        str(p.relative_to(SRC)): n
        for p in sorted(SRC.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"files over {MAX_LINES} lines: {long}"

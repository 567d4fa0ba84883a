#!/usr/bin/env python3
"""The import graph of src/hivemem, and its cycles.

    python scripts/import_graph.py            # cycles among modules, any import (top-level or in a function)
    python scripts/import_graph.py --top      # only imports that run when the module is imported
    python scripts/import_graph.py --packages # the graph between subpackages (the architecture)

Exit status 1 when a cycle exists. An import under ``if TYPE_CHECKING:`` is not an edge (it never runs).
Importing a subpackage's ``__init__`` is an edge to that ``__init__`` only.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, modules: set[str], top_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import) and not (top_only and in_function):
                for alias in child.names:
                    target = resolve(alias.name)
                    if target:
                        found.add(target)
            elif isinstance(child, ast.ImportFrom) and not (top_only and in_function):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    target = (
                        resolve(f"{base}.{alias.name}")
                        if f"{base}.{alias.name}" in modules
                        else resolve(base)
                    )
                    if target:
                        found.add(target)
            visit(child, nested)

    visit(tree, False)
    found.discard(me)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", action="store_true", help="only imports run at module import time")
    parser.add_argument("--packages", action="store_true", help="collapse modules into their subpackage")
    args = parser.parse_args()
    paths = sorted((SRC / "hivemem").rglob("*.py"))
    modules = {module_name(p) for p in paths}
    graph = {module_name(p): imports(p, modules, args.top) for p in paths}
    # A package's __init__ runs before any of its modules: importing hivemem.x.y imports hivemem.x.
    if args.packages:

        def group(name: str) -> str:
            parts = name.split(".")
            return ".".join(parts[:2]) if len(parts) > 2 else name

        collapsed: dict[str, set[str]] = {}
        for src, targets in graph.items():
            collapsed.setdefault(group(src), set()).update(
                group(t) for t in targets if group(t) != group(src)
            )
        graph = collapsed
        for src in sorted(graph):
            print(f"{src} -> {', '.join(sorted(graph[src])) or '-'}")
    found = cycles(graph)
    edges = sum(len(v) for v in graph.values())
    print(f"{len(graph)} modules, {edges} imports, {len(found)} cycle(s)")
    for component in found:
        print("  cycle: " + " <-> ".join(component))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

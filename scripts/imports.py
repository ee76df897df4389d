"""The import graph of qcheck: modules, cycles and arrows that point up the layers.

    python scripts/imports.py            # summary: modules, lines, module-level cycles, lazy cycles
    python scripts/imports.py --arrows   # every arrow, "a -> b" (lazy ones marked)

An arrow is an ``import`` of a qcheck module. Module-level arrows (including those under
``if TYPE_CHECKING:``, which are typing-only and listed apart) make the layers; an import inside a
function is lazy: it does not load at import time, but a lazy arrow that closes a cycle still
shows two modules that each know about the other. Packages count as the modules they name.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "qcheck"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(name: str, modules: set[str]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def arrows(modules: dict[str, Path]) -> list[tuple[str, str, str]]:
    """(importer, imported, kind) with kind "module", "typing" or "lazy"."""
    names = set(modules)
    found: list[tuple[str, str, str]] = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]

        def visit(node: ast.AST, kind: str) -> None:
            for child in ast.iter_child_nodes(node):
                child_kind = kind
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    child_kind = "lazy"
                elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test) and kind == "module":
                    for sub in child.body:
                        visit_one(sub, "typing")
                    for sub in child.orelse:
                        visit_one(sub, kind)
                    continue
                visit_one(child, child_kind)

        def visit_one(node: ast.AST, kind: str) -> None:
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                resolved = _resolve(target, names)
                if resolved and resolved != name and target.split(".")[0] == "qcheck":
                    found.append((name, resolved, kind))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind = "lazy"
            visit(node, kind)

        visit(tree, "module")
    return sorted(set(found))


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return sorted(components)


def layers(edges: set[tuple[str, str]], modules: list[str]) -> dict[str, int]:
    """Each module's floor: 0 imports nothing of qcheck, else one above its highest import
    (arrows inside a cycle are ignored for the floor)."""
    graph = {m: {b for a, b in edges if a == m} for m in modules}
    floor: dict[str, int] = {}

    def height(m: str, seen: frozenset[str]) -> int:
        if m in floor:
            return floor[m]
        below = [height(b, seen | {m}) for b in graph[m] if b not in seen and b != m]
        floor[m] = 1 + max(below, default=-1)
        return floor[m]

    for m in modules:
        height(m, frozenset())
    return floor


def main() -> None:
    paths = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}
    found = arrows(paths)
    runtime = {(a, b) for a, b, kind in found if kind == "module"}
    every = {(a, b) for a, b, kind in found if kind != "typing"}
    if "--arrows" in sys.argv:
        for a, b, kind in found:
            print(f"{a} -> {b}" + ("" if kind == "module" else f"  ({kind})"))
        return
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in paths.values())
    floor = layers(runtime, list(paths))
    upward = sorted((a, b) for a, b in every - runtime if floor.get(b, 0) > floor.get(a, 0))
    print(f"modules: {len(paths)}  lines: {lines}  floors: {1 + max(floor.values())}")
    module_cycles = cycles(runtime)
    lazy_cycles = [c for c in cycles(every) if c not in module_cycles]
    print(f"module-level cycles: {len(module_cycles)}")
    for c in module_cycles:
        print("  " + " <-> ".join(c))
    print(f"cycles closed by lazy imports: {len(lazy_cycles)}")
    for c in lazy_cycles:
        print("  " + " <-> ".join(c))
    print(f"upward (lazy) arrows: {len(upward)}")
    for a, b in upward:
        print(f"  {a} -> {b}")


if __name__ == "__main__":
    main()

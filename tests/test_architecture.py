"""The package layout keeps its shape (docs/architecture.md): the root of sdeval/ holds only the entry points, no two
packages import each other, and no modules import each other in a circle, counting every import (inside functions
and under TYPE_CHECKING too), so the floors in the docs stay true as code is added. A registry's lazy
`module:object` string is no import: it names a built-in without importing it back."""

from __future__ import annotations

import ast
from pathlib import Path

import sdeval

ROOT = Path(sdeval.__file__).parent
ENTRY_POINTS = {"__init__.py", "__main__.py", "cli.py", "api.py"}
#: Arrows known to run up a floor, each with the change that removes it (docs/architecture.md, "Known exceptions").
KNOWN: set[tuple[str, str]] = set()


def _package(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")


def _module_level_imports(tree: ast.AST) -> list[str]:
    """sdeval modules imported at module level (not inside functions, not under TYPE_CHECKING)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.module.startswith("sdeval."):
                found.append(child.module)
            elif isinstance(child, ast.Import):
                found.extend(alias.name for alias in child.names if alias.name.startswith("sdeval."))
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        source = _package(path)
        for module in _module_level_imports(ast.parse(path.read_text(encoding="utf-8"))):
            target = module.split(".")[1]
            if target != source:
                edges.setdefault(source, set()).add(target)
    return edges


def test_the_root_holds_only_the_entry_points() -> None:
    assert {p.name for p in ROOT.glob("*.py")} == ENTRY_POINTS


def test_no_two_packages_import_each_other() -> None:
    edges = {source: targets - {t for s, t in KNOWN if s == source} for source, targets in _graph().items()}

    def reaches(start: str, goal: str) -> bool:
        seen, stack = set(), [start]
        while stack:
            node = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == goal:
                    return True
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return False

    cycles = sorted((a, b) for a, targets in edges.items() for b in targets if reaches(b, a))
    assert cycles == [], f"packages in a cycle (module-level imports): {cycles}"
    assert edges.get("core", set()) == set(), f"core stands on nothing, but imports {edges.get('core')}"
    assert {(a, b) for a, targets in _graph().items() for b in targets} >= KNOWN, "a known exception is gone: drop it"


def _all_imports(path: Path, modules: set[str]) -> set[str]:
    """Every sdeval module `path` imports, wherever the import stands; `from sdeval.metrics import corpus` imports
    the module `corpus` (its package's face only runs on the way there, which is no arrow)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sdeval"):
            for alias in node.names:
                module = f"{node.module}.{alias.name}"
                found.add(module if module in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("sdeval")}
    return found & modules


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return circles


def test_no_circles_counting_every_import() -> None:
    modules = {_module_name(path): path for path in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    packages: dict[str, set[str]] = {}
    for name, path in modules.items():
        for target in _all_imports(path, set(modules)):
            # A module importing its own package's face (__init__) is the package loading itself, not an arrow.
            if target != name and not name.startswith(target + "."):
                edges.setdefault(name, set()).add(target)
            source_package, target_package = (f"{module}.".split(".")[1] or "__init__" for module in (name, target))
            if source_package != target_package:
                packages.setdefault(source_package, set()).add(target_package)
    assert _circles(edges) == [], "modules importing each other in a circle"
    assert _circles(packages) == [], "packages importing each other (at any level) in a circle"

"""The package layout keeps its shape (docs/architecture.md): the root of sdeval/ holds only the entry points, and no
two packages import each other at module level, so the floors in the docs stay true as code is added."""

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

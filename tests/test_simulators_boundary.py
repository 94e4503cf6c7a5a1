"""The running bot never imports the simulators: only the demo entry does, and only when asked for the demo."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_PACKAGES = ("bot", "cogs", "providers")
#: The one file allowed to reach the simulators, from inside a function (``python -m bot demo``).
DEMO_ENTRY = ROOT / "bot" / "__main__.py"


def imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def simulator_imports(path: Path, *, top_level_only: bool) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {module}"
        for node in nodes
        for module in imported_modules(node)
        if module.split(".")[0] in ("simulators", "tests")
    ]


def test_the_runtime_packages_import_nothing_from_the_simulators_or_the_tests() -> None:
    found = [
        line
        for package in RUNTIME_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for line in simulator_imports(path, top_level_only=path == DEMO_ENTRY)
    ]
    assert found == []

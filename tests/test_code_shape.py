"""The shape rules of docs/architecture.md, checked on the source: no function longer than
MAX_FUNCTION_LINES and no module longer than MAX_MODULE_LINES (import cycles: test_import_graph.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "fungalzsl"
MAX_FUNCTION_LINES = 120
MAX_MODULE_LINES = 450
MODULES = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """'name (N lines, line L)' for every function or method of ``source`` longer than ``limit``."""
    return [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines, line {node.lineno})"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > limit
    ]


def test_long_functions_are_found() -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(5))
    source = f"def short():\n    pass\n\nclass C:\n    def long(self):\n{body}"
    assert long_functions(source, limit=5) == ["long (6 lines, line 5)"]
    assert long_functions(source, limit=6) == []


def test_modules_were_found() -> None:
    assert "cli.py" in MODULES and len(MODULES) > 50


@pytest.mark.parametrize("name", MODULES)
def test_module_and_function_length(name: str) -> None:
    text = (PACKAGE / name).read_text(encoding="utf-8")
    lines = text.count("\n")
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines (at most {MAX_MODULE_LINES})"
    assert not long_functions(text), (
        f"{name}: functions over {MAX_FUNCTION_LINES} lines: {long_functions(text)}"
    )


def test_every_module_imports() -> None:
    """A moved name left behind in an import line fails here, not first in a user's command."""
    import importlib
    import pkgutil

    import fungalzsl

    names = [m.name for m in pkgutil.walk_packages(fungalzsl.__path__, "fungalzsl.")]
    assert len(names) > 50
    for name in names:
        importlib.import_module(name)

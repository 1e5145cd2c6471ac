"""The package's import graph, read from the source with ``ast`` (top-level and function-level imports):
no cycles, and the stages depend on each other only in the direction the data flows."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in (SRC / "fungalzsl").rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _owner(name: str, mods: dict[str, Path]) -> str | None:
    """The module that ``import name`` runs last: name itself, or the closest package above it."""
    while name not in mods and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in mods else None


def import_graph() -> dict[str, set[str]]:
    """module -> the fungalzsl modules it imports anywhere in its body. ``from pkg import sub`` counts as
    importing ``pkg.sub``; it counts as importing ``pkg`` (its ``__init__``) only for names defined there."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names]
                targets = [s for s in subs if s in mods] + (
                    [base] if any(s not in mods for s in subs) else []
                )
            else:
                continue
            for t in targets:
                owner = _owner(t, mods) if t.startswith("fungalzsl") else None
                if owner and owner != m:
                    graph[m].add(owner)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for w in graph[todo.pop()]:
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "fungalzsl.synth.generate" in graph["fungalzsl.synth.cli"]  # imported inside the command
    assert "fungalzsl.synth.sequence" in graph["fungalzsl.synth.plan"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("fungalzsl.eval", ("fungalzsl.train", "fungalzsl.synth", "fungalzsl.pipeline")),
        ("fungalzsl.synth", ("fungalzsl.text", "fungalzsl.train", "fungalzsl.eval", "fungalzsl.pipeline")),
        ("fungalzsl.train", ("fungalzsl.synth", "fungalzsl.eval", "fungalzsl.pipeline")),
        ("fungalzsl.predict", ("fungalzsl.train", "fungalzsl.eval", "fungalzsl.synth", "fungalzsl.pipeline")),
        ("fungalzsl.models", ("fungalzsl.train", "fungalzsl.eval", "fungalzsl.pipeline")),
        ("fungalzsl.text", ("fungalzsl.train", "fungalzsl.eval", "fungalzsl.pipeline")),
    ],
)
def test_stages_do_not_reach_the_stages_that_drive_them(package, forbidden):
    graph = import_graph()
    # ``from fungalzsl import __version__`` runs the root __init__, whose lazy façade
    # (``fungalzsl.Classifier``) is for users; importing the version does not use it.
    graph["fungalzsl"] = set()
    for m in [m for m in graph if m == package or m.startswith(package + ".")]:
        bad = sorted(x for x in reachable(graph, m) if x.startswith(forbidden))
        assert bad == [], f"{m} imports {bad}"

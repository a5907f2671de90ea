"""No import cycles in ``lingyun``, and every module imports on its own.

The graph is read from the source with :mod:`ast` (starting ~200 interpreters would take
minutes). An edge is an import that runs when the module loads: at module level or in a class
body, not inside a function and not under ``if TYPE_CHECKING:``. ``from p import x`` is an
edge to ``p`` (its ``__init__`` runs, and the name may come from it) and to ``p.x`` where that
is a module; an import of ``a.b.c`` also runs ``a`` and ``a.b``, except the importer's own
packages, which are loading already. So a package whose ``__init__`` imports its children
cannot have a child that imports names from the package.

A second graph adds the imports inside functions and under ``TYPE_CHECKING``: they do not
break loading, but one that closes a loop is a cycle moved out of sight (two layers that each
need the other). Then one interpreter imports every module in one go, which catches what the
text cannot show (a missing name, an optional engine imported eagerly).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import lingyun

ROOT = Path(lingyun.__file__).resolve().parent
# Run by Alembic, which sets ``alembic.context`` up first; not importable on its own.
NOT_IMPORTABLE = {"lingyun.store.migrations.env"}
# Layers that the HTTP surface is built on, so they never import it.
BELOW_API = ("lingyun.engines", "lingyun.gateway", "lingyun.protocol")

Import = ast.Import | ast.ImportFrom


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def load_time_imports(body: list[ast.stmt]) -> Iterator[Import]:
    """The import statements that run while the module loads."""
    for node in body:
        if isinstance(node, Import):
            yield node
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from load_time_imports(node.body)
            yield from load_time_imports(node.orelse)
        elif isinstance(node, ast.ClassDef):
            yield from load_time_imports(node.body)
        elif isinstance(node, ast.Try | ast.TryStar):
            for block in (node.body, node.orelse, node.finalbody):
                yield from load_time_imports(block)
            for handler in node.handlers:
                yield from load_time_imports(handler.body)
        elif isinstance(node, ast.With | ast.AsyncWith | ast.For | ast.AsyncFor | ast.While):
            yield from load_time_imports(node.body)
            yield from load_time_imports(getattr(node, "orelse", []))


def every_import(body: list[ast.stmt]) -> Iterator[Import]:
    """Every import statement, wherever it stands."""
    for node in ast.walk(ast.Module(body=body, type_ignores=[])):
        if isinstance(node, Import):
            yield node


def edges(name: str, is_package: bool, node: Import, modules: set[str]) -> set[str]:
    """The modules of ``modules`` that ``node``, written in module ``name``, runs."""
    own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    found: set[str] = set()

    def reach(target: str) -> None:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            step = ".".join(parts[:i])
            if step in modules and step not in own:
                found.add(step)

    if isinstance(node, ast.Import):
        for alias in node.names:
            reach(alias.name)
        return found
    if node.level:
        base = name.split(".") if is_package else name.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    reach(source)
    if source in modules and source != name:
        found.add(source)  # its __init__ runs, even where it is the importer's own package
    for alias in node.names:
        reach(f"{source}.{alias.name}")
    return found


def import_graph(which: str = "load") -> dict[str, set[str]]:
    walk = load_time_imports if which == "load" else every_import
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[name] = set()
        for node in walk(tree.body):
            graph[name] |= edges(name, path.name == "__init__.py", node, set(modules))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _path_within(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete loop through a component, to name in the failure."""
    members = set(component)
    start = component[0]
    parent: dict[str, str] = {}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                loop = [node]
                while loop[-1] != start:
                    loop.append(parent[loop[-1]])
                return [start, *reversed(loop[:-1]), start]
            if child not in parent:
                parent[child] = node
                queue.append(child)
    return component


def _loops(graph: dict[str, set[str]]) -> str:
    return "\n".join(" -> ".join(_path_within(graph, c)) for c in cycles(graph))


def test_graph_sees_every_module() -> None:
    graph = import_graph()
    assert len(graph) > 150
    assert {"lingyun", "lingyun.config", "lingyun.engines.upstream"} <= graph.keys()
    assert "lingyun.errors" in graph["lingyun.engines.dialect"]


def test_no_import_cycles() -> None:
    graph = import_graph("load")
    assert not cycles(graph), "import cycles:\n" + _loops(graph)


def test_no_cycle_hidden_in_a_function_or_type_checking() -> None:
    graph = import_graph("all")
    assert not cycles(graph), "cycles through deferred or type-only imports:\n" + _loops(graph)


def test_layers_below_the_api_never_import_it() -> None:
    graph = import_graph("all")
    reach_back = sorted(
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name.startswith(BELOW_API)
        for target in targets
        if target == "lingyun.api" or target.startswith("lingyun.api.")
    )
    assert not reach_back, "\n".join(reach_back)


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert _path_within(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        pytest.param("import lingyun.config", {"lingyun.config"}, id="import"),
        pytest.param(
            "from lingyun.store import db", {"lingyun.store", "lingyun.store.db"}, id="from"
        ),
        pytest.param(
            "from lingyun.gateway import pipeline",
            {"lingyun.gateway", "lingyun.gateway.pipeline"},
            id="from-own-package",
        ),
        pytest.param(
            "from . import pipeline", {"lingyun.gateway", "lingyun.gateway.pipeline"}, id="relative"
        ),
        pytest.param(
            "from lingyun.gateway.pipeline import Gateway",
            {"lingyun.gateway.pipeline"},
            id="own-package-not-run",
        ),
        pytest.param("def f():\n    import lingyun.config\n", set(), id="in-function"),
        pytest.param("class C:\n    import lingyun.config\n", {"lingyun.config"}, id="in-class"),
        pytest.param(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lingyun.config\n",
            set(),
            id="type-checking",
        ),
    ],
)
def test_which_imports_count(source: str, expected: set[str]) -> None:
    modules = set(all_modules())
    found: set[str] = set()
    for node in load_time_imports(ast.parse(source).body):
        found |= edges("lingyun.gateway.relay", False, node, modules)
    assert found == expected


def test_every_module_imports() -> None:
    names = sorted(set(all_modules()) - NOT_IMPORTABLE)
    script = (
        "import importlib, json, sys, traceback\n"
        "failed = {}\n"
        "for name in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed[name] = traceback.format_exc(limit=-3)\n"
        "print(json.dumps(failed))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(names)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    failed = json.loads(done.stdout.strip().splitlines()[-1])
    assert failed == {}, "\n".join(failed.values())

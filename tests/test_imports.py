"""No import cycles inside `lookalike`: every module's imports, read with `ast` (nothing is
imported), form a graph whose strongly connected components must all be single modules.

What counts as an import of module M by module N (both inside the package):
- `import M`, `from M import name` and `from . import ...` (relative imports resolved), at
  module level or inside a function (a lazy import still ties the two modules together);
  imports under `if TYPE_CHECKING:` do not count (they never run), its `else:` does;
- `from P import name` where `P.name` is a module is an import of `P.name` (and of `P`);
- importing `P.M` runs `P/__init__.py` first, so it is also an import of each package above
  `P.M`, except those above N itself: Python has already started them before N runs.
A package is its `__init__.py`.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass(frozen=True)
class Import:
    """One import statement of `source` that reaches `target`."""

    source: str
    target: str
    line: int
    local: bool  # inside a function: runs when the function is called, not at import

    def __str__(self) -> str:
        where = "in a function, " if self.local else ""
        return f"{self.source} -> {self.target} ({where}line {self.line})"


# source -> target -> the import that makes the edge: the first at module level, if any
Graph = dict[str, dict[str, Import]]


def find_modules(src: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file, for every module of `package` under `src` (packages by __init__)."""
    modules = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _import_nodes(
    nodes: Iterable[ast.AST], local: bool = False
) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in `nodes` and below, with whether it sits in a function,
    leaving out the bodies of `if TYPE_CHECKING:`."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, local
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _import_nodes(node.orelse, local)
        else:
            inner = local or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from _import_nodes(ast.iter_child_nodes(node), inner)


def _absolute(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The module a `from` import names, relative levels resolved against module `name`
    ("" when they climb above the top package)."""
    if node.level == 0:
        return node.module or ""
    parts = name.split(".") if is_package else name.split(".")[:-1]
    if node.level - 1 >= len(parts):
        return ""
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _loaded(
    node: ast.Import | ast.ImportFrom, name: str, is_package: bool, modules: set[str]
) -> list[str]:
    """The dotted names a statement in module `name` loads: `import X` loads X; `from P import
    n` loads P.n where that is one of `modules`, P itself otherwise (n is one of P's names)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = _absolute(node, name, is_package)
    if not module:
        return []
    names = [f"{module}.{alias.name}" for alias in node.names]
    return [n if n in modules else module for n in names]


def import_graph(src: Path, package: str) -> Graph:
    """The import graph of `package` under `src`, from the source alone."""
    modules = find_modules(src, package)
    names = set(modules)
    graph: Graph = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        # packages above this module have started before it runs: loading one of their
        # submodules does not run them again, only naming them does
        started = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        edges: dict[str, Import] = {}
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, local in _import_nodes([tree]):
            for dotted in _loaded(node, name, is_package, names):
                parts = dotted.split(".")
                above = {".".join(parts[:i]) for i in range(1, len(parts))} - started
                for target in sorted(({dotted} | above) & (names - {name})):
                    if target not in edges or (edges[target].local and not local):
                        edges[target] = Import(name, target, node.lineno, local)
        graph[name] = edges
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module, each sorted, in
    order of their first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
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
                components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(components)


def shortest_cycle(graph: Graph, component: list[str]) -> list[Import]:
    """A shortest cycle through the component's first module, staying inside the component."""
    members = set(component)
    start = component[0]
    came_from: dict[str, Import] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w, edge in sorted(graph[v].items()):
            if w not in members:
                continue
            if w == start:
                path = [edge]
                while path[0].source != start:
                    path.insert(0, came_from[path[0].source])
                return path
            if w not in came_from:
                came_from[w] = edge
                queue.append(w)
    raise AssertionError(f"{component} is not strongly connected")


def describe_cycles(graph: Graph) -> str:
    """Each strongly connected component, with one cycle in it, import by import."""
    blocks = []
    for component in strongly_connected(graph):
        cycle = "\n".join(f"    {edge}" for edge in shortest_cycle(graph, component))
        blocks.append(f"{len(component)} modules: {', '.join(component)}\n  e.g.\n{cycle}")
    return "\n".join(blocks)


# --------------------------------------------------------------------------- the walker itself


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_walker_finds_no_cycle_in_an_acyclic_package(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "import os\nimport pkg.b\nfrom pkg.sub import leaf\n",
            "pkg/b.py": """\
                from typing import TYPE_CHECKING
                import numpy as np
                from pkg import sub
                if TYPE_CHECKING:
                    from pkg.a import Thing
                """,
            "pkg/sub/__init__.py": "from .leaf import f\n",
            "pkg/sub/leaf.py": "from . import other\nfrom ..c import g\n",
            "pkg/sub/other.py": "def h():\n    import pkg.c\nimport os, pkg.c\n",
            "pkg/c.py": "def g():\n    pass\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert set(graph["pkg.a"]) == {"pkg.b", "pkg.sub", "pkg.sub.leaf"}
    assert set(graph["pkg.b"]) == {"pkg.sub"}  # not pkg.a: only under TYPE_CHECKING
    assert set(graph["pkg.sub"]) == {"pkg.sub.leaf"}
    # `from . import other` is the sibling module; pkg.sub has started before leaf runs
    assert set(graph["pkg.sub.leaf"]) == {"pkg.sub.other", "pkg.c"}
    assert graph["pkg.sub.other"]["pkg.c"] == Import("pkg.sub.other", "pkg.c", 3, local=False)
    assert strongly_connected(graph) == []
    assert describe_cycles(graph) == ""


def test_walker_finds_cycles_through_submodules_local_imports_and_packages(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            # a -> b (a submodule named in `from pkg import`), b -> c (relative), c -> a (lazy)
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": "from .c import x\n",
            "pkg/c.py": "x = 1\ndef f():\n    import pkg.a\n",
            # other -> sub.n runs sub/__init__, which re-exports m, which imports other
            "pkg/sub/__init__.py": "from pkg.sub.m import f\n",
            "pkg/sub/m.py": "from ..other import g\ndef f():\n    pass\n",
            "pkg/sub/n.py": "",
            "pkg/other.py": "import pkg.sub.n\ndef g():\n    pass\n",
            # TYPE_CHECKING only: not a cycle; its else branch is
            "pkg/t1.py": """\
                import typing
                if typing.TYPE_CHECKING:
                    from pkg import t2
                else:
                    from pkg import t3
                """,
            "pkg/t2.py": "from pkg import t1\n",
            "pkg/t3.py": "from pkg import t1\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert strongly_connected(graph) == [
        ["pkg.a", "pkg.b", "pkg.c"],
        ["pkg.other", "pkg.sub", "pkg.sub.m"],
        ["pkg.t1", "pkg.t3"],
    ]
    assert graph["pkg.c"]["pkg.a"] == Import("pkg.c", "pkg.a", 3, local=True)
    assert [str(e) for e in shortest_cycle(graph, ["pkg.a", "pkg.b", "pkg.c"])] == [
        "pkg.a -> pkg.b (line 1)",
        "pkg.b -> pkg.c (line 1)",
        "pkg.c -> pkg.a (in a function, line 3)",
    ]
    assert "pkg.other -> pkg.sub (line 1)" in describe_cycles(graph)


def test_relative_imports_resolve_from_modules_and_packages(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/x.py": "",
            "pkg/deep/__init__.py": "from . import y\nfrom .. import x\n",
            "pkg/deep/y.py": "from ..x import *\nfrom ... import elsewhere\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert set(graph["pkg.deep"]) == {"pkg.deep.y", "pkg.x"}
    assert set(graph["pkg.deep.y"]) == {"pkg.x"}  # beyond the package: not ours


# --------------------------------------------------------------------------- lookalike


def test_lookalike_has_no_import_cycle() -> None:
    graph = import_graph(SRC, "lookalike")
    assert len(graph) > 40  # the walk found the package
    cycles = describe_cycles(graph)
    assert not cycles, f"import cycles in lookalike:\n{cycles}"

"""No import circles in ``src/elastic_lm``: every module reads only modules "below" it.

The graph is read with ``ast`` (nothing is imported), and counts *every* import statement: module
level, inside functions (lazy imports) and under ``TYPE_CHECKING``, since each is a dependency a reader
must follow. An edge goes to the module named (``from a.b import c`` to ``a.b.c`` when that is a
module, else to ``a.b``); the implicit import of a parent package's ``__init__`` is not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "elastic_lm"


def _modules() -> dict[str, Path]:
    out = {}
    for file in (SRC / PACKAGE).rglob("*.py"):
        parts = list(file.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = file
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the elastic_lm modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, file in modules.items():
        deps: set[str] = set()
        is_package = file.name == "__init__.py"
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = name if is_package else name.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        anchor = anchor.rpartition(".")[0]
                    base = f"{anchor}.{base}" if base else anchor
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            deps.update(t for t in (_resolve(x, modules) for x in targets) if t and t.startswith(PACKAGE))
        deps.discard(name)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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


def test_the_checker_finds_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    # function-level imports: the teacher's re-training loop, the trainer behind the train stage
    assert "elastic_lm.train.loop" in graph["elastic_lm.teacher"]
    assert "elastic_lm.train.build" in graph["elastic_lm.pipeline.stages"]
    # module level, and a name imported from a package that is a module of its own
    assert "elastic_lm.assets.models" in graph["elastic_lm.teacher"]
    assert "elastic_lm.pipeline.engine" in graph["elastic_lm.pipeline"]


def test_src_has_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)

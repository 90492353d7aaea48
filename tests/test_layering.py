"""Imports inside `clinical_bert/` go one way: no module imports itself back through others.

Every import counts, at module level or inside a function (a call-time import is how a
cycle hides), except those under `if TYPE_CHECKING:`, which never run.
"""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "clinical_bert"


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imported(tree: ast.AST, modules: set[str]) -> set[str]:
    "Project modules that `tree` imports (relative or absolute), skipping TYPE_CHECKING blocks."
    found = set()

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 0 and not base.startswith("clinical_bert"):
                pass
            else:
                base = base.removeprefix("clinical_bert").lstrip(".")
                if base:
                    found.add(base.split(".")[0])
                else:  # from . import x / from clinical_bert import x
                    found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("clinical_bert."):
                    found.add(a.name.split(".")[1])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found & modules


def import_graph(pkg: Path = PKG) -> dict[str, set[str]]:
    files = {p.stem: p for p in pkg.glob("*.py") if p.stem not in ("__init__", "_modidx")}
    names = set(files)
    return {m: _imported(ast.parse(p.read_text()), names) - {m} for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    "One import cycle as a list of modules (first == last), or None."
    state, stack = {}, []

    def dfs(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (c := dfs(n)):
                return c
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (c := dfs(m)):
            return c
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_imported_skips_type_checking_and_sees_call_time_imports():
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .model import X\n"
           "def f():\n    from clinical_bert.data import y\n    import clinical_bert.text\n")
    assert _imported(ast.parse(src), {"model", "data", "text"}) == {"data", "text"}


def test_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 10, f"expected the package's modules under {PKG}"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle inside clinical_bert/: " + " -> ".join(cycle)

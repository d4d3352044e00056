"""The layers point down: `index` (files to chunks) knows nothing of `rag` or `ui`; `ui` is a client of the
service; no module imports itself back through others. Read from the source (every import statement, those
inside functions too: a lazy import is still a dependency), so the test needs nothing installed or started."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("index", "rag", "ui")
# What the UI may use of the engine: the service (and its submodules), typed results, errors and settings.
UI_MAY_IMPORT = ("rag.service", "rag.schema", "rag.errors", "rag.settings")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, known: set[str]) -> set[str]:
    """Project modules imported at run time (annotations under `if TYPE_CHECKING:` are not imports)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            node.body = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = [path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))]
    modules = {_module_name(path): path for path in files}
    known = set(modules)
    graph = {}
    for name, path in modules.items():
        graph[name] = {target for target in _imports(ast.parse(path.read_text()), known) if target != name}
        # A package's __init__ is imported with any of its submodules: not an edge of the submodule's own.
        graph[name] -= {parent for parent in known if name.startswith(parent + ".")}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the path that closes it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


GRAPH = import_graph()


def test_the_graph_is_read_from_the_source() -> None:
    assert "rag.refresh" in GRAPH and "index.chunking" in GRAPH["rag.refresh"]
    assert "rag.service" in GRAPH["ui.app"]


def test_no_import_cycle() -> None:
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("index")))
def test_index_knows_nothing_of_the_engine_or_the_ui(module: str) -> None:
    assert not {t for t in GRAPH[module] if t.startswith(("rag", "ui"))}


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("ui")))
def test_ui_is_a_client_of_the_service(module: str) -> None:
    outside = {t for t in GRAPH[module] if not t.startswith("ui")}
    assert {t for t in outside if not t.startswith(UI_MAY_IMPORT)} == set()


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("rag")))
def test_the_engine_never_imports_a_front_end(module: str) -> None:
    assert not {t for t in GRAPH[module] if t.startswith("ui")}


def test_the_checks_catch_what_they_guard_against() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    source = "import rag.store\nif TYPE_CHECKING:\n    from ui.app import x\ndef f():\n    from index import y\n"
    tree = ast.parse(source)
    assert _imports(tree, {"rag.store", "ui.app", "index"}) == {"rag.store", "index"}

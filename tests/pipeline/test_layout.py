"""The package layout: arrows point down. Module-level imports (those run when a module is
imported; imports inside functions and under `if TYPE_CHECKING:` are left out) form no cycle,
and `pipeline.core` imports nothing from the other subpackages."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pipeline"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """`root/x/y.py` -> `root.x.y`; a package's `__init__.py` -> the package."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_statements(body: list[ast.stmt]):
    """The statements of a module body that run at import: into `if`/`try`/`with` blocks, not
    into functions or classes' methods, and not into `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, ast.If):
            if not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
                yield from _runtime_statements(node.body)
            yield from _runtime_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _runtime_statements(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            yield from _runtime_statements(node.body)
        else:
            yield node


def module_imports(path: Path, root: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that importing `path` (under `root`) imports, with the packages
    they sit in."""
    name = module_name(path, root)
    targets: set[str] = set()
    for node in _runtime_statements(ast.parse(path.read_text(encoding="utf-8")).body):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}:{node.lineno}: relative import; the project imports absolutely"
            targets.add(node.module or "")
            targets.update(f"{node.module}.{alias.name}" for alias in node.names)
    found: set[str] = set()
    for target in targets:
        parts = target.split(".")
        found.update(p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if p in modules)
    found.discard(name)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the first-party modules it imports at module level."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    return {name: module_imports(path, root, set(paths)) for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as `[a, b, ..., a]`, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_module_level_imports_and_not_lazy_ones(tmp_path):
    root = tmp_path / "pkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("from pkg import b\n\ndef f():\n    from pkg import c\n")
    (root / "b.py").write_text("try:\n    import pkg.a\nexcept ImportError:\n    pass\n")
    (root / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n")
    graph = import_graph(root)
    assert graph["pkg.a"] == {"pkg", "pkg.b"}
    assert graph["pkg.b"] == {"pkg", "pkg.a"}
    assert graph["pkg.c"] == set()
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]


def test_pipeline_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_core_imports_nothing_from_the_other_subpackages():
    graph = import_graph()
    outside = {
        (module, target)
        for module, targets in graph.items()
        if module.startswith("pipeline.core")
        for target in targets
        if target != "pipeline" and not target.startswith("pipeline.core")
    }
    assert not outside, f"pipeline.core imports other subpackages: {sorted(outside)}"


def test_the_product_imports_neither_tests_nor_benchmarks_nor_the_test_servers():
    """At any depth, lazy imports included: `pipeline.testing` serves tests and benchmarks only."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name.startswith("pipeline.testing"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                modules = [node.module or ""]
            found += [(name, m) for m in modules if m.split(".")[0] in ("tests", "benchmarks") or m.startswith("pipeline.testing")]
    assert not found, f"product modules import test or benchmark code: {found}"


def test_only_the_entry_point_imports_the_command_line():
    """`pipeline.cli` sits on top: no stage, core or report module imports it, lazily or not."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name.startswith("pipeline.cli") or name == "pipeline.__main__":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").startswith("pipeline.cli"):
                found.append((name, node.module))
            elif isinstance(node, ast.Import):
                found += [(name, a.name) for a in node.names if a.name.startswith("pipeline.cli")]
    assert not found, f"modules below the command line import it: {found}"

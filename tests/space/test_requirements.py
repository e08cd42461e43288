"""The Hub Space installs space/requirements.txt: it must name every distribution that app.py
and the `space` and `pipeline` modules it imports need, at the project's pinned versions."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPACE_REQUIREMENTS = ROOT / "space" / "requirements.txt"


def _optional(tree: ast.AST) -> set[ast.AST]:
    """Import statements guarded by `except ImportError` (optional dependencies)."""
    guarded: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            guarded.update(n for stmt in node.body for n in ast.walk(stmt))
    return guarded


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    optional = _optional(tree)
    for node in ast.walk(tree):
        if node in optional:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _space_imports() -> set[str]:
    """Top-level modules imported by space/app.py and, transitively, the space and pipeline
    modules."""
    seen: set[Path] = set()
    todo = [ROOT / "space" / "app.py"]
    top: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            if name.split(".")[0] in ("pipeline", "space"):
                module = ROOT / Path(*name.split(".")).with_suffix(".py")
                package = ROOT / name.split(".")[0] / "__init__.py"
                todo.append(module if module.is_file() else package)
            else:
                top.add(name.split(".")[0])
    return top - set(sys.stdlib_module_names) - {"__future__"}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==(\S+)", line.strip())
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_space_requirements_cover_every_import():
    distributions = importlib.metadata.packages_distributions()
    pinned = _pins(SPACE_REQUIREMENTS)
    missing = {
        module: distributions.get(module)
        for module in _space_imports()
        if not any(
            d.lower().replace("_", "-") in pinned for d in distributions.get(module, [module])
        )
    }
    assert not missing, f"space/requirements.txt lacks {missing}"


def test_space_pins_match_the_project():
    project = _pins(ROOT / "requirements.txt")
    space = _pins(SPACE_REQUIREMENTS)
    differ = {
        name: (version, project[name])
        for name, version in space.items()
        if project.get(name, version) != version
    }
    assert not differ, f"space/requirements.txt pins differ from requirements.txt: {differ}"

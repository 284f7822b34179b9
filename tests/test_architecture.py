"""docs/architecture.md stays true to the tree: the modules and classes it names exist where
it says, and no module grows past the size the page promises."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sensord"
PAGE = ROOT / "docs" / "architecture.md"
MAX_MODULE_LINES = 400
# `core/pipeline.py`, `daemon/loop.py`: a module path relative to the package
MODULE = re.compile(r"`((?:[a-z_]+/)+[a-z_]+\.py)`")
# "`Pipeline` (`core/pipeline.py`)": a class and the module it lives in
CLASS_IN = re.compile(r"`([A-Z][A-Za-z]+)`\s+\(`((?:[a-z_]+/)+[a-z_]+\.py)`")


def resolve(named: str) -> Path:
    """A path the page names: from the repository's root (`tests/fakes.py`,
    `sensord/errors.py`) or inside the package (`core/pipeline.py`)."""
    return (
        ROOT / named
        if named.split("/", maxsplit=1)[0] in {"sensord", "tests", "benchmarks"}
        else PACKAGE / named
    )


def classes_in(module: Path) -> set[str]:
    tree = ast.parse(module.read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def test_every_module_the_page_names_exists() -> None:
    named = set(MODULE.findall(PAGE.read_text()))
    missing = sorted(m for m in named if not resolve(m).exists())
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"


def test_every_class_the_page_places_lives_there() -> None:
    wrong = [
        f"{name} is not in {module}"
        for name, module in CLASS_IN.findall(PAGE.read_text())
        if resolve(module).exists() and name not in classes_in(resolve(module))
    ]
    assert not wrong, f"docs/architecture.md puts classes in the wrong module: {wrong}"


def test_no_module_is_over_the_size_the_page_promises() -> None:
    assert f"No module is over {MAX_MODULE_LINES} lines" in PAGE.read_text()
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    over = {m: n for m, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


MAX_FUNCTION_LINES = 60


def long_functions(module: Path) -> list[str]:
    tree = ast.parse(module.read_text())
    return [
        f"{module.relative_to(PACKAGE)}:{node.name} ({node.end_lineno - node.lineno + 1})"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
        # argparse tables: one add_argument after another, read as a table, not as logic
        and not (module.parent.name == "cli" and node.name.startswith("_add_"))
    ]


def test_no_function_is_longer_than_a_screen() -> None:
    found = [f for p in sorted(PACKAGE.rglob("*.py")) for f in long_functions(p)]
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines: {found}"

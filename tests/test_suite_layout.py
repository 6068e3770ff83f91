"""The suite's own house rules: shared fixtures live in conftest.py, where pytest finds them,
never in a test module that others import (which runs that module's tests' set-up twice
and hides where a fixture comes from), and no fixture is named like a test."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Attribute) and target.attr == "fixture") or (
        isinstance(target, ast.Name) and target.id == "fixture"
    )


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [node.module]
    return []


def layout_problems(folder: Path) -> list[str]:
    """One line per broken rule in the test files of `folder`."""
    problems = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', 0)}"
            if (
                isinstance(node, ast.FunctionDef)
                and node.name.startswith("test")
                and any(_is_fixture(decorator) for decorator in node.decorator_list)
            ):
                problems.append(f"{where}: fixture {node.name} is named like a test")
            for module in _imported_modules(node):
                if module.startswith(("test_", "conftest")):
                    problems.append(f"{where}: imports the test module {module}")
            if (
                path.name != "conftest.py"
                and isinstance(node, ast.Assign)
                and any(getattr(target, "id", "") == "pytest_plugins" for target in node.targets)
            ):
                problems.append(f"{where}: pytest_plugins outside conftest.py")
    return problems


def test_fixtures_are_shared_through_conftest_and_not_named_like_tests():
    assert layout_problems(TESTS) == []


def test_the_layout_check_reports_each_broken_rule(tmp_path):
    (tmp_path / "test_a.py").write_text(
        "import pytest\n"
        "from test_b import shared\n"
        'pytest_plugins = ["helpers"]\n'
        "@pytest.fixture(scope='module')\n"
        "def test_images():\n"
        "    return []\n"
    )
    assert layout_problems(tmp_path) == [
        "test_a.py:2: imports the test module test_b",
        "test_a.py:3: pytest_plugins outside conftest.py",
        "test_a.py:5: fixture test_images is named like a test",
    ]

"""The suite's own house rules: shared fixtures live in conftest.py, where pytest finds them,
never imported from another module (which hides where a fixture comes from and lets pytest
see it twice), and no fixture is named like a test."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Attribute) and target.attr == "fixture") or (
        isinstance(target, ast.Name) and target.id == "fixture"
    )


def _fixtures(tree: ast.Module) -> dict[str, int]:
    """Each fixture function defined in `tree` -> its line."""
    return {
        node.name: node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any(_is_fixture(decorator) for decorator in node.decorator_list)
    }


def _sets_pytest_plugins(node: ast.AST) -> bool:
    return isinstance(node, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id == "pytest_plugins" for target in node.targets
    )


def layout_problems(folder: Path) -> list[str]:
    """One line per broken rule in the Python files of `folder`."""
    trees = {
        path.stem: ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for path in sorted(folder.glob("*.py"))
    }
    fixtures = {module: _fixtures(tree) for module, tree in trees.items()}
    problems = []
    for module, tree in trees.items():
        problems += [
            f"{module}.py:{line}: fixture {name} is named like a test"
            for name, line in fixtures[module].items()
            if name.startswith("test")
        ]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in fixtures:
                problems += [
                    f"{module}.py:{node.lineno}: imports the fixture {alias.name} from "
                    f"{node.module}"
                    for alias in node.names
                    if alias.name in fixtures[node.module]
                ]
            if module != "conftest" and _sets_pytest_plugins(node):
                problems.append(f"{module}.py:{node.lineno}: pytest_plugins outside conftest.py")
    return problems


def test_fixtures_are_shared_through_conftest_and_not_named_like_tests():
    assert layout_problems(TESTS) == []


def test_the_layout_check_reports_each_broken_rule(tmp_path):
    (tmp_path / "test_a.py").write_text(
        "import pytest\n"
        "from test_b import images, helper\n"
        'pytest_plugins = ["helpers"]\n'
        "@pytest.fixture(scope='module')\n"
        "def test_images():\n"
        "    return []\n"
    )
    (tmp_path / "test_b.py").write_text(
        "import pytest\n@pytest.fixture\ndef images():\n    return []\ndef helper():\n    pass\n"
    )
    assert layout_problems(tmp_path) == [
        "test_a.py:5: fixture test_images is named like a test",
        "test_a.py:2: imports the fixture images from test_b",
        "test_a.py:3: pytest_plugins outside conftest.py",
    ]

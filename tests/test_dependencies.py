"""Every package the code imports is declared in pyproject.toml: src's in the install
requirements, the tests' and benchmarks' in those or the `dev` extra. An undeclared import
works here only because something else happened to install it."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]

#: Imports that need no declaration, and why.
UNDECLARED = {
    "torch": "imported only on Keras's torch backend, which a user chooses and installs",
    "ai_edge_litert": "tried first for .tflite files; TensorFlow's own interpreter otherwise",
}


def imported_packages(folder: Path) -> dict[str, Path]:
    """Each top-level package that a file under `folder` imports -> one file importing it
    (a path from the folder's parent), leaving out the standard library, relative imports
    and the folder's own modules."""
    own = {path.stem for path in folder.glob("*.py")} | {"digitlab"}
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top not in sys.stdlib_module_names and top not in own:
                    found.setdefault(top, path.relative_to(folder.parent))
    return found


def _normalized(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def declared_distributions(*extras: str) -> set[str]:
    """The distributions pyproject.toml requires, plus those of the named extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {_normalized(Requirement(line).name) for line in requirements}


def undeclared_imports(folder: Path, declared: set[str]) -> list[str]:
    """One line per package imported under `folder` whose distribution is not in `declared`."""
    distributions = packages_distributions()
    problems = []
    for package, path in sorted(imported_packages(folder).items()):
        if package in UNDECLARED:
            continue
        installed = {_normalized(name) for name in distributions.get(package, [])}
        if not installed:
            problems.append(f"{path}: imports {package}, which no installed distribution provides")
        elif not installed & declared:
            problems.append(f"{path}: imports {package} from {sorted(installed)}, not declared")
    return problems


def test_src_imports_only_declared_packages():
    assert undeclared_imports(ROOT / "src", declared_distributions("jax")) == []


@pytest.mark.parametrize("folder", ["tests", "bench"])
def test_tests_and_benchmarks_import_only_declared_packages(folder):
    assert undeclared_imports(ROOT / folder, declared_distributions("dev")) == []


def test_every_undeclared_import_is_still_made_by_src():
    assert set(UNDECLARED) <= set(imported_packages(ROOT / "src"))


def test_an_undeclared_import_is_reported_with_its_file(tmp_path):
    (tmp_path / "tool.py").write_text("import os\nimport numpy\nfrom PIL import Image\n")
    assert undeclared_imports(tmp_path, {"numpy"}) == [
        f"{tmp_path.name}/tool.py: imports PIL from ['pillow'], not declared"
    ]

"""The package as a whole: its public names resolve, the CLI starts without the heavy
libraries, and no two modules import each other when the package loads."""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import digitlab

SRC = Path(__file__).resolve().parents[1] / "src"

#: Libraries that take seconds to import: the CLI loads them only in the verb that needs them.
HEAVY_MODULES = ["tensorflow", "keras", "sklearn", "cv2", "jax"]


def test_every_public_name_resolves():
    unresolved = []
    for name in digitlab.__all__:
        try:
            getattr(digitlab, name)
        except (AttributeError, ImportError) as error:
            unresolved.append(f"{name}: {error}")
    assert unresolved == []
    assert sorted(dir(digitlab)) == sorted(digitlab.__all__)


def test_importing_the_cli_loads_none_of_the_heavy_libraries():
    code = (
        "import json, sys\n"
        "import digitlab.cli\n"
        f"print(json.dumps([name for name in {HEAVY_MODULES!r} if name in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout) == []


def module_name(path: Path, root: Path) -> str:
    """The dotted name of the module in `path`, a file under the import root `root`."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements run when a module loads: not those inside functions, which
    run later, nor under `if TYPE_CHECKING:`, which never run."""
    for statement in body:
        if isinstance(statement, ast.Import | ast.ImportFrom):
            yield statement
        elif isinstance(statement, ast.If):
            if not _is_type_checking(statement.test):
                yield from runtime_imports(statement.body)
            yield from runtime_imports(statement.orelse)
        elif isinstance(statement, ast.Try):
            for block in (statement.body, statement.orelse, statement.finalbody):
                yield from runtime_imports(block)
            for handler in statement.handlers:
                yield from runtime_imports(handler.body)
        elif isinstance(statement, ast.With | ast.ClassDef):
            yield from runtime_imports(statement.body)


def imported_modules(
    statement: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]
) -> set[str]:
    """The modules among `known` that `statement`, in module `importer`, imports."""
    if isinstance(statement, ast.Import):
        return {alias.name for alias in statement.names} & known
    package = importer if is_package else importer.rpartition(".")[0]
    for _ in range(statement.level - 1):
        package = package.rpartition(".")[0]
    base = ".".join(part for part in (package if statement.level else "", statement.module) if part)
    found = set()
    for alias in statement.names:
        submodule = f"{base}.{alias.name}"
        found.add(submodule if submodule in known else base)
    return found & known


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Each module of `package` (under the import root `root`) -> the modules of the same
    package it imports at load time."""
    files = {module_name(path, root): path for path in (root / package).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        graph[name] = {
            imported
            for statement in runtime_imports(tree.body)
            for imported in imported_modules(statement, name, is_package, set(files))
        } - {name}
    return graph


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in `graph` as the modules along it (the first one repeated at the end), or
    None when there is none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def test_no_module_of_digitlab_imports_itself_through_others_when_loading():
    graph = import_graph(SRC, "digitlab")
    assert len(graph) > 40 and "digitlab.cli.app" in graph["digitlab.cli"]
    cycle = import_cycle(graph)
    assert cycle is None, "runtime import cycle: " + " -> ".join(cycle or [])


def _write_package(root: Path, modules: dict[str, str]) -> None:
    for name, source in modules.items():
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_the_cycle_check_finds_a_cycle_through_a_relative_import(tmp_path):
    _write_package(
        tmp_path,
        {
            "pkg.__init__": "",
            "pkg.a": "from pkg.b import helper\n",
            "pkg.b": "import pkg.sub.c\n",
            "pkg.sub.__init__": "",
            "pkg.sub.c": "from .. import a\n",
        },
    )
    cycle = import_cycle(import_graph(tmp_path, "pkg"))
    assert cycle is not None and cycle[0] == cycle[-1]
    assert sorted(cycle[1:]) == ["pkg.a", "pkg.b", "pkg.sub.c"]


@pytest.mark.parametrize(
    "late_import",
    [
        "def load():\n    from pkg import a\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
    ],
    ids=["inside-a-function", "type-checking-only"],
)
def test_the_cycle_check_ignores_imports_that_do_not_run_at_load_time(tmp_path, late_import):
    _write_package(
        tmp_path, {"pkg.__init__": "", "pkg.a": "from pkg.b import helper\n", "pkg.b": late_import}
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == set()
    assert import_cycle(graph) is None

"""The four notebooks run top to bottom on small settings, in a kernel of this venv's Python.

Each notebook's first code cell is tagged "parameters"; the test inserts a cell after it that
overrides those defaults (as papermill does), so every run is small and writes only under
pytest's temporary folder, which is also the kernel's working folder.
"""

from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK_NAMES = (
    "data_exploration.ipynb",
    "data_preprocessing.ipynb",
    "model_training.ipynb",
    "model_evaluation.ipynb",
)
KERNEL_NAME = "digitlab-test-python"
CELL_TIMEOUT_S = 300


def _parameters_cell_index(notebook: nbformat.NotebookNode) -> int:
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            assert "parameters" in cell.metadata.get("tags", []), "first code cell is not tagged"
            return index
    raise AssertionError("the notebook has no code cell")


def _inject_parameters(notebook: nbformat.NotebookNode, parameters: dict[str, Any]) -> None:
    """Insert a cell assigning `parameters` right after the "parameters" cell."""
    index = _parameters_cell_index(notebook)
    tree = ast.parse(notebook.cells[index].source)
    defined = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    # A misspelt name would be assigned and ignored, silently running the default.
    unknown = set(parameters) - defined
    assert not unknown, f"not parameters of the notebook: {sorted(unknown)}"
    source = "\n".join(f"{name} = {value!r}" for name, value in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, cell)


def execute(name: str, parameters: dict[str, Any], workdir: Path) -> nbformat.NotebookNode:
    """Run notebook `name` with `parameters` in `workdir`; a failing cell raises."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    _inject_parameters(notebook, parameters)
    # A kernel spec of our own that names this interpreter: a user-level "python3" spec
    # could otherwise start some other Python, without digitlab installed.
    jupyter_dir = workdir / "jupyter"
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "digitlab tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(jupyter_dir))
        client = NotebookClient(
            notebook,
            timeout=CELL_TIMEOUT_S,
            kernel_name=KERNEL_NAME,
            resources={"metadata": {"path": str(workdir)}},
        )
        client.execute()
    return notebook


def displayed_pngs(notebook: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def printed_text(notebook: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_is_stored_without_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    assert notebook.metadata.kernelspec.name == "python3"
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells)
    assert "parameters" in code_cells[0].metadata.get("tags", [])
    assert any(cell.cell_type == "markdown" for cell in notebook.cells)


@pytest.mark.slow
def test_data_exploration_notebook_shows_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    notebook = execute(
        "data_exploration.ipynb",
        {"dataset": "mnist", "out_dir": str(out), "sample_size": 500, "tsne_size": 150},
        tmp_path,
    )
    assert (out / "report.md").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pca"]["sample_size"] == 500 and summary["tsne"]["sample_size"] == 150
    # counts, samples, means, pixels, PCA, k-means, t-SNE, feature views
    assert displayed_pngs(notebook) == 8


@pytest.mark.slow
def test_data_preprocessing_notebook_exports_scans_and_splits(tmp_path: Path) -> None:
    out = tmp_path / "preprocess"
    notebook = execute(
        "data_preprocessing.ipynb", {"count": 200, "out_dir": str(out), "seed": 1}, tmp_path
    )
    # The broken file the notebook made was found, reported and moved aside, not deleted.
    assert (out / "quarantine" / "3" / "3_broken.png").is_file()
    assert not (out / "images" / "3" / "3_broken.png").exists()
    assert "damaged or truncated image" in printed_text(notebook)
    with open(out / "split" / "split.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 200
    assert {row["subset"] for row in rows} == {"train", "val", "test"}
    assert "pixels read back equal MNIST's: True" in printed_text(notebook)
    # the first seven and the grid of training images read back
    assert displayed_pngs(notebook) == 2


@pytest.fixture(scope="module")
def training_notebook(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[nbformat.NotebookNode, Path]:
    """The training notebook run once on 300 images for 1 epoch: (notebook, its out_dir)."""
    workdir = tmp_path_factory.mktemp("training")
    out = workdir / "out"
    notebook = execute(
        "model_training.ipynb",
        {"model": "mlp", "epochs": 1, "limit": 300, "out_dir": str(out)},
        workdir,
    )
    return notebook, out


@pytest.mark.slow
def test_model_training_notebook_trains_and_shows_curves(
    training_notebook: tuple[nbformat.NotebookNode, Path],
) -> None:
    notebook, out = training_notebook
    run_dir = out / "run"
    assert (run_dir / "model.keras").is_file()
    with open(run_dir / "history.csv", newline="") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1"]
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["model"], config["epochs"], config["limit"]) == ("mlp", 1, 300)
    # the curves and the augmentation grid
    assert displayed_pngs(notebook) == 2


@pytest.mark.slow
def test_model_evaluation_notebook_reports_and_predicts_own_images(
    tmp_path: Path, training_notebook: tuple[nbformat.NotebookNode, Path]
) -> None:
    _, training_out = training_notebook
    out = tmp_path / "evaluation"
    model_path = training_out / "run" / "model.keras"
    notebook = execute(
        "model_evaluation.ipynb",
        {"model_path": str(model_path), "limit": 500, "out_dir": str(out)},
        tmp_path,
    )
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["num_images"] == 500 and metrics["model"] == str(model_path)
    assert (out / "report" / "misclassified.png").is_file()
    # confusion matrix, misclassified grid, own images before and after to_mnist
    assert displayed_pngs(notebook) == 3
    text = printed_text(notebook)
    assert "blank.png" in text and "no digit" in text.lower()

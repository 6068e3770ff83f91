"""Comparing runs: the table, the overlay plot, evaluation on request, and non-run folders."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from digitlab.cli.app import app
from digitlab.comparison import COMPARISON_FILES, compare, format_table
from digitlab.errors import DataError
from digitlab.evaluation import evaluate

HISTORY_HEADER = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"]


def make_run(
    root: Path,
    name: str,
    model_path: Path,
    val_accuracy: list[float],
    model: str = "tiny",
    train_seconds: float = 12.5,
) -> Path:
    """A run folder as `digitlab train` writes it, around a real trained model."""
    run_dir = root / name
    run_dir.mkdir()
    shutil.copyfile(model_path, run_dir / "model.keras")
    epochs = len(val_accuracy)
    (run_dir / "config.json").write_text(
        json.dumps(
            {"model": model, "dataset": "mnist", "epochs": epochs, "batch_size": 64, "seed": 0}
        )
    )
    with open(run_dir / "history.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HISTORY_HEADER)
        for epoch, accuracy in enumerate(val_accuracy):
            writer.writerow([epoch, 0.5, accuracy - 0.01, 1.0 - accuracy, accuracy, 0.001])
    (run_dir / "summary.json").write_text(
        json.dumps(
            {
                "model": model,
                "params": 7850,
                "epochs_completed": epochs,
                "epochs": epochs,
                "train_seconds": train_seconds,
                "best_val_accuracy": max(val_accuracy),
                "best_epoch": int(np.argmax(val_accuracy)) + 1,
                "dataset": "mnist",
                "class_names": [str(i) for i in range(10)],
                "num_classes": 10,
            }
        )
    )
    return run_dir


@pytest.fixture(scope="module")
def run_templates(tmp_path_factory, tiny_model_path, mnist) -> tuple[Path, float]:
    """Run `a` with a recorded evaluation on 1,000 test images, run `b` without one."""
    _, (x_test, y_test) = mnist
    root = tmp_path_factory.mktemp("runs")
    run_a = make_run(root, "a", tiny_model_path, [0.80, 0.86, 0.88], model="mlp")
    make_run(root, "b", tiny_model_path, [0.70, 0.84], model="cnn", train_seconds=3.25)
    recorded = evaluate(
        run_a / "model.keras", x_test[:1000], y_test[:1000], out=run_a / "evaluation"
    )
    return root, recorded.accuracy


@pytest.fixture
def two_runs(run_templates, tmp_path) -> tuple[Path, Path, float]:
    """Fresh copies of the template runs, which a test may change."""
    root, recorded_accuracy = run_templates
    runs = tmp_path / "runs"
    shutil.copytree(root, runs)
    return runs / "a", runs / "b", recorded_accuracy


def test_compare_table_lists_runs_with_recorded_test_accuracy(two_runs):
    run_a, run_b, recorded_accuracy = two_runs
    rows = compare([run_a, run_b])

    assert [row.model for row in rows] == ["mlp", "cnn"]
    assert rows[0].test_accuracy == recorded_accuracy
    assert rows[1].test_accuracy is None
    assert rows[0].best_val_accuracy == 0.88 and rows[1].epochs_completed == 2
    table = [
        [cell.strip() for cell in line.split("|")[1:-1]] for line in format_table(rows).splitlines()
    ]
    assert table[0] == [
        "run",
        "model",
        "epochs",
        "parameters",
        "train s",
        "best val acc",
        "test acc",
    ]
    # Markdown alignment: the names left, every number right.
    assert [mark[0] + mark[-1] for mark in table[1]] == ["--", "--", *["-:"] * 5]
    assert table[2] == ["a", "mlp", "3/3", "7,850", "12.5", "88.00%", f"{recorded_accuracy:.2%}"]
    assert table[3][-1] == "-"


def test_compare_writes_table_csv_and_validation_overlay(two_runs, tmp_path):
    run_a, run_b, recorded_accuracy = two_runs
    out = tmp_path / "comparison"
    rows = compare([run_a, run_b], out=out)

    assert sorted(path.name for path in out.iterdir()) == sorted(COMPARISON_FILES)
    assert (out / "comparison.md").read_text() == format_table(rows)
    with open(out / "comparison.csv", newline="") as handle:
        records = list(csv.DictReader(handle))
    assert [record["model"] for record in records] == ["mlp", "cnn"]
    assert float(records[0]["test_accuracy"]) == recorded_accuracy
    assert records[1]["test_accuracy"] == ""
    assert float(records[1]["train_seconds"]) == 3.25
    with Image.open(out / "comparison.png") as image:
        assert image.format == "PNG" and image.size[0] > 800


def test_compare_evaluates_missing_runs_into_their_run_folder(two_runs, mnist):
    run_a, run_b, recorded_accuracy = two_runs
    recorded_metrics = (run_a / "evaluation" / "metrics.json").read_bytes()

    rows = compare([run_a, run_b], evaluate_missing=True)

    _, (x_test, y_test) = mnist
    model = keras.models.load_model(run_b / "model.keras")
    independent = float(np.mean(model.predict(x_test, verbose=0).argmax(axis=1) == y_test))
    assert rows[1].test_accuracy == pytest.approx(independent, abs=1e-12)
    metrics = json.loads((run_b / "evaluation" / "metrics.json").read_text())
    assert metrics["num_images"] == 10000 and metrics["dataset"] == "mnist"
    # A run already evaluated keeps its evaluation.
    assert rows[0].test_accuracy == recorded_accuracy
    assert (run_a / "evaluation" / "metrics.json").read_bytes() == recorded_metrics


def test_compare_rejects_folders_that_are_not_runs(two_runs, tmp_path):
    run_a, _, _ = two_runs
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty: not a run folder"):
        compare([run_a, empty])
    with pytest.raises(DataError, match="missing: no such folder"):
        compare([tmp_path / "missing"])

    summary = json.loads((run_a / "summary.json").read_text())
    del summary["params"]
    (run_a / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(DataError, match="summary.json: missing params"):
        compare([run_a])
    (run_a / "summary.json").write_text("{broken")
    with pytest.raises(DataError, match="summary.json: not readable JSON"):
        compare([run_a])


def test_compare_rejects_history_without_validation_columns(two_runs):
    run_a, _, _ = two_runs
    (run_a / "history.csv").write_text("epoch,loss,accuracy\n0,0.5,0.8\n")
    with pytest.raises(DataError, match="history.csv: expected a header with val_accuracy"):
        compare([run_a])


def test_cli_compare_prints_table_and_writes_plot(two_runs, tmp_path):
    run_a, run_b, _ = two_runs
    out = tmp_path / "cmp"
    result = CliRunner().invoke(app, ["compare", str(run_a), str(run_b), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| a " in result.stdout and "| b " in result.stdout and "mlp" in result.stdout
    assert (out / "comparison.png").is_file()


def test_cli_compare_non_run_folder_is_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["compare", str(tmp_path)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a run folder" in lines[0]

"""Comparing training runs side by side: one table and one overlay of validation curves.

A run folder (written by `digitlab train`) holds `summary.json`, `history.csv` and
`model.keras`. The test accuracy comes from the run's evaluation, `RUN_DIR/evaluation/
metrics.json` (or `RUN_DIR/metrics.json`); a run without one shows "-" unless the caller
asks to evaluate it, which writes that evaluation into `RUN_DIR/evaluation/`.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path
from typing import Any

from digitlab.atomic import atomic_write_text
from digitlab.errors import DataError
from digitlab.evaluation import DEFAULT_BATCH_SIZE, evaluate_model_file
from digitlab.tables import markdown_table
from digitlab.training.run_folder import RunFolder, read_json_object

EVALUATION_FOLDER = "evaluation"
"""Where `compare(..., evaluate_missing=True)` writes a run's evaluation, inside the run."""

COMPARISON_FILES = ("comparison.md", "comparison.csv", "comparison.png")
"""The files `compare(..., out=DIR)` writes into DIR."""

_SUMMARY_KEYS = (
    "model",
    "params",
    "epochs_completed",
    "epochs",
    "train_seconds",
    "best_val_accuracy",
    "dataset",
)


@dataclass(frozen=True)
class ComparisonRow:
    """One run's line in the comparison table. `test_accuracy` is None when not evaluated."""

    run_dir: Path
    model: str
    epochs_completed: int
    epochs: int
    params: int
    train_seconds: float
    best_val_accuracy: float
    test_accuracy: float | None
    dataset: str
    """The dataset spec the run trained on, and that `evaluate_missing` tests it on."""


@dataclass(frozen=True)
class _Run:
    row: ComparisonRow
    val_accuracy: list[float]
    val_loss: list[float]


def compare(
    run_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str] | None = None,
    evaluate_missing: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache_dir: str | os.PathLike[str] | None = None,
) -> list[ComparisonRow]:
    """Read each run folder and return one `ComparisonRow` per run, in the order given.

    With `evaluate_missing`, a run without an evaluation is evaluated on its dataset's test
    split and the report written into `RUN_DIR/evaluation/`. With `out`, `comparison.md`
    (the table), `comparison.csv` and `comparison.png` (validation accuracy and loss of every
    run, overlaid) are written there atomically.

    Raises `DataError` naming the folder or file when a folder is not a run folder or its
    `summary.json` / `history.csv` is malformed, and what `evaluate_model_file` raises.
    """
    from digitlab.plots.evaluation import CurveSeries, plot_validation_curves

    if not run_dirs:
        raise DataError("no run folders to compare")
    runs = [_read_run(Path(run_dir)) for run_dir in run_dirs]
    if evaluate_missing:
        runs = [_with_test_accuracy(run, batch_size, cache_dir) for run in runs]
    rows = [run.row for run in runs]
    if out is not None:
        out = Path(out)
        atomic_write_text(out / "comparison.md", format_table(rows))
        atomic_write_text(out / "comparison.csv", _csv_text(rows))
        plot_validation_curves(
            [
                CurveSeries(
                    label=f"{run.row.run_dir.name} ({run.row.model})",
                    epochs=list(range(1, len(run.val_accuracy) + 1)),
                    val_accuracy=run.val_accuracy,
                    val_loss=run.val_loss,
                )
                for run in runs
            ],
            out / "comparison.png",
        )
    return rows


def format_table(rows: Sequence[ComparisonRow]) -> str:
    """The rows as an aligned Markdown table (readable as plain text too), numbers on the right."""
    header = ["run", "model", "epochs", "parameters", "train s", "best val acc", "test acc"]
    cells = [
        [
            row.run_dir.name or str(row.run_dir),
            row.model,
            f"{row.epochs_completed}/{row.epochs}",
            f"{row.params:,}",
            f"{row.train_seconds:.1f}",
            f"{row.best_val_accuracy:.2%}",
            "-" if row.test_accuracy is None else f"{row.test_accuracy:.2%}",
        ]
        for row in rows
    ]
    return markdown_table(header, cells, right=range(2, len(header))) + "\n"


def _csv_text(rows: Sequence[ComparisonRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(field.name for field in fields(ComparisonRow))
    for row in rows:
        writer.writerow("" if value is None else value for value in astuple(row))
    return buffer.getvalue()


def _read_run(run_dir: Path) -> _Run:
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such folder")
    folder = RunFolder(run_dir)
    summary = folder.read_summary(required=_SUMMARY_KEYS)
    history = folder.read_history(columns=("val_accuracy", "val_loss"))
    try:
        row = ComparisonRow(
            run_dir=run_dir,
            model=str(summary["model"]),
            epochs_completed=int(summary["epochs_completed"]),
            epochs=int(summary["epochs"]),
            params=int(summary["params"]),
            train_seconds=float(summary["train_seconds"]),
            best_val_accuracy=float(summary["best_val_accuracy"]),
            test_accuracy=_recorded_test_accuracy(run_dir),
            dataset=str(_dataset_spec(folder, summary)),
        )
    except (TypeError, ValueError):
        raise DataError(f"{folder.summary}: a value has the wrong type") from None
    return _Run(row, history["val_accuracy"], history["val_loss"])


def _dataset_spec(folder: RunFolder, summary: dict[str, Any]) -> Any:
    """What `load_dataset` needs to reload the run's data: the training config's `dataset`.

    summary.json names a folder dataset only by its last part, so it is the fallback.
    """
    settings = folder.read_settings()
    if settings is not None:
        return settings.get("dataset", summary["dataset"])
    return summary["dataset"]


def _recorded_test_accuracy(run_dir: Path) -> float | None:
    for path in (run_dir / EVALUATION_FOLDER / "metrics.json", run_dir / "metrics.json"):
        if path.is_file():
            accuracy = read_json_object(path).get("accuracy")
            if not isinstance(accuracy, (int, float)):
                raise DataError(f"{path}: no numeric accuracy")
            return float(accuracy)
    return None


def _with_test_accuracy(
    run: _Run, batch_size: int, cache_dir: str | os.PathLike[str] | None
) -> _Run:
    if run.row.test_accuracy is not None:
        return run
    run_dir = run.row.run_dir
    result = evaluate_model_file(
        RunFolder(run_dir).model,
        dataset=run.row.dataset,
        out=run_dir / EVALUATION_FOLDER,
        batch_size=batch_size,
        cache_dir=cache_dir,
    )
    return replace(run, row=replace(run.row, test_accuracy=result.accuracy))

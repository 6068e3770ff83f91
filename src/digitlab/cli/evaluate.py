"""`digitlab evaluate` and `digitlab compare`: thin shells over evaluation.py and comparison.py."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.app import app, import_keras_quietly

# Repeated here rather than imported: importing digitlab.evaluation would pull in NumPy and
# scikit-learn for every `digitlab --help`.
_DEFAULT_BATCH_SIZE = 1024

BatchSize = Annotated[
    int,
    typer.Option(
        "--batch-size",
        min=1,
        help=f"Images per prediction batch (default: {_DEFAULT_BATCH_SIZE}).",
        show_default=False,
    ),
]


@app.command("evaluate")
def evaluate_command(
    model: Annotated[Path, typer.Argument(help="A trained model file (.keras).")],
    dataset: Annotated[
        str,
        typer.Option(
            help="mnist, fashion-mnist, or the path of an IDX folder or class-folder tree; "
            "its test split is used (default: mnist).",
            show_default=False,
        ),
    ] = "mnist",
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder to write report.txt, metrics.json, confusion_matrix.png and "
            "misclassified.png into; other files there are left alone "
            "(default: print only, write nothing).",
            show_default=False,
        ),
    ] = None,
    batch_size: BatchSize = _DEFAULT_BATCH_SIZE,
) -> None:
    """Print test accuracy, loss and the classification report of MODEL on a dataset."""
    import_keras_quietly()
    from digitlab.evaluation import evaluate_model_file

    result = evaluate_model_file(model, dataset=dataset, out=out, batch_size=batch_size)
    typer.echo(result.summary_text(), nl=False)
    if result.files:
        typer.echo(f"\nwrote {', '.join(sorted(result.files))} to {out}")


@app.command("compare")
def compare_command(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Run folders written by `digitlab train`.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder to write comparison.md, comparison.csv and comparison.png "
            "(validation curves overlaid) into (default: print the table only).",
            show_default=False,
        ),
    ] = None,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--evaluate/--no-evaluate",
            help="Evaluate runs that have no evaluation yet on their dataset's test split, "
            "writing it into RUN_DIR/evaluation/ (default: --no-evaluate: show '-').",
            show_default=False,
        ),
    ] = False,
    batch_size: BatchSize = _DEFAULT_BATCH_SIZE,
) -> None:
    """Compare training runs: one table and, with --out, one plot of validation curves."""
    import_keras_quietly()
    from digitlab.comparison import COMPARISON_FILES, compare, format_table

    rows = compare(run_dirs, out=out, evaluate_missing=evaluate, batch_size=batch_size)
    typer.echo(format_table(rows), nl=False)
    if out is not None:
        typer.echo(f"\nwrote {', '.join(COMPARISON_FILES)} to {out}")

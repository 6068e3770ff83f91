"""`digitlab ensemble`: a thin shell over digitlab.inference.ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.app import app, native_stderr_silenced


@app.command("ensemble")
def ensemble_command(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(help="Run folders written by `digitlab train`, or .keras model files."),
    ],
    out: Annotated[Path, typer.Option(help="The ensemble model file to write (.keras).")],
    tta: Annotated[
        bool,
        typer.Option(
            "--tta/--no-tta",
            help="Test-time augmentation: each model also sees the image shifted by one "
            "pixel up, down, left and right (default: --no-tta).",
            show_default=False,
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace OUT if it exists (default: refuse).", show_default=False
        ),
    ] = False,
) -> None:
    """Average the probabilities of several trained models in one self-contained model.

    The result is one .keras file that evaluate, predict, export and serve take as any model.
    """
    from digitlab.inference.ensemble import ensemble_runs

    with native_stderr_silenced():
        result = ensemble_runs(run_dirs, out, tta=tta, force=force)
    typer.echo(result.summary_text(), nl=False)
    typer.echo(f"evaluate it with: digitlab evaluate {result.out}")

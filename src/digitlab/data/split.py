"""Splitting a class-folder tree into train / val / test copies with a manifest, stratified
per class and reproducible from a seed."""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.atomic import atomic_write_text
from digitlab.data.folders import PathLike, Progress, class_names_of, is_within, labelled_files
from digitlab.errors import DataError

SUBSETS = ("train", "val", "test")
MANIFEST = "split.csv"


@dataclass(frozen=True)
class SplitResult:
    """What `split_image_folder` wrote: the tree, its manifest and per-subset class counts."""

    out: Path
    manifest: Path
    class_names: list[str]
    counts: dict[str, dict[str, int]]
    """subset ("train", "val", "test") -> class name -> number of images."""


def _stratified_subsets(
    labels: np.ndarray, val: float, test: float, seed: int, src: Path
) -> dict[str, np.ndarray]:
    """Indices of each subset, stratified by label, from scikit-learn's splitter."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(labels))
    subsets = {"train": index, "val": index[:0], "test": index[:0]}
    try:
        if test > 0:
            subsets["train"], subsets["test"] = train_test_split(
                index, test_size=test, stratify=labels, random_state=seed
            )
        if val > 0:
            rest = subsets["train"]
            # `val` is a fraction of the whole set, so rescale it to what is left.
            subsets["train"], subsets["val"] = train_test_split(
                rest, test_size=val / (1 - test), stratify=labels[rest], random_state=seed
            )
    except ValueError as error:
        raise DataError(f"{src}: cannot split it stratified by class ({error})") from None
    return {name: np.sort(indices) for name, indices in subsets.items()}


def split_image_folder(
    src: PathLike,
    out: PathLike,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
    progress: Progress | None = None,
) -> SplitResult:
    """Split a class-folder tree into train / val / test, stratified per class.

    `val` and `test` are fractions of the whole set (each >= 0, together < 1); the
    split comes from scikit-learn's `train_test_split(stratify=...)` with `seed`, over
    the files in path order, so the same tree and seed give the same split. Images are
    COPIED (never moved) to `out/{train,val,test}/<class>/<path inside the class folder>`
    with `out/split.csv` (columns path, label, subset, source; paths relative to `out`
    and `src`). The tree is built in a hidden folder beside `out` and renamed to `out`
    only when complete, so a failed split leaves no partial tree and can be rerun.
    Files are not decoded: run `scan_image_folder` first to weed out bad ones.
    Raises `DataError` for bad fractions, a missing or empty `src`, a folder in it that
    cannot be listed, an `out` that is not empty or lies inside `src`, classes too small to
    stratify, or a file that cannot be copied.
    """
    src, out = Path(src), Path(out)
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DataError(f"{out}: val ({val}) and test ({test}) must be >= 0 and sum to below 1")
    class_names = class_names_of(src)
    if is_within(out, src):
        raise DataError(f"{out}: the output folder must be outside {src}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not empty; choose a new folder")
    files = labelled_files(src, class_names)
    if not files:
        raise DataError(f"{src}: no images in its class folders")
    labels = np.array([label for _, label in files])
    subsets = _stratified_subsets(labels, val, test, seed, src)

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        # A folder made inside the private temporary one gets the usual permissions.
        tree = staging / out.name
        tree.mkdir()
        rows = _copy_subsets(files, subsets, src, tree, class_names, progress)
        _write_manifest(tree / MANIFEST, rows)
        if out.exists():
            out.rmdir()  # empty, as checked above
        os.replace(tree, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = {}
    for subset in SUBSETS:
        tally = Counter(labels[subsets[subset]].tolist())
        counts[subset] = {name: tally.get(label, 0) for label, name in enumerate(class_names)}
    return SplitResult(out, out / MANIFEST, class_names, counts)


def _copy_subsets(
    files: list[tuple[Path, int]],
    subsets: dict[str, np.ndarray],
    src: Path,
    tree: Path,
    class_names: Sequence[str],
    progress: Progress | None,
) -> list[tuple[str, str, str, str]]:
    """Copy each subset's files under `tree`; return the manifest rows."""
    rows = []
    for subset in SUBSETS:
        for position in subsets[subset]:
            path, label = files[position]
            relative = path.relative_to(src)
            copy = tree / subset / relative
            try:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
            except OSError as error:
                reason = error.strerror or str(error)
                raise DataError(f"{path}: cannot copy it ({reason}); nothing was written") from None
            rows.append(
                (copy.relative_to(tree).as_posix(), class_names[label], subset, relative.as_posix())
            )
            if progress:
                progress(len(rows), len(files))
    return rows


def _write_manifest(manifest: Path, rows: list[tuple[str, str, str, str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "subset", "source"])
    writer.writerows(rows)
    atomic_write_text(manifest, buffer.getvalue())

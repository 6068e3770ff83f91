"""The exploration report: what a dataset looks like before any model sees it.

`explore` writes into one folder a PNG per figure, `report.md`, which embeds and explains
each figure, and `summary.json`, which holds every number the text quotes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from digitlab import __version__
from digitlab.atomic import atomic_write_text
from digitlab.data.sources import Dataset
from digitlab.errors import ConfigError, DataError
from digitlab.exploration.report import render_report
from digitlab.exploration.sections import SAMPLES_PER_CLASS, Progress, Steps, draw_sections

PathLike = str | os.PathLike[str]

REPORT_FILE = "report.md"
SUMMARY_FILE = "summary.json"
FIGURES = {
    "class_counts": "class_counts.png",
    "samples": "samples.png",
    "mean_images": "mean_images.png",
    "image_sizes": "image_sizes.png",
    "pixel_intensity": "pixel_intensity.png",
    "pca": "pca.png",
    "kmeans": "kmeans.png",
    "tsne": "tsne.png",
    "feature_views": "feature_views.png",
}
REPORT_FILES = frozenset({REPORT_FILE, SUMMARY_FILE, *FIGURES.values()})
REPORT_MARKER = "digitlab explore"

DEFAULT_SAMPLE_SIZE = 5000
DEFAULT_TSNE_SIZE = 2500
SCIKIT_LEARN_THREADS = 1
NAMED_DATASETS = ("mnist", "fashion-mnist")


@dataclass(frozen=True)
class ExploreReport:
    """Where `explore` wrote the report, and the numbers it found (as in `summary.json`)."""

    out_dir: Path
    report_path: Path
    summary_path: Path
    figures: dict[str, Path]
    summary: dict[str, Any]


def _check_out_dir(out: Path) -> list[Path]:
    """Refuse an `out` holding anything explore does not write; return an earlier report's files."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder; choose a new or empty folder")
    if not out.exists():
        return []
    entries = sorted(out.iterdir())
    foreign = [entry for entry in entries if entry.name not in REPORT_FILES or not entry.is_file()]
    if foreign:
        raise ConfigError(
            f"{out}: holds {foreign[0].name!r}, which is not part of an exploration report; "
            "choose a new or empty folder (explore never overwrites other files)"
        )
    return entries


def _load(spec_or_dataset: PathLike | Dataset) -> tuple[Dataset, Path | None]:
    """The dataset, and the root of its class-folder tree when it was read from one."""
    if isinstance(spec_or_dataset, Dataset):
        return spec_or_dataset, None
    from digitlab.data.idx import is_idx_folder
    from digitlab.data.sources import load_dataset

    spec = os.fspath(spec_or_dataset)
    dataset = load_dataset(spec)
    path = Path(spec)
    is_tree = spec not in NAMED_DATASETS and path.is_dir() and not is_idx_folder(path)
    return dataset, path if is_tree else None


def _write_report(out: Path, summary: dict[str, Any], earlier: Sequence[Path]) -> tuple[Path, Path]:
    """Write report.md and summary.json; remove an earlier report's files not written again."""
    report_path, summary_path = out / REPORT_FILE, out / SUMMARY_FILE
    atomic_write_text(report_path, render_report(summary, SUMMARY_FILE))
    atomic_write_text(summary_path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    written = {report_path, summary_path, *(out / name for name in summary["figures"].values())}
    for stale in earlier:
        if stale not in written:
            stale.unlink(missing_ok=True)
    return report_path, summary_path


def explore(
    spec_or_dataset: PathLike | Dataset,
    out: PathLike,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    tsne_size: int = DEFAULT_TSNE_SIZE,
    seed: int = 0,
    progress: Progress | None = None,
) -> ExploreReport:
    """Write the exploration report of a dataset into the folder `out`.

    `spec_or_dataset` is a `Dataset` or anything `load_dataset` takes ("mnist",
    "fashion-mnist", an IDX folder, a class-folder tree, whose files' sizes and formats
    are scanned too). PCA and k-means use a stratified sample of `sample_size`
    training images, t-SNE a stratified `tsne_size` of those (0 skips it); `seed` fixes
    every random choice. `progress` hears of each step as it starts.
    `out` must be new, empty or an earlier report (only files explore writes); an
    earlier report's files that this run does not write again are removed.
    Returns an `ExploreReport`. Raises `ConfigError` for an `out` holding other files
    or a bad size, and `DataError` for a dataset that cannot be loaded or is too small.
    """
    if sample_size < 2 or tsne_size < 0:
        raise ConfigError(
            f"the sample size must be at least 2 and the t-SNE size at least 0, got "
            f"{sample_size} and {tsne_size}"
        )
    out = Path(out)
    earlier = _check_out_dir(out)
    steps = Steps(total=10 + (tsne_size > 0), progress=progress)
    with steps.run("load", "loading the dataset"):
        dataset, image_root = _load(spec_or_dataset)
    if len(dataset.x_train) < len(dataset.class_names):
        raise DataError(
            f"{dataset.name}: {len(dataset.x_train)} training images, fewer than its "
            f"{len(dataset.class_names)} classes; k-means needs at least one image per class"
        )
    out.mkdir(parents=True, exist_ok=True)
    paths = {key: out / name for key, name in FIGURES.items()}
    summary: dict[str, Any] = {
        "report": REPORT_MARKER,
        "version": __version__,
        "dataset": dataset.name,
        "seed": seed,
        "class_names": list(dataset.class_names),
        "samples_per_class": SAMPLES_PER_CLASS,
    }
    # scikit-learn's OpenMP threads spin while they wait: on a busy machine t-SNE ran several
    # times slower with two threads than with one, which costs only a little when idle.
    with threadpool_limits(limits=SCIKIT_LEARN_THREADS):
        summary |= draw_sections(dataset, image_root, paths, sample_size, tsne_size, seed, steps)

    skipped = set() if tsne_size else {"tsne"}
    if summary["image_sizes"]["source"] != "files":
        skipped.add("image_sizes")
    figures = {key: path for key, path in paths.items() if key not in skipped}
    with steps.run("report", f"writing {REPORT_FILE} and {SUMMARY_FILE}"):
        summary["timings_s"] = dict(steps.seconds)
        summary["figures"] = {key: path.name for key, path in figures.items()}
        report_path, summary_path = _write_report(out, summary, earlier)
    steps.finish()
    return ExploreReport(out, report_path, summary_path, figures, summary)

"""The exploration report: what a dataset looks like before any model sees it.

`explore` writes into one folder a PNG per figure, `report.md`, which embeds and explains
each figure, and `summary.json`, which holds every number the text quotes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from digitlab import __version__
from digitlab.atomic import atomic_write_text
from digitlab.data.sources import Dataset
from digitlab.errors import ConfigError, DataError
from digitlab.exploration.features import feature_settings, feature_views
from digitlab.exploration.report import render_report
from digitlab.plots import exploration as plots

PathLike = str | os.PathLike[str]
Progress = Callable[[int, int, str], None]
"""Called with (steps done, steps in all, the step starting now); last with done == all."""

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
SAMPLES_PER_CLASS = 10
PCA_DIMENSIONS = 50
TSNE_PERPLEXITY = 30.0
FEATURE_SCALE = 4
SCIKIT_LEARN_THREADS = 1
NAMED_DATASETS = ("mnist", "fashion-mnist")


@dataclass(frozen=True)
class PixelStats:
    """Count, mean, standard deviation and median of a set of uint8 pixel values."""

    count: int
    mean: float
    std: float
    median: float

    @classmethod
    def from_histogram(cls, histogram: np.ndarray) -> PixelStats:
        """Exact statistics from the count of each value (`histogram[v]` pixels of value v)."""
        count = int(histogram.sum())
        if count == 0:
            return cls(0, 0.0, 0.0, 0.0)
        values = np.arange(len(histogram), dtype=np.float64)
        mean = float((values * histogram).sum() / count)
        std = math.sqrt(float((histogram * (values - mean) ** 2).sum() / count))
        # The lower median: the first value at which half of the pixels have been counted.
        median = float(np.searchsorted(np.cumsum(histogram), (count + 1) // 2))
        return cls(count, round(mean, 3), round(std, 3), median)


@dataclass(frozen=True)
class ImageSizes:
    """The stored sizes, formats and modes of the image files of a folder tree (headers only)."""

    widths: np.ndarray
    heights: np.ndarray
    format_modes: dict[str, int]
    """"FORMAT MODE" (e.g. "PNG L", "JPEG RGB") -> number of files."""
    not_images: list[str]
    """Files Pillow could not identify as an image, relative to the root."""


@dataclass(frozen=True)
class ExploreReport:
    """Where `explore` wrote the report, and the numbers it found (as in `summary.json`)."""

    out_dir: Path
    report_path: Path
    summary_path: Path
    figures: dict[str, Path]
    summary: dict[str, Any]


class _Steps:
    """Announces each step to `progress` and records how long each one took."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.done = 0
        self.progress = progress
        self.seconds: dict[str, float] = {}

    @contextmanager
    def run(self, key: str, description: str) -> Iterator[None]:
        if self.progress:
            self.progress(self.done, self.total, description)
        started = time.perf_counter()
        yield
        self.seconds[key] = round(time.perf_counter() - started, 2)
        self.done += 1

    def finish(self) -> None:
        if self.progress:
            self.progress(self.total, self.total, "done")


def scan_image_sizes(root: PathLike) -> ImageSizes:
    """Read the header (not the pixels) of every image file in the class folders of `root`.

    Files directly in `root` (a split manifest, a README) and hidden files or folders are
    skipped. Widths and heights are as displayed: an EXIF rotation by 90 degrees swaps
    them, as loading does. Headers are read by the shared decoder (`read_header`), so a
    file it would refuse (not an image, a format outside `SUPPORTED_FORMATS`, too large)
    is listed in `not_images`, not raised.
    """
    from digitlab.errors import ImageError
    from digitlab.images import read_header

    root = Path(root)
    widths: list[int] = []
    heights: list[int] = []
    format_modes: Counter[str] = Counter()
    not_images: list[str] = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if len(relative.parts) < 2 or any(part.startswith(".") for part in relative.parts):
            continue
        if not path.is_file():
            continue
        try:
            header = read_header(path, str(relative))
        except ImageError:
            not_images.append(str(relative))
            continue
        format_modes[f"{header.format} {header.mode}"] += 1
        widths.append(header.width)
        heights.append(header.height)
    return ImageSizes(
        np.array(widths, dtype=np.int64),
        np.array(heights, dtype=np.int64),
        dict(format_modes.most_common()),
        not_images,
    )


def stratified_sample(labels: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of `size` items drawn at random, each class in its own proportion.

    Every class present keeps at least one item, which may add one per tiny class.
    All indices when `size` >= len(labels).
    """
    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Written out rather than scikit-learn's stratified split, which refuses classes with
    # a single member; a user's folder tree may well have one.
    exact = size * counts / len(labels)
    quotas = np.floor(exact).astype(int)
    # Largest remainders first, so that the quotas add up to `size`.
    quotas[np.argsort(quotas - exact, kind="stable")[: size - quotas.sum()]] += 1
    quotas = np.maximum(quotas, 1)
    picks = [
        rng.permutation(np.flatnonzero(labels == label))[:quota]
        for label, quota in zip(classes, quotas, strict=True)
    ]
    return np.sort(np.concatenate(picks))


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


def _class_counts(dataset: Dataset) -> dict[str, Any]:
    splits = {"train": dataset.y_train, "test": dataset.y_test}
    per_split = {
        split: np.bincount(labels, minlength=len(dataset.class_names)).tolist()
        for split, labels in splits.items()
        if len(labels)
    }
    train = np.array(per_split["train"])
    largest, smallest = int(train.argmax()), int(train.argmin())
    section: dict[str, Any] = {
        "per_split": {
            split: dict(zip(dataset.class_names, counts, strict=True))
            for split, counts in per_split.items()
        },
        "largest": [dataset.class_names[largest], int(train[largest])],
        "smallest": [dataset.class_names[smallest], int(train[smallest])],
        "imbalance_ratio": round(float(train[largest] / train[smallest]), 3)
        if train[smallest]
        else None,
    }
    if "test" in per_split:
        test = np.array(per_split["test"])
        gap = np.abs(train / train.sum() - test / test.sum()).max()
        section["max_share_gap_points"] = round(float(100 * gap), 2)
    return section


def _mean_images(dataset: Dataset) -> np.ndarray:
    means = np.zeros((len(dataset.class_names), *dataset.x_train.shape[1:]), dtype=np.float32)
    for label in range(len(dataset.class_names)):
        members = dataset.x_train[dataset.y_train == label]
        if len(members):
            means[label] = members.mean(axis=0, dtype=np.float64)
    return means


def _mean_image_similarity(means: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """The most and least alike pair of class means, by the correlation of their pixels."""
    correlation = np.corrcoef(means.reshape(len(means), -1))
    pairs = [
        (i, j)
        for i in range(len(means))
        for j in range(i + 1, len(means))
        if np.isfinite(correlation[i, j])
    ]
    if not pairs:
        return {}
    most = max(pairs, key=lambda pair: correlation[pair])
    least = min(pairs, key=lambda pair: correlation[pair])
    return {
        key: [class_names[i], class_names[j], round(float(correlation[i, j]), 3)]
        for key, (i, j) in (("most_similar", most), ("least_similar", least))
    }


def _size_summary(sizes: ImageSizes | None, dataset: Dataset) -> dict[str, Any]:
    height, width = dataset.x_train.shape[1:]
    loaded = {"width": int(width), "height": int(height)}
    if sizes is None or not len(sizes.widths):
        total = len(dataset.x_train) + len(dataset.x_test)
        return {"source": "arrays", "images": total, **loaded}

    def spread(values: np.ndarray) -> dict[str, float]:
        return {
            "min": int(values.min()),
            "max": int(values.max()),
            "median": float(np.median(values)),
            "mean": round(float(values.mean()), 1),
        }

    common = Counter(zip(sizes.widths.tolist(), sizes.heights.tolist(), strict=True))
    return {
        "source": "files",
        "files": len(sizes.widths),
        "width": spread(sizes.widths),
        "height": spread(sizes.heights),
        "distinct_sizes": len(common),
        "most_common_sizes": [[w, h, n] for (w, h), n in common.most_common(5)],
        "format_modes": sizes.format_modes,
        "not_images": sizes.not_images,
        "loaded_as": loaded,
    }


def _pixel_histogram(dataset: Dataset, chunk: int = 8192) -> np.ndarray:
    """The count of each pixel value 0..255 over both splits."""
    histogram = np.zeros(256, dtype=np.int64)
    for x in (dataset.x_train, dataset.x_test):
        # bincount widens its input to int64: in chunks, that copy stays small.
        for start in range(0, len(x), chunk):
            histogram += np.bincount(x[start : start + chunk].ravel(), minlength=256)
    return histogram


def _cluster_table(
    clusters: np.ndarray, labels: np.ndarray, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """Each cluster's size, majority class and the share of that class in it (purity)."""
    table = []
    for cluster in range(int(clusters.max()) + 1):
        members = labels[clusters == cluster]
        counts = np.bincount(members, minlength=len(class_names))
        majority = int(counts.argmax())
        table.append(
            {
                "cluster": cluster,
                "size": int(len(members)),
                "majority": class_names[majority],
                "purity": round(float(counts[majority] / max(1, len(members))), 3),
            }
        )
    return table


def _kmeans(points: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(points)
    return model.labels_, model.cluster_centers_


def _counts_figure(dataset: Dataset, path: Path) -> dict[str, Any]:
    section = _class_counts(dataset)
    per_split = {split: list(counts.values()) for split, counts in section["per_split"].items()}
    plots.plot_class_counts(per_split, dataset.class_names, path)
    return section


def _samples_figure(dataset: Dataset, seed: int, path: Path) -> list[np.ndarray]:
    """Draw the sample grid; return the indices of each class's samples."""
    rng = np.random.default_rng(seed)
    rows = [
        rng.permutation(np.flatnonzero(dataset.y_train == label))[:SAMPLES_PER_CLASS]
        for label in range(len(dataset.class_names))
    ]
    plots.plot_sample_grid([dataset.x_train[row] for row in rows], dataset.class_names, path)
    return rows


def _means_figure(dataset: Dataset, path: Path) -> dict[str, Any]:
    means = _mean_images(dataset)
    plots.plot_mean_images(means, dataset.class_names, path)
    return _mean_image_similarity(means, dataset.class_names)


def _sizes_figure(dataset: Dataset, image_root: Path | None, path: Path) -> dict[str, Any]:
    """Size statistics; the histogram figure only for files whose sizes were scanned."""
    sizes = scan_image_sizes(image_root) if image_root else None
    section = _size_summary(sizes, dataset)
    if sizes is not None and section["source"] == "files":
        plots.plot_image_sizes(sizes.widths, sizes.heights, sizes.format_modes, path)
    return section


def _pixels_figure(dataset: Dataset, path: Path) -> dict[str, Any]:
    histogram = _pixel_histogram(dataset)
    # Ink is whatever is not background, and the background is the most common value:
    # 0 for MNIST, 255 for dark ink on white paper.
    background = int(histogram.argmax())
    ink = histogram.copy()
    ink[background] = 0
    all_stats, ink_stats = PixelStats.from_histogram(histogram), PixelStats.from_histogram(ink)
    plots.plot_pixel_histograms(histogram, background, all_stats, ink_stats, path)
    return {
        "background_value": background,
        "background_share": round(float(histogram[background] / histogram.sum()), 4),
        "all": asdict(all_stats),
        "ink": asdict(ink_stats),
    }


def _pca_figure(
    x_sample: np.ndarray, y_sample: np.ndarray, class_names: Sequence[str], seed: int, path: Path
) -> tuple[dict[str, Any], np.ndarray]:
    """PCA to `PCA_DIMENSIONS` (for k-means and t-SNE), drawn in its first two; return both."""
    flat = x_sample.reshape(len(x_sample), -1).astype(np.float32) / 255.0
    components = min(PCA_DIMENSIONS, *flat.shape)
    pca = PCA(n_components=components, random_state=seed)
    reduced = pca.fit_transform(flat)
    ratio = pca.explained_variance_ratio_
    plots.plot_pca(reduced[:, :2], y_sample, class_names, ratio[:2], path)
    section = {
        "sample_size": len(flat),
        "explained_variance_ratio": [round(float(r), 4) for r in ratio[:2]],
        "components": components,
        "explained_variance_ratio_all_components": round(float(ratio.sum()), 4),
    }
    return section, reduced


def _kmeans_figure(
    reduced: np.ndarray, y_sample: np.ndarray, class_names: Sequence[str], seed: int, path: Path
) -> dict[str, Any]:
    """k-means, k = number of classes, on the 2-D projection (drawn) and on all components."""
    k = len(class_names)
    clusters, centres = _kmeans(reduced[:, :2], k, seed)
    table = _cluster_table(clusters, y_sample, class_names)
    ari = round(float(adjusted_rand_score(y_sample, clusters)), 4)
    plots.plot_kmeans(
        reduced[:, :2],
        clusters,
        centres,
        [f"mostly {row['majority']} ({row['purity']:.0%})" for row in table],
        ari,
        path,
    )
    all_clusters, _ = _kmeans(reduced, k, seed)
    return {
        "k": k,
        "ari": ari,
        "ari_all_components": round(float(adjusted_rand_score(y_sample, all_clusters)), 4),
        "clusters": table,
    }


def _tsne_figure(
    reduced: np.ndarray, y_sample: np.ndarray, class_names: Sequence[str], seed: int, path: Path
) -> dict[str, Any]:
    """t-SNE of the PCA-reduced images (drawn), and how well k-means clusters its map."""
    started = time.perf_counter()
    # scikit-learn requires a perplexity below the number of points; keep 3 per unit.
    perplexity = min(TSNE_PERPLEXITY, (len(reduced) - 1) / 3)
    embedded = TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced)
    seconds = time.perf_counter() - started
    plots.plot_tsne(embedded, y_sample, class_names, path)
    clusters, _ = _kmeans(embedded, len(class_names), seed)
    return {
        "sample_size": len(reduced),
        "perplexity": round(perplexity, 2),
        "pca_components": reduced.shape[1],
        "seconds": round(seconds, 1),
        "kmeans_ari": round(float(adjusted_rand_score(y_sample, clusters)), 4),
    }


def _features_figure(
    dataset: Dataset, sample_rows: Sequence[np.ndarray], path: Path
) -> dict[str, Any]:
    """Feature views of the first sample of each class that has one."""
    present = [label for label, row in enumerate(sample_rows) if len(row)]
    views = [
        feature_views(dataset.x_train[sample_rows[label][0]], scale=FEATURE_SCALE)
        for label in present
    ]
    names = [dataset.class_names[label] for label in present]
    plots.plot_feature_views(views, names, path)
    return {
        "scale": FEATURE_SCALE,
        "settings": feature_settings(),
        "input_size": list(views[0].image.shape[::-1]),
        "upscaled_size": list(views[0].upscaled.shape[::-1]),
        "per_class": {
            name: {
                "otsu_threshold": view.otsu_threshold,
                "edge_pixels": int(np.count_nonzero(view.edges)),
                "harris_corners": len(view.harris_corners),
                "orb_keypoints": len(view.orb_keypoints),
                "sift_keypoints": len(view.sift_keypoints),
            }
            for name, view in zip(names, views, strict=True)
        },
    }


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


def _sections(
    dataset: Dataset,
    image_root: Path | None,
    paths: dict[str, Path],
    sample_size: int,
    tsne_size: int,
    seed: int,
    steps: _Steps,
) -> dict[str, Any]:
    """Draw every figure into `paths` (one step each); return the summary's sections."""
    names = list(dataset.class_names)
    summary: dict[str, Any] = {}
    with steps.run("class_counts", "counting images per class"):
        summary["class_counts"] = _counts_figure(dataset, paths["class_counts"])
    with steps.run("samples", f"drawing {SAMPLES_PER_CLASS} samples per class"):
        sample_rows = _samples_figure(dataset, seed, paths["samples"])
    with steps.run("mean_images", "averaging the images of each class"):
        summary["mean_images"] = _means_figure(dataset, paths["mean_images"])
    with steps.run("image_sizes", "measuring image sizes"):
        summary["image_sizes"] = _sizes_figure(dataset, image_root, paths["image_sizes"])
    with steps.run("pixels", "pixel intensity statistics"):
        summary["pixels"] = _pixels_figure(dataset, paths["pixel_intensity"])

    sample = stratified_sample(dataset.y_train, sample_size, seed)
    y_sample = dataset.y_train[sample].astype(np.int64)
    with steps.run("pca", f"PCA of {len(sample):,} images"):
        summary["pca"], reduced = _pca_figure(
            dataset.x_train[sample], y_sample, names, seed, paths["pca"]
        )
    with steps.run("kmeans", f"k-means with k = {len(names)}"):
        summary["kmeans"] = _kmeans_figure(reduced, y_sample, names, seed, paths["kmeans"])
    if tsne_size:
        subset = stratified_sample(y_sample, tsne_size, seed)
        with steps.run("tsne", f"t-SNE of {len(subset):,} images"):
            summary["tsne"] = _tsne_figure(
                reduced[subset], y_sample[subset], names, seed, paths["tsne"]
            )
    with steps.run("features", "classic feature views"):
        summary["features"] = _features_figure(dataset, sample_rows, paths["feature_views"])
    return summary


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
    steps = _Steps(total=10 + (tsne_size > 0), progress=progress)
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
    # scikit-learn's OpenMP threads spin while they wait: on a busy 2-core machine t-SNE
    # took 60-100 s with 2 threads and 13 s with one, which costs a few seconds when idle.
    with threadpool_limits(limits=SCIKIT_LEARN_THREADS):
        summary |= _sections(dataset, image_root, paths, sample_size, tsne_size, seed, steps)

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

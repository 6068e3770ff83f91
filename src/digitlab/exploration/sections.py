"""The sections of the exploration report: each one's numbers, and its figure drawn.

`draw_sections` runs them in the report's order, one progress step each, and returns the
summary's sections; `explorer.explore` puts them in the report folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import adjusted_rand_score

from digitlab.data.sources import Dataset
from digitlab.exploration.analysis import (
    PixelStats,
    class_counts,
    cluster_table,
    kmeans_clusters,
    mean_image_similarity,
    mean_images,
    pixel_histogram,
    scan_image_sizes,
    size_summary,
    stratified_sample,
)
from digitlab.exploration.features import feature_settings, feature_views
from digitlab.plots import exploration as plots

Progress = Callable[[int, int, str], None]
"""Called with (steps done, steps in all, the step starting now); last with done == all."""

SAMPLES_PER_CLASS = 10
PCA_DIMENSIONS = 50
TSNE_PERPLEXITY = 30.0
FEATURE_SCALE = 4


class Steps:
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


def _counts_figure(dataset: Dataset, path: Path) -> dict[str, Any]:
    section = class_counts(dataset)
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
    means = mean_images(dataset)
    plots.plot_mean_images(means, dataset.class_names, path)
    return mean_image_similarity(means, dataset.class_names)


def _sizes_figure(dataset: Dataset, image_root: Path | None, path: Path) -> dict[str, Any]:
    """Size statistics; the histogram figure only for files whose sizes were scanned."""
    sizes = scan_image_sizes(image_root) if image_root else None
    section = size_summary(sizes, dataset)
    if sizes is not None and section["source"] == "files":
        plots.plot_image_sizes(sizes.widths, sizes.heights, sizes.format_modes, path)
    return section


def _pixels_figure(dataset: Dataset, path: Path) -> dict[str, Any]:
    histogram = pixel_histogram(dataset)
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
    clusters, centres = kmeans_clusters(reduced[:, :2], k, seed)
    table = cluster_table(clusters, y_sample, class_names)
    ari = round(float(adjusted_rand_score(y_sample, clusters)), 4)
    plots.plot_kmeans(
        reduced[:, :2],
        clusters,
        centres,
        [f"mostly {row['majority']} ({row['purity']:.0%})" for row in table],
        ari,
        path,
    )
    all_clusters, _ = kmeans_clusters(reduced, k, seed)
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
    clusters, _ = kmeans_clusters(embedded, len(class_names), seed)
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


def draw_sections(
    dataset: Dataset,
    image_root: Path | None,
    paths: dict[str, Path],
    sample_size: int,
    tsne_size: int,
    seed: int,
    steps: Steps,
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

"""The numbers behind the exploration report: counts, sizes, pixels, samples and clusters.

Plain functions of a `Dataset` (or a folder of image files) that return numbers; drawing
them is `sections`'s job, writing the report `explorer`'s.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from digitlab.data.sources import Dataset

PathLike = str | os.PathLike[str]


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


def class_counts(dataset: Dataset) -> dict[str, Any]:
    """Images per class and split, the largest and smallest class, and how far apart they are."""
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


def mean_images(dataset: Dataset) -> np.ndarray:
    """The pixel-wise mean training image of each class (zeros for a class with none)."""
    means = np.zeros((len(dataset.class_names), *dataset.x_train.shape[1:]), dtype=np.float32)
    for label in range(len(dataset.class_names)):
        members = dataset.x_train[dataset.y_train == label]
        if len(members):
            means[label] = members.mean(axis=0, dtype=np.float64)
    return means


def mean_image_similarity(means: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
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


def size_summary(sizes: ImageSizes | None, dataset: Dataset) -> dict[str, Any]:
    """The scanned files' sizes and formats, or the arrays' one size when nothing was scanned."""
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


def pixel_histogram(dataset: Dataset, chunk: int = 8192) -> np.ndarray:
    """The count of each pixel value 0..255 over both splits."""
    histogram = np.zeros(256, dtype=np.int64)
    for x in (dataset.x_train, dataset.x_test):
        # bincount widens its input to int64: in chunks, that copy stays small.
        for start in range(0, len(x), chunk):
            histogram += np.bincount(x[start : start + chunk].ravel(), minlength=256)
    return histogram


def cluster_table(
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


def kmeans_clusters(points: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each point's cluster and the `k` cluster centres (scikit-learn k-means, 10 starts)."""
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(points)
    return model.labels_, model.cluster_centers_

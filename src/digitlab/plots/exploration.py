"""The exploration report's figures: each takes plain data and a path, writes one PNG."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Circle
from matplotlib.ticker import MaxNLocator, StrMethodFormatter

from digitlab.plots.base import colormap, figure_to_png, subplots

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from digitlab.exploration.analysis import PixelStats
    from digitlab.exploration.features import FeatureViews

PathLike = str | os.PathLike[str]


def _palette(count: int) -> list[tuple[float, float, float, float]]:
    """Distinct colours for `count` classes (tab10 up to 10, then tab20, then cycling)."""
    cmap = colormap("tab10" if count <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(count)]


def _tick_rotation(names: Sequence[str]) -> tuple[int, str]:
    """Rotate tick labels only when some are words (Fashion-MNIST), not single digits."""
    return (30, "right") if max(len(name) for name in names) > 3 else (0, "center")


def plot_class_counts(
    counts: Mapping[str, Sequence[int]], class_names: Sequence[str], path: PathLike
) -> None:
    """Grouped bars: images per class (x) for each split (one colour each, e.g. train, test)."""
    num_classes = len(class_names)
    figure, ax = subplots(figsize=(max(6.5, 0.75 * num_classes + 2.5), 4.5))
    width = 0.8 / len(counts)
    for index, (split, values) in enumerate(counts.items()):
        offsets = np.arange(num_classes) + (index - (len(counts) - 1) / 2) * width
        bars = ax.bar(offsets, values, width, label=f"{split} ({sum(values):,} images)")
        ax.bar_label(bars, labels=[f"{v:,}" for v in values], fontsize=7, padding=2, rotation=90)
    rotation, align = _tick_rotation(class_names)
    ax.set_xticks(np.arange(num_classes), class_names, rotation=rotation, ha=align)
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.set_title("Images per class and split")
    ax.margins(y=0.18)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="split")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    figure_to_png(figure, path)


def plot_sample_grid(
    samples: Sequence[np.ndarray], class_names: Sequence[str], path: PathLike
) -> None:
    """One row per class of its sample images (`samples[c]` is k x H x W, k may differ)."""
    height, width = next(s.shape[1:] for s in samples if len(s))
    columns = max(len(s) for s in samples)
    gap = 2
    # One montage image draws far faster than a hundred separate axes, and a NaN gap
    # (drawn white) separates the tiles.
    montage = np.full((len(samples) * (height + gap) - gap, columns * (width + gap) - gap), np.nan)
    for row, images in enumerate(samples):
        for column, image in enumerate(images):
            top, left = row * (height + gap), column * (width + gap)
            montage[top : top + height, left : left + width] = image
    figure, ax = subplots(figsize=(0.5 * columns + 2.2, 0.5 * len(samples) + 1.0))
    cmap = colormap("gray").with_extremes(bad="white")
    shown = ax.imshow(montage, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
    ax.set_yticks(np.arange(len(samples)) * (height + gap) + height / 2 - 0.5, class_names)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"{columns} random samples per class")
    figure.colorbar(shown, ax=ax, label="pixel value", shrink=0.6, pad=0.02)
    figure_to_png(figure, path)


def plot_mean_images(means: np.ndarray, class_names: Sequence[str], path: PathLike) -> None:
    """The mean image of each class (`means` is C x H x W), one colour scale for all."""
    columns = min(len(class_names), 5)
    rows = math.ceil(len(class_names) / columns)
    figure, axes = subplots(
        rows,
        columns,
        figsize=(1.9 * columns + 1.2, 2.0 * rows + 0.6),
        squeeze=False,
        layout="constrained",
    )
    vmax = float(means.max()) or 1.0
    shown = [
        ax.imshow(mean, cmap="inferno", vmin=0, vmax=vmax, interpolation="nearest")
        for ax, mean in zip(axes.flat, means, strict=False)
    ]
    for ax, name in zip(axes.flat, class_names, strict=False):
        ax.set_title(name, fontsize=10)
    for ax in axes.flat:
        ax.set_axis_off()
    figure.suptitle("Mean image per class")
    figure.colorbar(shown[0], ax=axes, label="mean pixel value", shrink=0.85)
    figure_to_png(figure, path)


def plot_image_sizes(
    widths: np.ndarray,
    heights: np.ndarray,
    format_modes: Mapping[str, int],
    path: PathLike,
) -> None:
    """Histograms of image widths and heights, and a bar per file format and colour mode."""
    figure, (size_ax, format_ax) = subplots(
        1, 2, figsize=(11.5, 4.2), width_ratios=(3, 2), layout="constrained"
    )
    sizes = np.concatenate([widths, heights])
    bins = np.histogram_bin_edges(sizes, bins=min(30, max(1, len(np.unique(sizes)))))
    size_ax.hist([widths, heights], bins=bins, label=["width", "height"], color=["C0", "C1"])
    size_ax.set_xlabel("pixels")
    size_ax.set_ylabel("images")
    size_ax.set_title(
        f"Sizes of {len(widths):,} images: width {widths.min()}-{widths.max()}, "
        f"height {heights.min()}-{heights.max()}"
    )
    size_ax.legend()
    size_ax.grid(axis="y", alpha=0.3)
    names = list(format_modes)
    bars = format_ax.barh(names, [format_modes[n] for n in names], color="C2")
    format_ax.bar_label(bars, padding=2, fontsize=8)
    format_ax.invert_yaxis()
    format_ax.set_xlabel("images")
    format_ax.set_title("File format and colour mode")
    format_ax.margins(x=0.15)
    figure_to_png(figure, path)


def plot_pixel_histograms(
    histogram: np.ndarray,
    background: int,
    all_stats: PixelStats,
    ink_stats: PixelStats,
    path: PathLike,
) -> None:
    """Two log-scale histograms of pixel values: every pixel, and ink pixels only.

    `histogram` holds the count of each value 0..255; ink pixels are those that differ
    from the `background` value.
    """
    figure, axes = subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    ink_histogram = histogram.copy()
    ink_histogram[background] = 0
    panels = (
        (axes[0], histogram, all_stats, "All pixels"),
        (axes[1], ink_histogram, ink_stats, f"Ink pixels (value ≠ background {background})"),
    )
    for ax, counts, stats, title in panels:
        ax.stairs(counts, np.arange(len(counts) + 1) - 0.5, fill=True, color="C0")
        ax.set_yscale("log")
        ax.axvline(stats.mean, color="C3", linestyle="--", label=f"mean {stats.mean:.1f}")
        ax.axvline(stats.median, color="C2", linestyle=":", label=f"median {stats.median:.0f}")
        ax.set_xlim(-1, len(histogram))
        ax.set_xlabel("pixel value")
        ax.set_ylabel("pixels (log scale)")
        ax.set_title(f"{title}: {stats.count:,} pixels, std {stats.std:.1f}")
        ax.legend(loc="upper center")
    share = histogram[background] / max(1, histogram.sum())
    axes[0].annotate(
        f"background {background}: {share:.1%} of pixels",
        (background, histogram[background]),
        xytext=(0.3, 0.6),
        textcoords="axes fraction",
        ha="left",
        fontsize=9,
        arrowprops={"arrowstyle": "->", "color": "0.3"},
    )
    figure_to_png(figure, path)


def _marker_size(count: int) -> float:
    """Scatter marker area: small for thousands of points, larger for a few dozen."""
    return float(np.clip(20000 / max(count, 1), 4, 30))


def _scatter_by_label(
    ax: Axes, points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], seed: int = 0
) -> None:
    """Scatter `points` coloured by label, in random order so no class hides the others."""
    colours = np.array(_palette(len(class_names)))
    order = np.random.default_rng(seed).permutation(len(points))
    ax.scatter(
        points[order, 0],
        points[order, 1],
        c=colours[labels[order]],
        s=_marker_size(len(points)),
        alpha=0.6,
        linewidths=0,
    )
    handles = [
        Line2D([], [], marker="o", linestyle="", color=colours[i], label=name)
        for i, name in enumerate(class_names)
    ]
    ax.legend(handles=handles, title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def plot_pca(
    points: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    explained_variance_ratio: Sequence[float],
    path: PathLike,
) -> None:
    """The 2-D PCA projection (`points` N x 2) coloured by label, axes labelled with variance."""
    first, second = explained_variance_ratio[:2]
    figure, ax = subplots(figsize=(8, 6.2), layout="constrained")
    _scatter_by_label(ax, points, labels, class_names)
    ax.set_xlabel(f"principal component 1 ({first:.1%} of variance)")
    ax.set_ylabel(f"principal component 2 ({second:.1%} of variance)")
    ax.set_title(
        f"PCA of {len(points):,} images: 2 components explain {first + second:.1%} of the variance"
    )
    figure_to_png(figure, path)


def plot_tsne(
    points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: PathLike
) -> None:
    """The 2-D t-SNE embedding (`points` N x 2) coloured by label."""
    figure, ax = subplots(figsize=(8, 6.2), layout="constrained")
    _scatter_by_label(ax, points, labels, class_names)
    ax.set_xlabel("t-SNE dimension 1")
    ax.set_ylabel("t-SNE dimension 2")
    ax.set_title(f"t-SNE of {len(points):,} images (after PCA to 50 dimensions)")
    figure_to_png(figure, path)


def plot_kmeans(
    points: np.ndarray,
    clusters: np.ndarray,
    centres: np.ndarray,
    cluster_names: Sequence[str],
    ari: float,
    path: PathLike,
    axis_names: tuple[str, str] = ("principal component 1", "principal component 2"),
) -> None:
    """k-means clusters of 2-D `points`: each cluster's region, points and named centre.

    `clusters` is each point's cluster index, `centres` the k x 2 cluster centres and
    `cluster_names[i]` the text written at centre i (e.g. its majority class).
    """
    num_clusters = len(centres)
    pairs = colormap("tab20")
    # tab20 pairs a strong and a light shade of each hue: points strong, regions light.
    strong = np.array([pairs((2 * i) % 20) for i in range(num_clusters)])
    light = ListedColormap([pairs((2 * i + 1) % 20) for i in range(num_clusters)])
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.04 * (high - low)
    grid_x, grid_y = np.meshgrid(
        np.linspace(low[0] - pad[0], high[0] + pad[0], 400),
        np.linspace(low[1] - pad[1], high[1] + pad[1], 400),
    )
    grid = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    # A k-means region is the set of points nearest to its centre.
    nearest = np.argmin(((grid[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2), axis=1)
    figure, ax = subplots(figsize=(8, 6.2), layout="constrained")
    ax.imshow(
        nearest.reshape(grid_x.shape),
        cmap=light,
        vmin=-0.5,
        vmax=num_clusters - 0.5,
        origin="lower",
        aspect="auto",
        interpolation="nearest",
        alpha=0.6,
        extent=(grid_x.min(), grid_x.max(), grid_y.min(), grid_y.max()),
    )
    ax.scatter(
        points[:, 0],
        points[:, 1],
        c=strong[clusters],
        s=_marker_size(len(points)),
        alpha=0.6,
        linewidths=0,
    )
    ax.scatter(centres[:, 0], centres[:, 1], marker="X", s=90, c="black", edgecolors="white")
    for (x, y), name in zip(centres, cluster_names, strict=True):
        ax.annotate(
            name,
            (x, y),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.85},
        )
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(
        f"k-means, k = {num_clusters}, on {len(points):,} projected images: "
        f"adjusted Rand index {ari:.3f}"
    )
    figure_to_png(figure, path)


def _draw_keypoint_circles(ax: Axes, keypoints: np.ndarray, colour: str) -> None:
    """Circles at (x, y) with each keypoint's diameter, in image pixels."""
    circles = [Circle((x, y), max(size / 2, 1.5)) for x, y, size in keypoints]
    ax.add_collection(PatchCollection(circles, facecolor="none", edgecolor=colour, linewidth=0.8))


def plot_feature_views(
    views: Sequence[FeatureViews], class_names: Sequence[str], path: PathLike
) -> None:
    """One row per class (one sample each): input, blur, threshold, edges, corners, keypoints."""
    columns = (
        "upscaled input",
        "Gaussian blur",
        "Otsu threshold",
        "Canny edges",
        "Harris corners",
        "ORB keypoints",
        "SIFT keypoints",
    )
    figure, axes = subplots(
        len(views),
        len(columns),
        figsize=(1.45 * len(columns), 1.5 * len(views) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for row, (view, name) in enumerate(zip(views, class_names, strict=True)):
        row_axes = axes[row]
        images = (
            view.upscaled,
            view.blurred,
            view.binary,
            view.edges,
            view.upscaled,
            view.upscaled,
            view.upscaled,
        )
        for ax, image in zip(row_axes, images, strict=True):
            ax.imshow(image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        corners = view.harris_corners
        row_axes[4].scatter(corners[:, 0], corners[:, 1], s=10, c="red", linewidths=0)
        orb = view.orb_keypoints
        # ORB's keypoint sizes are its fixed patch times the pyramid scale: as circles they
        # cover the digit, so dots show where it found corners.
        row_axes[5].scatter(orb[:, 0], orb[:, 1], s=8, c="lime", linewidths=0)
        _draw_keypoint_circles(row_axes[6], view.sift_keypoints, "cyan")
        notes = {
            2: f"t = {view.otsu_threshold:.0f}",
            4: f"{len(corners)} corners",
            5: f"{len(view.orb_keypoints)} points",
            6: f"{len(view.sift_keypoints)} points",
        }
        for column, note in notes.items():
            row_axes[column].set_xlabel(note, fontsize=7, labelpad=1)
        row_axes[0].set_ylabel(name, fontsize=10)
    for ax, title in zip(axes[0], columns, strict=True):
        ax.set_title(title, fontsize=8)
    size = views[0].upscaled.shape
    figure.suptitle(
        f"Classic feature views of one sample per class (upscaled to {size[1]}x{size[0]})"
    )
    figure_to_png(figure, path)

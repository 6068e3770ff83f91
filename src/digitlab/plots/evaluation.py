"""Evaluation figures: the confusion matrix, the most confidently wrong images, the
reliability diagram, run curves."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.colors import PowerNorm

from digitlab.plots.base import figure_to_png, subplots

# Beyond this many characters a misclassified image's title is split over two lines.
_ONE_LINE_TITLE = 26


@dataclass(frozen=True)
class CurveSeries:
    """One run's validation curves, for `plot_validation_curves`."""

    label: str
    epochs: Sequence[int]
    val_accuracy: Sequence[float]
    val_loss: Sequence[float]


def plot_confusion_matrix(
    confusion: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    title: str = "Confusion matrix",
) -> None:
    """Draw `confusion` (rows: true class, columns: predicted) as an annotated heatmap.

    Each cell shows its count; its colour is the fraction of its true class (row), on a
    power scale so that error cells of a few tenths of a percent still stand out from zero.
    """
    confusion = np.asarray(confusion)
    num_classes = len(class_names)
    row_totals = confusion.sum(axis=1, keepdims=True)
    fractions = np.divide(
        confusion, row_totals, out=np.zeros(confusion.shape, dtype=float), where=row_totals > 0
    )
    size = max(6.0, 0.65 * num_classes + 2.0)
    figure, axes = subplots(figsize=(size + 1.2, size))
    norm = PowerNorm(gamma=0.35, vmin=0.0, vmax=1.0)
    image = axes.imshow(fractions, cmap="Blues", norm=norm)
    colorbar = figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label("fraction of the true class")
    for row in range(num_classes):
        for column in range(num_classes):
            count = int(confusion[row, column])
            if count == 0:
                continue
            dark_cell = norm(fractions[row, column]) > 0.6
            axes.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=9,
                color="white" if dark_cell else "black",
                fontweight="bold" if row == column else "normal",
            )
    ticks = np.arange(num_classes)
    axes.set_xticks(
        ticks,
        labels=class_names,
        rotation=45 if _long(class_names) else 0,
        ha="right" if _long(class_names) else "center",
    )
    axes.set_yticks(ticks, labels=class_names)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    figure_to_png(figure, path)


def plot_misclassified(
    images: np.ndarray,
    true_names: Sequence[str],
    predicted_names: Sequence[str],
    confidences: Sequence[float],
    path: str | os.PathLike[str],
    columns: int = 5,
) -> None:
    """Draw a grid of misclassified images titled "true 4 → pred 9 (0.97)".

    The inputs are parallel sequences in the order to show (most confident first).
    With no images, the figure says so instead of being blank.
    """
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    # No ticks and a fixed layout: tick and layout-engine bookkeeping for 25 axes
    # would take most of the drawing time.
    height = 2.2 * rows + 0.6
    figure, axes_grid = subplots(
        rows,
        columns,
        figsize=(2.2 * columns, height),
        squeeze=False,
        subplot_kw={"xticks": [], "yticks": [], "frame_on": False},
        gridspec_kw={"hspace": 0.3, "wspace": 0.1, "top": 1 - 0.9 / height, "bottom": 0.02},
    )
    if count == 0:
        axes_grid[0, 0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    # The last row may have more cells than images left; zip stops at the images.
    for axes, image, true_name, predicted_name, confidence in zip(
        axes_grid.flat, images, true_names, predicted_names, confidences, strict=False
    ):
        # Dark ink on white paper reads more easily than MNIST's native white on black.
        axes.imshow(np.asarray(image).squeeze(), cmap="gray_r")
        title = f"true {true_name} → pred {predicted_name} ({confidence:.2f})"
        if len(title) > _ONE_LINE_TITLE:
            title = f"true {true_name}\n→ pred {predicted_name} ({confidence:.2f})"
        axes.set_title(title, fontsize=9)
    figure.suptitle("Most confidently wrong predictions", fontsize=12)
    figure_to_png(figure, path)


@dataclass(frozen=True)
class ReliabilityPanel:
    """One model's calibration, for `plot_reliability_diagram`: per confidence bin (edges
    of length bins + 1) the mean top-1 confidence, the share right and the image count."""

    title: str
    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def plot_reliability_diagram(
    panels: Sequence[ReliabilityPanel], path: str | os.PathLike[str]
) -> None:
    """Draw accuracy against confidence per bin, one column per panel (before and after
    calibration), with each bin's image count below on a log scale.

    A calibrated model's bars reach the diagonal; a bar below it is over-confidence. The
    mean confidence of each bin is marked, since it rarely sits at the bin's centre.
    """
    figure, axes_grid = subplots(
        2,
        len(panels),
        figsize=(5.0 * len(panels), 6.0),
        squeeze=False,
        sharex=True,
        gridspec_kw={"height_ratios": [3, 1]},
        layout="constrained",
    )
    for column, panel in enumerate(panels):
        accuracy_axes, count_axes = axes_grid[0, column], axes_grid[1, column]
        filled = panel.count > 0
        _bin_bars(accuracy_axes, panel, panel.accuracy, color="tab:blue", label="accuracy")
        accuracy_axes.plot(
            panel.confidence[filled],
            panel.accuracy[filled],
            "o",
            color="tab:red",
            markersize=4,
            label="accuracy at the mean confidence",
        )
        accuracy_axes.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
        accuracy_axes.set_xlim(0, 1)
        accuracy_axes.set_ylim(0, 1)
        accuracy_axes.set_ylabel("accuracy")
        accuracy_axes.set_title(panel.title, fontsize=10)
        accuracy_axes.legend(fontsize=8, loc="upper left")
        _bin_bars(count_axes, panel, panel.count, color="tab:gray")
        count_axes.set_yscale("log")
        count_axes.set_xlabel("top-1 confidence")
        count_axes.set_ylabel("images")
    figure_to_png(figure, path)


def _bin_bars(
    axes: Any, panel: ReliabilityPanel, heights: np.ndarray, color: str, label: str | None = None
) -> None:
    """One bar per non-empty bin of `panel`, spanning the bin, `heights` tall."""
    filled = panel.count > 0
    axes.bar(
        panel.edges[:-1][filled],
        heights[filled],
        width=np.diff(panel.edges)[filled],
        align="edge",
        edgecolor="black",
        color=color,
        label=label,
    )


def plot_validation_curves(series: Sequence[CurveSeries], path: str | os.PathLike[str]) -> None:
    """Overlay several runs' validation accuracy (left) and loss (right) against epoch."""
    figure, (accuracy_axes, loss_axes) = subplots(1, 2, figsize=(12, 4.5), layout="constrained")
    for run in series:
        marker = "o" if len(run.epochs) <= 15 else None
        accuracy_axes.plot(run.epochs, run.val_accuracy, marker=marker, label=run.label)
        loss_axes.plot(run.epochs, run.val_loss, marker=marker, label=run.label)
    for axes, name in ((accuracy_axes, "validation accuracy"), (loss_axes, "validation loss")):
        axes.set_xlabel("epoch")
        axes.set_ylabel(name)
        axes.set_title(name.capitalize())
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    accuracy_axes.legend(fontsize=9)
    figure_to_png(figure, path)


def _long(class_names: Sequence[str]) -> bool:
    return max((len(name) for name in class_names), default=0) > 2

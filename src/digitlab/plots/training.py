"""Figures of a training run: the loss and accuracy curves, and augmented samples."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from digitlab.plots.base import figure_to_png, subplots


def plot_training_curves(
    history: Sequence[Mapping[str, float]], path: str | os.PathLike[str], title: str = ""
) -> None:
    """Two panels, loss and accuracy per epoch, training against validation.

    `history` holds one mapping per epoch with the keys `epoch`, `loss`, `accuracy`,
    `val_loss` and `val_accuracy` (the rows of a run's history.csv).
    """
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = subplots(1, 2, figsize=(10, 4))
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.plot(epochs, [row[metric] for row in history], marker="o", label="training")
        axis.plot(epochs, [row[f"val_{metric}"] for row in history], marker="o", label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    loss_axis.set_title("Loss")
    accuracy_axis.set_title("Accuracy")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure_to_png(figure, path)


def plot_augmentation_grid(
    originals: np.ndarray, augmented: np.ndarray, path: str | os.PathLike[str]
) -> None:
    """A grid: each row one original image (first column) and its augmented versions.

    `originals` is (R, H, W) and `augmented` is (R, C, H, W), both with values 0..255.
    """
    rows, copies = augmented.shape[0], augmented.shape[1]
    figure, axes = subplots(
        rows, copies + 1, figsize=(1.2 * (copies + 1), 1.2 * rows), squeeze=False
    )
    for row in range(rows):
        images = [originals[row], *augmented[row]]
        for column, image in enumerate(images):
            axis = axes[row, column]
            axis.imshow(np.clip(image, 0, 255), cmap="gray_r", vmin=0, vmax=255)
            axis.set_xticks([])
            axis.set_yticks([])
    axes[0, 0].set_title("original", fontsize=9)
    for column in range(1, copies + 1):
        axes[0, column].set_title(f"augmented {column}", fontsize=9)
    figure.tight_layout()
    figure_to_png(figure, path)

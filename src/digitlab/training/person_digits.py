"""A person's own digits for fine-tuning: read from a class-folder tree, split for a fair score.

The tree is `DATA_DIR/<label>/<image>` with labels 0-9 (`data.folders` lists it, hidden
files skipped, unlistable folders reported). Each image, of any size or look, is made
MNIST-style by `to_mnist`, the same path `predict` and the server take, so the model learns
the digits exactly as it will later be shown them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.data.folders import class_names_of, labelled_files
from digitlab.errors import DataError, ImageError

DIGIT_LABELS = tuple(str(digit) for digit in range(10))
"""The class folder names a person's digit tree may hold."""
DIGIT_COLUMNS = len(DIGIT_LABELS)
"""Columns 0..9 of a model's output are the digit probabilities; any after them are not."""


@dataclass(frozen=True)
class PersonDigits:
    """A person's digits split in two: `x_train`/`y_train` to learn from, `x_held`/`y_held`
    kept back to score on (uint8 N x 28 x 28 images, uint8 labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_held: np.ndarray
    y_held: np.ndarray


def read_person_digits(data: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every image of the class-folder tree `data` through `to_mnist`: `(x, y)`, in path order.

    Raises `DataError` naming the folder when it is missing, has no class folders, holds a
    class folder other than 0-9 or no image at all, and the image's own `ImageError`
    (naming the file) when one cannot be read or holds no digit.
    """
    from digitlab.images import to_mnist

    root = Path(data)
    names = class_names_of(root)
    unknown = [name for name in names if name not in DIGIT_LABELS]
    if unknown:
        raise DataError(
            f"{root / unknown[0]}: not a digit label; a person's digits go in folders 0-9"
        )
    files = labelled_files(root, DIGIT_LABELS)
    if not files:
        raise DataError(f"{root}: no images in its digit folders 0-9")
    images = []
    for path, _ in files:
        try:
            images.append(to_mnist(path))
        except ImageError as problem:
            hint = f"`digitlab data scan {root} --quarantine DIR` moves unreadable files aside"
            raise type(problem)(f"{problem}; {hint}") from None
    labels = np.array([label for _, label in files], dtype=np.uint8)
    return np.stack(images), labels


def split_person_digits(
    x: np.ndarray, y: np.ndarray, held_out_fraction: float, seed: int
) -> PersonDigits:
    """Keep back `held_out_fraction` of each label's images (rounded), seeded, for scoring.

    A label always keeps at least one image to learn from, so a label with one image is
    only learned from. scikit-learn's stratified split is not used: it refuses labels with
    fewer than two images, which a person teaching a few digits will have.
    """
    if not 0.0 <= held_out_fraction < 1.0:
        raise DataError(f"held_out_fraction={held_out_fraction}: must be at least 0 and below 1")
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(y):
        positions = rng.permutation(np.flatnonzero(y == label))
        count = min(round(len(positions) * held_out_fraction), len(positions) - 1)
        held.append(positions[:count])
    held_positions = np.sort(np.concatenate(held)).astype(int)
    is_held = np.zeros(len(y), dtype=bool)
    is_held[held_positions] = True
    return PersonDigits(x[~is_held], y[~is_held], x[is_held], y[is_held])

"""Continental 1s: MNIST 1s with the flag that much of the world starts a 1 with.

MNIST's writers drew a 1 as a bare stroke. In much of Europe and Latin America a 1 begins
with a flag, a short stroke up to the top of the stem from the lower left, and a classifier
that learnt only MNIST reads such a 1 as a 7 (docs/reading.md, "Writing no network here was
trained on"). `add_flag` draws that flag on an MNIST 1, in the 1's own stroke width, and
normalises the result exactly as `to_mnist` normalises a digit.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from digitlab.errors import DataError
from digitlab.images.mnist_style import normalize_digit

FLAG_ANGLES = (35.0, 60.0)
"""The flag's slope, in degrees below the horizontal, drawn uniformly from this range: 0 would
be a 7's bar, 90 the stem itself."""

FLAG_LENGTHS = (0.20, 0.45)
"""The flag's length as a share of the 1's height, drawn uniformly from this range."""

_SCALE = 4
"""The 1 is drawn on at four times its size, so the flag's edges are smooth once shrunk."""

_INK = 100
"""Pixels above this (of 255) count as the 1's stroke when finding its top and width."""


def add_flag(
    one: np.ndarray,
    rng: np.random.Generator,
    angles: tuple[float, float] = FLAG_ANGLES,
    lengths: tuple[float, float] = FLAG_LENGTHS,
) -> np.ndarray:
    """A 28 x 28 uint8 1 (white on black, MNIST-style) with a flag drawn from the top of
    its stroke down to the left, `angles` degrees below the horizontal and `lengths` of its
    height long, as wide as its stroke; returned normalised as `to_mnist` normalises.
    Raises `DataError` for an image with no stroke in it."""
    big = Image.fromarray(np.asarray(one, np.uint8)).resize(
        (one.shape[1] * _SCALE, one.shape[0] * _SCALE), Image.Resampling.BILINEAR
    )
    pixels = np.asarray(big)
    rows = np.flatnonzero(pixels.max(axis=1) > _INK)
    if len(rows) < 2:
        raise DataError("cannot draw a flag on an image with no stroke in it")
    top, height = int(rows[0]), int(rows[-1] - rows[0])
    top_columns = np.flatnonzero(pixels[top : top + 2 * _SCALE].max(axis=0) > _INK)
    x0, y0 = float(top_columns.mean()), top + _SCALE / 2
    angle = np.radians(rng.uniform(*angles))
    length = height * rng.uniform(*lengths)
    x1, y1 = x0 - length * np.cos(angle), y0 + length * np.sin(angle)
    stroke = int((pixels > _INK).sum() / len(rows))
    ImageDraw.Draw(big).line([(x1, y1), (x0, y0)], fill=255, width=max(_SCALE, stroke))
    return normalize_digit(np.asarray(big, np.float32) / 255.0)


def flagged_ones(
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    angles: tuple[float, float] = FLAG_ANGLES,
) -> np.ndarray:
    """Every 1 among `images` (N x 28 x 28 uint8, classes `labels`) with a flag drawn on
    (`add_flag`), each with its own draw from `seed`: (ones x 28 x 28 uint8)."""
    rng = np.random.default_rng(seed)
    ones = np.asarray(images)[np.asarray(labels) == 1]
    if len(ones) == 0:
        return np.zeros((0, *np.shape(images)[1:]), np.uint8)
    return np.stack([add_flag(one, rng, angles) for one in ones])

"""What the part scorer sees of a candidate digit: the part and the ink around it.

A candidate cut out of a blob can look like a whole digit on its own (half of a 0 is a
fine 1 once normalised); what gives it away is its neighbourhood: a stroke that runs on
across the cut. So the view is a window around the part, two digit heights wide and one
and a half tall, scaled so that a digit is `VIEW_HEIGHT` * 2 / 3 pixels tall, in two
channels: the part's ink, and all the other ink in the window.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from digitlab.reading.segment import Piece

VIEW_ROWS = 24
VIEW_COLUMNS = 32
WINDOW_HEIGHT = 1.5
"""The window's height, in typical digit heights; its width is 2 (VIEW_COLUMNS / VIEW_ROWS
times as much), so its pixels are square."""


def part_views(ink: np.ndarray, blob: Piece, parts: list[Piece], height: float) -> np.ndarray:
    """The views of `parts` of `blob` (N x VIEW_ROWS x VIEW_COLUMNS x 2, float32 0..1):
    channel 0 the part's ink, channel 1 the rest of the ink, in a window centred on the
    part's columns and the blob's rows, `WINDOW_HEIGHT` typical digit heights tall."""
    window_rows = max(1, round(WINDOW_HEIGHT * height))
    window_columns = max(1, round(window_rows * VIEW_COLUMNS / VIEW_ROWS))
    pad = max(window_rows, window_columns)
    padded = np.pad(ink.astype(np.float32), pad)
    top = round((blob.top + blob.bottom) / 2 - window_rows / 2) + pad
    views = np.empty((len(parts), VIEW_ROWS, VIEW_COLUMNS, 2), np.float32)
    for number, part in enumerate(parts):
        left = round(part.centre_x - window_columns / 2) + pad
        window = padded[top : top + window_rows, left : left + window_columns]
        mine = _paste(part.ink(ink), part.top + pad - top, part.left + pad - left, window.shape)
        views[number, :, :, 0] = _shrink(mine)
        views[number, :, :, 1] = _shrink(window - mine)
    return views


def _paste(pixels: np.ndarray, top: int, left: int, shape: tuple[int, ...]) -> np.ndarray:
    """A zero array of `shape` with `pixels` put at (`top`, `left`), clipped to it."""
    canvas = np.zeros(shape, np.float32)
    rows = _clipped(top, pixels.shape[0], shape[0])
    columns = _clipped(left, pixels.shape[1], shape[1])
    canvas[rows, columns] = pixels[
        rows.start - top : rows.stop - top, columns.start - left : columns.stop - left
    ]
    return canvas


def _clipped(start: int, length: int, limit: int) -> slice:
    """The indices of `length` items from `start` that fall in 0..`limit` (maybe none)."""
    first = min(max(0, start), limit)
    return slice(first, max(first, min(limit, start + length)))


def _shrink(window: np.ndarray) -> np.ndarray:
    """`window` box-filtered to VIEW_ROWS x VIEW_COLUMNS."""
    image = Image.fromarray(window, mode="F")
    return np.asarray(image.resize((VIEW_COLUMNS, VIEW_ROWS), Image.Resampling.BOX))

"""What the part scorer sees of a candidate digit: the part and the ink around it.

A candidate cut out of a blob can look like a whole digit on its own (half of a 0 is a
fine 1 once normalised); what gives it away is its neighbourhood: a stroke that runs on
across the cut. So the view is a window around the part, two digit heights wide and one
and a half tall, box-filtered to VIEW_ROWS x VIEW_COLUMNS, in two channels: the part's ink,
and all the other ink in the window.
"""

from __future__ import annotations

import functools

import numpy as np

from digitlab.reading.segment import Piece

VIEW_ROWS = 24
VIEW_COLUMNS = 32
WINDOW_HEIGHT = 1.5
"""The window's height, in typical digit heights; its width is 2 (VIEW_COLUMNS / VIEW_ROWS
times as much), so its pixels are square."""


def part_views(ink: np.ndarray, blob: Piece, parts: list[Piece], height: float) -> np.ndarray:
    """The views of `parts` of `blob` (N x VIEW_ROWS x VIEW_COLUMNS x 2, float32 0..1):
    channel 0 the part's ink, channel 1 the rest of the ink, in a window centred on the
    part's columns and the blob's rows, `WINDOW_HEIGHT` typical digit heights tall.

    The window is box-filtered as Pillow's BOX resize of a float image filters it (across
    the columns, rounded to float32, then down the rows), which made the views the shipped
    part scorer was trained on; here from running sums of the blob's rows, shared by its
    parts, rather than a resize of each part's window."""
    window_rows = max(1, round(WINDOW_HEIGHT * height))
    window_columns = max(1, round(window_rows * VIEW_COLUMNS / VIEW_ROWS))
    top = round((blob.top + blob.bottom) / 2 - window_rows / 2)
    lefts = [round(part.centre_x - window_columns / 2) for part in parts]
    origin = min(lefts, default=0)
    band = _cut_out(ink, top, origin, window_rows, max(lefts, default=0) + window_columns - origin)
    band_sums = _running_sums(band)
    starts, counts = _box_ranges(window_columns, VIEW_COLUMNS)
    across = np.empty((len(parts), 2, window_rows, VIEW_COLUMNS), np.float32)
    for number, (part, left) in enumerate(zip(parts, lefts, strict=True)):
        first, last = left - origin + starts, left - origin + starts + counts
        everything = (band_sums[:, last] - band_sums[:, first]) / counts
        across[number, 0] = _part_across(part, ink, top, left, window_rows, starts, counts)
        across[number, 1] = everything.astype(np.float32) - across[number, 0]
    return np.moveaxis(_shrink_down(across), 1, -1)


def _cut_out(ink: np.ndarray, top: int, left: int, rows: int, columns: int) -> np.ndarray:
    """The rows x columns of `ink` from (`top`, `left`) as float32, blank paper beyond
    its edges."""
    window = np.zeros((rows, columns), np.float32)
    inside_rows = _clipped(top, rows, ink.shape[0])
    inside_columns = _clipped(left, columns, ink.shape[1])
    window[
        inside_rows.start - top : inside_rows.stop - top,
        inside_columns.start - left : inside_columns.stop - left,
    ] = ink[inside_rows, inside_columns]
    return window


def _part_across(
    part: Piece,
    ink: np.ndarray,
    top: int,
    left: int,
    window_rows: int,
    starts: np.ndarray,
    counts: np.ndarray,
) -> np.ndarray:
    """The part's ink in its window (which starts at `top`, `left`), box-filtered across
    the columns only: window_rows x VIEW_COLUMNS."""
    sums = _running_sums(part.ink(ink))
    offset = part.left - left
    first = np.clip(starts - offset, 0, part.width)
    last = np.clip(starts + counts - offset, 0, part.width)
    shrunk = ((sums[:, last] - sums[:, first]) / counts).astype(np.float32)
    across = np.zeros((window_rows, VIEW_COLUMNS), np.float32)
    rows = _clipped(part.top - top, part.height, window_rows)
    across[rows] = shrunk[rows.start - (part.top - top) : rows.stop - (part.top - top)]
    return across


def _running_sums(pixels: np.ndarray) -> np.ndarray:
    """Each row's running sum from its left edge (float64), a zero column first."""
    sums = np.zeros((pixels.shape[0], pixels.shape[1] + 1), np.float64)
    np.cumsum(pixels, axis=1, dtype=np.float64, out=sums[:, 1:])
    return sums


def _clipped(start: int, length: int, limit: int) -> slice:
    """The indices of `length` items from `start` that fall in 0..`limit` (maybe none)."""
    first = min(max(0, start), limit)
    return slice(first, max(first, min(limit, start + length)))


def _shrink_down(across: np.ndarray) -> np.ndarray:
    """(..., rows, VIEW_COLUMNS) box-filtered down the rows to VIEW_ROWS, rounded to
    float32: Pillow's second pass."""
    starts, counts = _box_ranges(across.shape[-2], VIEW_ROWS)
    sums = np.cumsum(across, axis=-2, dtype=np.float64)
    sums = np.concatenate([np.zeros_like(sums[..., :1, :]), sums], axis=-2)
    down: np.ndarray = (sums[..., starts + counts, :] - sums[..., starts, :]) / counts[
        :, np.newaxis
    ]
    return down.astype(np.float32)


@functools.cache
def _box_ranges(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `out` box-filtered pixels starts among `size`, and how many it
    averages: Pillow's BOX filter takes the pixels whose centres fall in an output pixel's
    footprint, computed as Pillow computes it (its rounding decides the ties)."""
    scale = size / out
    support = 0.5 * max(scale, 1.0)
    inverse = 1.0 / max(scale, 1.0)
    starts, counts = [], []
    for pixel in range(out):
        centre = (pixel + 0.5) * scale
        first = max(int(centre - support + 0.5), 0)
        last = min(int(centre + support + 0.5), size)
        inside = [
            index for index in range(first, last) if -0.5 < (index - centre + 0.5) * inverse <= 0.5
        ]
        starts.append(inside[0])
        counts.append(len(inside))
    return np.array(starts), np.array(counts)

"""What the part scorer sees of a candidate digit: the part and the ink around it.

A candidate cut out of a blob can look like a whole digit on its own (half of a 0 is a
fine 1 once normalised); what gives it away is its neighbourhood: a stroke that runs on
across the cut. So the view is a window around the part, two digit heights wide and one
and a half tall, box-filtered to VIEW_ROWS x VIEW_COLUMNS, in two channels: the part's ink,
and all the other ink in the window.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

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
    part's columns and the blob's rows, `WINDOW_HEIGHT` typical digit heights tall. Each
    part is the blob's pixels between two columns in every row (as `segment.between` cuts
    them; the blob itself is one).

    The window is box-filtered as Pillow's BOX resize of a float image filters it (across
    the columns, rounded to float32, then down the rows), which made the views the shipped
    part scorer was trained on; here from running sums of the rows of the ink and of the
    blob's ink, shared by all parts, rather than a resize of each part's window. The
    filtered rows are kept first (rows x N x VIEW_COLUMNS x 2), so that the filter down the
    rows adds whole rows of every part and both channels at once; a part's own ink is
    summed only in the blob's rows."""
    window_rows = max(1, round(WINDOW_HEIGHT * height))
    window_columns = max(1, round(window_rows * VIEW_COLUMNS / VIEW_ROWS))
    top = round((blob.top + blob.bottom) / 2 - window_rows / 2)
    lefts = np.array([round(part.centre_x - window_columns / 2) for part in parts], np.int64)
    origin = int(lefts.min(initial=blob.left))
    columns = max(int(lefts.max(initial=blob.left)) + window_columns, blob.right) - origin
    starts, counts = _box_ranges(window_columns, VIEW_COLUMNS)
    first = (lefts - origin)[:, np.newaxis] + starts
    last = first + counts
    everything = _running_sums(_cut_out(ink, top, origin, window_rows, columns))
    across = np.zeros((window_rows, len(parts), VIEW_COLUMNS, 2), np.float32)
    across[..., 1] = (
        np.take(everything, last, axis=1) - np.take(everything, first, axis=1)
    ) / counts
    rows = _clipped(blob.top - top, blob.height, window_rows)
    if rows.start < rows.stop:
        window = _Window(top + rows.start, rows.stop - rows.start, origin, columns)
        alone = across[rows, ..., 0]
        alone[...] = _alone_sums(ink, blob, parts, window, first, last) / counts
        across[rows, ..., 1] -= alone
    return _shrink_down(across)


@dataclass(frozen=True)
class _Window:
    """`rows` x `columns` pixels of the ink from (`top`, `left`)."""

    top: int
    rows: int
    left: int
    columns: int


def _alone_sums(
    ink: np.ndarray,
    blob: Piece,
    parts: list[Piece],
    window: _Window,
    first: np.ndarray,
    last: np.ndarray,
) -> np.ndarray:
    """Each part's own ink summed from column `first` up to `last` (N x K each, from the
    window's left) in each of the window's rows: rows x N x K. In a row, a part holds all
    of the blob's pixels from its first to its last, so its sum is the blob's over the
    columns clipped to those."""
    blob_ink = _cut_out(
        blob.ink(ink), window.top - blob.top, window.left - blob.left, window.rows, window.columns
    )
    # Indices into the flattened running sums: row r's start at r * (columns + 1).
    flat = _running_sums(blob_ink).ravel()
    offsets = (np.arange(window.rows) * (window.columns + 1))[:, np.newaxis, np.newaxis]
    lows, highs = _row_spans(parts, blob, window)
    ends = np.clip(last, lows, highs) + offsets
    begins = np.clip(first, lows, highs) + offsets
    sums: np.ndarray = np.take(flat, ends) - np.take(flat, begins)
    return sums


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


def _row_spans(parts: list[Piece], blob: Piece, window: _Window) -> tuple[np.ndarray, np.ndarray]:
    """Where each part of `blob` starts and ends (exclusive) in each of the window's rows,
    in columns from its left (rows x N x 1 each; both 0 where the part has no pixel)."""
    masks = np.zeros((window.rows, len(parts), blob.width), bool)
    for number, part in enumerate(parts):
        inside = _clipped(part.top - window.top, part.height, window.rows)
        skipped = inside.start - (part.top - window.top)
        masks[inside, number, part.left - blob.left : part.right - blob.left] = part.mask[
            skipped : skipped + inside.stop - inside.start
        ]
    filled = masks.any(axis=2)
    shift = blob.left - window.left
    lows = np.where(filled, masks.argmax(axis=2) + shift, 0)
    highs = np.where(filled, blob.width - masks[:, :, ::-1].argmax(axis=2) + shift, 0)
    return lows[..., np.newaxis], highs[..., np.newaxis]


def _running_sums(pixels: np.ndarray) -> np.ndarray:
    """Each row's running sums (float64) of `pixels` (rows x columns), 0 first: rows x
    (columns + 1), so that columns a to b sum to sums[:, b] - sums[:, a]."""
    rows, columns = pixels.shape
    sums = np.zeros((rows, columns + 1), np.float64)
    np.cumsum(pixels, axis=1, dtype=np.float64, out=sums[:, 1:])
    return sums


def _clipped(start: int, length: int, limit: int) -> slice:
    """The indices of `length` items from `start` that fall in 0..`limit` (maybe none)."""
    first = min(max(0, start), limit)
    return slice(first, max(first, min(limit, start + length)))


def _shrink_down(across: np.ndarray) -> np.ndarray:
    """Filtered rows (rows x N x VIEW_COLUMNS x 2) box-filtered down to VIEW_ROWS and
    rounded to float32, Pillow's second pass: N x VIEW_ROWS x VIEW_COLUMNS x 2. Each
    output row is a sum of a few rows (a matrix product here would be large enough for
    the BLAS library to start threads that spin on every core)."""
    starts, counts = _box_ranges(across.shape[0], VIEW_ROWS)
    down = np.empty((VIEW_ROWS, *across.shape[1:]), np.float32)
    for row, (start, count) in enumerate(zip(starts.tolist(), counts.tolist(), strict=True)):
        down[row] = across[start : start + count].sum(axis=0, dtype=np.float64) / count
    return np.moveaxis(down, 0, 1)


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

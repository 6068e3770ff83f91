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
    part's columns and the blob's rows, `WINDOW_HEIGHT` typical digit heights tall. Each
    part is the blob's pixels between two columns in every row (as `segment.between` cuts
    them; the blob itself is one).

    The window is box-filtered as Pillow's BOX resize of a float image filters it (across
    the columns, rounded to float32, then down the rows), which made the views the shipped
    part scorer was trained on; here from running sums of the rows of the ink and of the
    blob's ink, shared by all parts, rather than a resize of each part's window."""
    window_rows = max(1, round(WINDOW_HEIGHT * height))
    window_columns = max(1, round(window_rows * VIEW_COLUMNS / VIEW_ROWS))
    top = round((blob.top + blob.bottom) / 2 - window_rows / 2)
    lefts = np.array([round(part.centre_x - window_columns / 2) for part in parts], np.int64)
    origin = int(lefts.min(initial=blob.left))
    columns = max(int(lefts.max(initial=blob.left)) + window_columns, blob.right) - origin
    starts, counts = _box_ranges(window_columns, VIEW_COLUMNS)
    first = ((lefts - origin)[:, np.newaxis] + starts)[:, np.newaxis, :]
    last = first + counts
    everything = _box_sums(_cut_out(ink, top, origin, window_rows, columns), first, last)
    lows, highs = _row_spans(parts, top, origin, window_rows)
    blob_ink = _cut_out(blob.ink(ink), top - blob.top, origin - blob.left, window_rows, columns)
    alone_sums = _box_sums(blob_ink, np.clip(first, lows, highs), np.clip(last, lows, highs))
    alone = (alone_sums / counts).astype(np.float32)
    rest = (everything / counts).astype(np.float32) - alone
    return np.moveaxis(_shrink_down(np.stack([alone, rest], axis=1)), 1, -1)


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


def _row_spans(parts: list[Piece], top: int, left: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each part starts and ends (exclusive) in each of `rows` rows from `top`, in
    columns from `left` (N x rows x 1 each; equal where the part has no pixel)."""
    lows = np.zeros((len(parts), rows, 1), np.int64)
    highs = np.zeros((len(parts), rows, 1), np.int64)
    for number, part in enumerate(parts):
        inside = _clipped(part.top - top, part.height, rows)
        mask = part.mask[inside.start - (part.top - top) : inside.stop - (part.top - top)]
        filled = mask.any(axis=1)
        low = part.left - left + mask.argmax(axis=1)
        high = part.left - left + part.width - mask[:, ::-1].argmax(axis=1)
        lows[number, inside, 0] = np.where(filled, low, 0)
        highs[number, inside, 0] = np.where(filled, high, 0)
    return lows, highs


def _box_sums(pixels: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
    """Each row's sum (float64) of `pixels` (rows x columns) from column `first` up to
    `last` (N x rows x K each, or N x 1 x K for the same columns in every row):
    N x rows x K."""
    rows, columns = pixels.shape
    sums = np.zeros((rows, columns + 1), np.float64)
    np.cumsum(pixels, axis=1, dtype=np.float64, out=sums[:, 1:])
    # Indices into the flattened sums: row r's running sums start at r * (columns + 1).
    starts = (np.arange(rows) * (columns + 1))[:, np.newaxis]
    flat = sums.ravel()
    box: np.ndarray = np.take(flat, starts + last) - np.take(flat, starts + first)
    return box


def _clipped(start: int, length: int, limit: int) -> slice:
    """The indices of `length` items from `start` that fall in 0..`limit` (maybe none)."""
    first = min(max(0, start), limit)
    return slice(first, max(first, min(limit, start + length)))


def _shrink_down(across: np.ndarray) -> np.ndarray:
    """(..., rows, VIEW_COLUMNS) box-filtered down the rows to VIEW_ROWS, rounded to
    float32: Pillow's second pass."""
    weights, counts = _summing_rows(across.shape[-2], VIEW_ROWS)
    down: np.ndarray = np.matmul(weights, across.astype(np.float64)) / counts
    return down.astype(np.float32)


@functools.cache
def _summing_rows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """The 0/1 matrix (out x size) that sums each box-filtered pixel's rows, and their
    counts (out x 1)."""
    starts, counts = _box_ranges(size, out)
    rows = np.arange(size)
    weights = (rows >= starts[:, np.newaxis]) & (rows < (starts + counts)[:, np.newaxis])
    return weights.astype(np.float64), counts[:, np.newaxis].astype(np.float64)


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

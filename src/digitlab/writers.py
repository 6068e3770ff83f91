"""Simulated writers with habits a model trained on MNIST misreads (for benchmarks and tests).

A writer's digits are real handwriting: MNIST digits upsampled into pen strokes
(`styles.pen_strokes`). A habit adds strokes to one digit the way such writers do, each
drawn with that digit's own stroke width and fresh random placement, length and angle:

- slashed zeros: a stroke through the 0, corner to corner;
- flagged 1s: a 1 with a long flag from its top, and on about half a base under it;
- crossed 7s: a 7 with a bar across its stem;
- open 4s: a 4 whose two upper strokes part instead of meeting (MNIST models read most of
  these already; a writer with them checks that teaching leaves a readable habit readable).

The writers (`WRITERS`) have some of these habits each:

- `open-four`: open 4s;
- `continental`: slashed zeros, flagged 1s and crossed 7s;
- `slashed-flagged`: slashed zeros and flagged 1s;
- `all-habits`: all four;
- `ordinary`: no habit (a writer MNIST models already read).

Each digit is saved as a scanned page would be: dark ink on white paper with uneven margins,
a PNG for `to_mnist` to read. Build writers only from MNIST *training* digits: the MNIST test
set is what fine-tuning must not forget, so it stays unseen.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from digitlab.images import stroke_width
from digitlab.styles import encode, gray_on, pad_randomly, pen_strokes

Habit = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""(ink, float 0..1 cropped to the digit; random generator) -> the ink with the habit drawn."""

Point = tuple[float, float]


def open_four(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A 4 whose top is open: its left stroke leans away from the stem, more the higher up.

    The stem's left edge is a straight line fitted through the rows that cross two strokes
    or more (where the last one starts); above a random bar height, the ink left of that
    line is moved left in proportion to the row's height, so the two upper strokes part
    however the 4 was slanted, a closed top included.
    """
    height, width = ink.shape
    bar = height * rng.uniform(0.5, 0.65)
    spread = width * rng.uniform(0.3, 0.5)
    margin = int(spread) + 2
    rows, columns = np.mgrid[0:height, 0 : width + margin].astype(np.float32)
    starts = np.array([_last_stroke_start(row) for row in ink > 0.3])
    crossing = np.flatnonzero(starts >= 0)
    if len(crossing) < 2:
        return ink
    slope, offset = np.polyfit(crossing, starts[crossing], 1)
    stem = slope * np.arange(height) + offset
    left_of_stem = columns < stem[:, np.newaxis] + margin
    lean = spread * np.clip((bar - rows) / bar, 0.0, 1.0) * left_of_stem
    padded = np.pad(ink, ((0, 0), (margin, 0)))
    return np.asarray(ndimage.map_coordinates(padded, [rows, columns + lean], order=1), np.float32)


def _last_stroke_start(row: np.ndarray) -> float:
    """The column where a row's last run of ink starts, or -1 if the row crosses one run or none."""
    starts = np.flatnonzero(np.diff(row.astype(np.int8)) == 1) + 1
    if row[0]:
        starts = np.concatenate([[0], starts])
    return float(starts[-1]) if len(starts) >= 2 else -1.0


def _stroke_width(ink: np.ndarray) -> float:
    return stroke_width(ink > 0.5)


def _draw(
    ink: np.ndarray, lines: list[tuple[Point, Point]], width: float, margin: int
) -> np.ndarray:
    """`ink` with a margin, and the `lines` ((x, y) pairs relative to the unpadded ink) drawn."""
    canvas = Image.fromarray(np.rint(np.pad(ink, margin) * 255).astype(np.uint8))
    pen = ImageDraw.Draw(canvas)
    for (x0, y0), (x1, y1) in lines:
        start, end = (x0 + margin, y0 + margin), (x1 + margin, y1 + margin)
        pen.line([start, end], fill=255, width=max(1, round(width)))
        for x, y in (start, end):  # round pen tips
            radius = width / 2
            pen.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    return np.asarray(canvas, np.float32) / 255


def slashed_zero(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A stroke through the 0 from below its lower left to above its upper right."""
    height, width = ink.shape
    overshoot = rng.uniform(0.0, 0.25, size=2) * height
    sway = rng.uniform(-0.15, 0.15) * width
    start = (width * rng.uniform(-0.1, 0.2) + sway, height + overshoot[0])
    end = (width * rng.uniform(0.8, 1.1) - sway, -overshoot[1])
    margin = int(overshoot.max()) + int(0.2 * width) + 4
    return _draw(ink, [(start, end)], _stroke_width(ink) * rng.uniform(0.8, 1.2), margin)


def flagged_one(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A long flag from the top of the 1 down to the left, and on about half of them a base
    across its foot."""
    height, _ = ink.shape
    inked_rows = np.flatnonzero((ink > 0.3).any(axis=1))
    top_x = float(np.flatnonzero(ink[inked_rows[0]] > 0.3).mean())
    foot_x = float(np.flatnonzero(ink[inked_rows[-1]] > 0.3).mean())
    flag_length = height * rng.uniform(0.45, 0.7)
    angle = np.radians(rng.uniform(30, 50))
    flag_end = (top_x - flag_length * np.cos(angle), flag_length * np.sin(angle))
    half_base = height * rng.uniform(0.2, 0.35)
    base_y = height - 1 + rng.uniform(-0.03, 0.03) * height
    base = ((foot_x - half_base, base_y), (foot_x + half_base, base_y))
    margin = int(flag_length + half_base) + 4
    lines = [((top_x, 0.0), flag_end), base] if rng.random() < 0.5 else [((top_x, 0.0), flag_end)]
    return _draw(ink, lines, _stroke_width(ink) * rng.uniform(0.8, 1.2), margin)


def crossed_seven(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bar across the 7's stem, about halfway down."""
    height, width = ink.shape
    row = int(height * rng.uniform(0.45, 0.6))
    columns = np.flatnonzero(ink[row] > 0.3)
    centre = float(columns.mean()) if len(columns) else width / 2
    half = max(width, height * 0.6) * rng.uniform(0.25, 0.4)
    tilt = rng.uniform(-0.08, 0.08) * height
    bar = ((centre - half, row + tilt), (centre + half, row - tilt))
    margin = int(half) + 4
    return _draw(ink, [bar], _stroke_width(ink) * rng.uniform(0.8, 1.2), margin)


WRITERS: dict[str, dict[int, Habit]] = {
    "ordinary": {},
    "open-four": {4: open_four},
    "continental": {0: slashed_zero, 1: flagged_one, 7: crossed_seven},
    "slashed-flagged": {0: slashed_zero, 1: flagged_one},
    "all-habits": {0: slashed_zero, 1: flagged_one, 4: open_four, 7: crossed_seven},
}
"""Each writer's habits: the digits they change, and how."""

TUNED_ON = ("continental", "ordinary")
"""The writers fine-tuning's method and settings were chosen on; the others were first
run once the method was fixed, as a check on writers it was not tuned to."""


def render_digit(digit: np.ndarray, label: int, writer: str, rng: np.random.Generator) -> bytes:
    """One MNIST digit (28x28 uint8) as `writer` (one of `WRITERS`) writes it, as a PNG scan."""
    ink = pen_strokes(digit, rng.uniform(4, 6))
    habit = WRITERS[writer].get(label)
    if habit is not None:
        ink = habit(ink, rng)
    return encode(gray_on(pad_randomly(ink, rng, 0.1, 0.4), 255, 0), "PNG")


def write_writer(
    out: str | os.PathLike[str],
    writer: str,
    x: np.ndarray,
    y: np.ndarray,
    per_digit: int,
    seed: int,
) -> int:
    """Write `per_digit` digits of each label, from the first of `x`/`y` with that label, as
    `out/<label>/<label>_<index>.png` in the hand of `writer` (one of `WRITERS`); return
    how many. The same `seed` draws the same strokes. Like `styles.write_styled_set`, these
    generated files are written directly, not atomically.
    """
    rng = np.random.default_rng(seed)
    written = 0
    for label in range(10):
        folder = Path(out) / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(y == label)[:per_digit]:
            path = folder / f"{label}_{index}.png"
            path.write_bytes(render_digit(x[index], label, writer, rng))
            written += 1
    return written

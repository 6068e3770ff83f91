"""Simulated writers with habits a model trained on MNIST misreads (for benchmarks and tests).

A writer's digits are real handwriting: MNIST digits upsampled into pen strokes
(`styles.pen_strokes`). A habit adds strokes to one digit the way such writers do, each
drawn with that digit's own stroke width and fresh random placement, length and angle:

- `slashed-zero`: a stroke through the 0, corner to corner;
- `flagged-one`: a 1 with a long flag from its top and a base under it;
- `crossed-seven`: a 7 with a bar across its stem;
- `continental`: all three at once;
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

from digitlab.atomic import atomic_write_bytes
from digitlab.images import stroke_width
from digitlab.styles import encode, pad_randomly, pen_strokes

Habit = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""(ink, float 0..1 cropped to the digit; random generator) -> the ink with the habit drawn."""

Point = tuple[float, float]


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
    """A long flag from the top of the 1 down to the left, and a base across its foot."""
    height, _ = ink.shape
    inked_rows = np.flatnonzero((ink > 0.3).any(axis=1))
    top_x = float(np.flatnonzero(ink[inked_rows[0]] > 0.3).mean())
    foot_x = float(np.flatnonzero(ink[inked_rows[-1]] > 0.3).mean())
    flag_length = height * rng.uniform(0.35, 0.55)
    angle = np.radians(rng.uniform(20, 45))
    flag_end = (top_x - flag_length * np.cos(angle), flag_length * np.sin(angle))
    half_base = height * rng.uniform(0.2, 0.35)
    base_y = height - 1 + rng.uniform(-0.03, 0.03) * height
    base = ((foot_x - half_base, base_y), (foot_x + half_base, base_y))
    margin = int(flag_length + half_base) + 4
    lines = [((top_x, 0.0), flag_end), base]
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
    "slashed-zero": {0: slashed_zero},
    "flagged-one": {1: flagged_one},
    "crossed-seven": {7: crossed_seven},
    "continental": {0: slashed_zero, 1: flagged_one, 7: crossed_seven},
}
"""Each writer's habits: the digits they change, and how."""


def render_digit(digit: np.ndarray, label: int, writer: str, rng: np.random.Generator) -> bytes:
    """One MNIST digit (28x28 uint8) as `writer` (one of `WRITERS`) writes it, as a PNG scan."""
    ink = pen_strokes(digit, rng.uniform(4, 6))
    habit = WRITERS[writer].get(label)
    if habit is not None:
        ink = habit(ink, rng)
    paper = np.rint(255 * (1.0 - pad_randomly(ink, rng, 0.1, 0.4))).astype(np.uint8)
    return encode(paper, "PNG")


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
    how many. The same `seed` draws the same strokes.
    """
    rng = np.random.default_rng(seed)
    written = 0
    for label in range(10):
        folder = Path(out) / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(y == label)[:per_digit]:
            atomic_write_bytes(
                folder / f"{label}_{index}.png", render_digit(x[index], label, writer, rng)
            )
            written += 1
    return written

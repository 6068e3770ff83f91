"""Images of things that are not digits, made the way `to_mnist` hands images to a model.

Every generator returns N x 28 x 28 uint8 arrays (white ink on black) that went through
`normalize_digit`, `to_mnist`'s own crop, stroke widening, 20 px box and centring by mass,
so they look exactly like what a person's drawing or photo of them would become. Each is
deterministic for a seed.

The kinds come in two groups. A not-a-digit score is TRAINED on `TRAINING_KINDS` only; its
figures are reported on `HELD_OUT_KINDS`, drawn afresh, which include whole kinds it never
saw (new shapes, random-walk scrawls) and the half of the letters and symbols it was not
shown (`UNSEEN_KINDS`), so the figures show how it does on writing it was not shown.
Fragments and pairs are cut from MNIST training digits for training and from MNIST test
digits for the held-out sets; Fashion-MNIST likewise from its own training and test splits.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy.interpolate import make_interp_spline

from digitlab.data.idx import read_idx
from digitlab.data.sources import FASHION_MNIST_SHA256, fashion_mnist_dir
from digitlab.errors import ConfigError
from digitlab.images.mnist_style import normalize_digit
from digitlab.not_digit.from_digits import KIND, need, turned_or_mirrored
from digitlab.not_digit.glyphs import (
    HELD_OUT_SHAPES,
    LETTERS,
    SYMBOLS,
    TRAINING_SHAPES,
    Glyph,
    Point,
    Stroke,
    curve,
    halves,
    line,
)

CANVAS = 128
"""Side of the drawing canvas; the glyph's unit box spans its middle 80 pixels."""

Generator = Callable[[np.random.Generator, int, np.ndarray | None, np.ndarray | None], np.ndarray]
"""(random generator, count, source images or None, their digit classes or None) ->
count x 28 x 28 uint8."""


def load_fashion_mnist(split: str) -> np.ndarray:
    """Fashion-MNIST images of `split` ("train" or "t10k"), N x 28 x 28 uint8, from where
    `data.sources` finds them (`$DIGITLAB_FASHION_MNIST`, else Debian's folder), verified
    by SHA-256. Raises `DataError` when the file is missing or corrupt, `ChecksumError`
    when it is not the published file."""
    if split not in ("train", "t10k"):
        raise ConfigError(f"unknown Fashion-MNIST split {split!r}; choose train or t10k")
    name = f"{split}-images"
    return read_idx(fashion_mnist_dir() / f"{name}-idx3-ubyte.gz", FASHION_MNIST_SHA256[name])


def _stroke_points(stroke: Stroke) -> np.ndarray:
    """The points a pen passes through: the polyline, or a spline sampled densely."""
    points = np.asarray(stroke.points, np.float64)
    if not stroke.smooth or len(points) < 3:
        return points
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    keep = np.concatenate([[True], steps > 1e-6])
    points = np.asarray(points[keep], np.float64)
    if len(points) < 3:
        return points
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    spline = make_interp_spline(chord, points, k=min(3, len(points) - 1))
    sampled: np.ndarray = np.asarray(spline(np.linspace(0.0, chord[-1], 12 * len(points))))
    return sampled


def _hand_transform(rng: np.random.Generator, jitter: float) -> Callable[[np.ndarray], np.ndarray]:
    """A random hand: slant, rotation, unequal scale, and a wobble on every point."""
    angle = rng.uniform(-0.2, 0.2)
    shear = rng.uniform(-0.25, 0.25)
    scale = np.array([rng.uniform(0.75, 1.25), rng.uniform(0.85, 1.15)])
    cos, sin = math.cos(angle), math.sin(angle)
    matrix = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1.0, shear], [0.0, 1.0]])

    def transform(points: np.ndarray) -> np.ndarray:
        moved = ((points - 0.5) * scale) @ matrix.T + 0.5
        return np.asarray(moved + rng.normal(0.0, jitter, size=moved.shape))

    return transform


def draw(strokes: list[np.ndarray], width: float) -> np.ndarray:
    """Strokes (unit-box point arrays) drawn with a round pen of `width` (share of the unit
    box), then normalised by `normalize_digit`: 28 x 28 uint8."""
    margin = (CANVAS - 80) / 2
    pixels = width * 80
    paper = Image.new("L", (CANVAS, CANVAS), 0)
    pen = ImageDraw.Draw(paper)
    for points in strokes:
        xy = [(float(x) * 80 + margin, float(y) * 80 + margin) for x, y in points]
        pen.line(xy, fill=255, width=max(1, round(pixels)), joint="curve")
        for x, y in (xy[0], xy[-1]):
            pen.ellipse([x - pixels / 2, y - pixels / 2, x + pixels / 2, y + pixels / 2], fill=255)
    return normalize_digit(np.asarray(paper, np.float32) / 255)


def _along(points: np.ndarray, samples: int = 48) -> np.ndarray:
    """`points` resampled at `samples` equal steps along the path they trace."""
    travelled = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    steps = np.linspace(0.0, travelled[-1], samples)
    return np.stack([np.interp(steps, travelled, points[:, axis]) for axis in (0, 1)], axis=1)


def _broken(strokes: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Strokes where a dry or lifted pen left a gap: each, one time in four, loses a piece of
    5% to 15% of its length somewhere along it."""
    result = []
    for points in strokes:
        if len(points) < 2 or rng.random() >= 0.25:
            result.append(points)
            continue
        dense = _along(points)
        gap = int(rng.integers(3, 8))
        start = int(rng.integers(1, len(dense) - gap))
        result += [dense[:start], dense[start + gap :]]
    return result


def render_glyph(glyph: Glyph, rng: np.random.Generator, jitter: float = 0.015) -> np.ndarray:
    """One glyph as a random hand draws it: slanted, wobbling, with a fine to broad pen and
    now and then a broken stroke; 28 x 28 uint8."""
    transform = _hand_transform(rng, jitter)
    strokes = [transform(_stroke_points(stroke)) for stroke in glyph]
    return draw(_broken(strokes, rng), rng.uniform(0.04, 0.14))


def _from_glyphs(glyphs: dict[str, Glyph]) -> Generator:
    names = sorted(glyphs)

    def generate(
        rng: np.random.Generator,
        count: int,
        source: np.ndarray | None,
        labels: np.ndarray | None,
    ) -> np.ndarray:
        picks = rng.integers(0, len(names), size=count)
        return np.stack([render_glyph(glyphs[names[pick]], rng) for pick in picks])

    return generate


def _scribbles(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """One or two smooth curves, each through 5 to 9 random points."""
    images = []
    for _ in range(count):
        strokes = [
            _stroke_points(curve(*map(tuple, rng.uniform(0.1, 0.9, (rng.integers(5, 10), 2)))))
            for _ in range(rng.integers(1, 3))
        ]
        images.append(draw(strokes, rng.uniform(0.04, 0.1)))
    return np.stack(images)


def _scrawls(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """A pen wandering at random: 25 to 50 steps, turning a little each step, kept in the box."""
    images = []
    for _ in range(count):
        position = rng.uniform(0.3, 0.7, 2)
        heading = rng.uniform(0, 2 * math.pi)
        points = [position.copy()]
        for _ in range(rng.integers(25, 51)):
            heading += rng.normal(0.0, 0.7)
            position = np.clip(
                position + 0.07 * np.array([math.cos(heading), math.sin(heading)]), 0, 1
            )
            points.append(position.copy())
        images.append(draw([np.array(points)], rng.uniform(0.04, 0.1)))
    return np.stack(images)


def _random_part(rng: np.random.Generator) -> Stroke:
    """A straight segment or an arc of a circle, somewhere in the unit box."""
    if rng.random() < 0.5:
        start, end = rng.uniform(0.1, 0.9, (2, 2))
        return line(tuple(start), tuple(end))
    centre = rng.uniform(0.3, 0.7, 2)
    radius = rng.uniform(0.15, 0.35)
    first = rng.uniform(0, 2 * math.pi)
    angles = first + np.linspace(0, rng.uniform(1.0, 3.5), 7)
    points: list[Point] = [
        (float(centre[0] + radius * math.cos(a)), float(centre[1] + radius * math.sin(a)))
        for a in angles
    ]
    return curve(*points)


def _strokes(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """Two to four random segments and arcs: glyph-like marks that are no letter or digit."""
    return np.stack(
        [
            render_glyph([_random_part(rng) for _ in range(rng.integers(2, 5))], rng)
            for _ in range(count)
        ]
    )


def _polygons(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """Closed outlines of three to five corners, spread around a centre at random distances:
    angular loops, convex or not, where a 0 is a round one. None is so thin that it
    would read as a 1's bar."""
    images: list[np.ndarray] = []
    while len(images) < count:
        corners = int(rng.integers(3, 6))
        spacing = 2 * math.pi / corners
        angles = rng.uniform(0, 2 * math.pi) + spacing * (
            np.arange(corners) + rng.uniform(-0.3, 0.3, corners)
        )
        radii = rng.uniform(0.2, 0.4, corners)
        outline = np.stack([0.5 + radii * np.cos(angles), 0.5 + radii * np.sin(angles)], axis=1)
        extent = np.ptp(outline, axis=0)
        if extent.max() > 2.0 * extent.min():
            continue
        points: list[Point] = [(float(x), float(y)) for x, y in outline]
        images.append(render_glyph([line(*points, points[0])], rng))
    return np.stack(images)


def _fragments(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """A half, a corner or a band of a digit: 15% to 65% of its ink, never a narrow sliver
    (a tall thin piece is a 1 to any reader)."""
    digits = need(source, "fragments")
    images: list[np.ndarray] = []
    while len(images) < count:
        digit = digits[rng.integers(len(digits))].astype(np.float32) / 255
        rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
        top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        cut_y = round(top + (bottom - top) * rng.uniform(0.3, 0.7))
        cut_x = round(left + (right - left) * rng.uniform(0.3, 0.7))
        keep_top, keep_left = rng.random() < 0.5, rng.random() < 0.5
        piece = np.zeros_like(digit)
        rows_kept = slice(top, cut_y) if keep_top else slice(cut_y, bottom)
        cols_kept = slice(left, cut_x) if keep_left else slice(cut_x, right)
        shape = rng.integers(3)  # 0: a horizontal half, 1: a vertical half, 2: a corner
        window = (
            (rows_kept, slice(None))
            if shape == 0
            else (slice(None), cols_kept)
            if shape == 1
            else (rows_kept, cols_kept)
        )
        piece[window] = digit[window]
        share = piece.sum() / digit.sum()
        ink = np.argwhere(piece > 0.5)
        if not 0.15 <= share <= 0.65 or len(ink) < 8:
            continue
        height, width = np.ptp(ink, axis=0) + 1
        if height > 2.2 * width:
            continue
        images.append(normalize_digit(piece))
    return np.stack(images)


def _pairs(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """Two digits side by side in one frame, from touching to a small gap."""
    digits = need(source, "pairs")
    images = []
    for _ in range(count):
        first, second = (digits[rng.integers(len(digits))].astype(np.float32) / 255 for _ in "ab")
        offset = int(rng.integers(14, 25))
        canvas = np.zeros((28, 28 + offset), np.float32)
        canvas[:, :28] = first
        canvas[:, offset:] = np.maximum(canvas[:, offset:], second)
        images.append(normalize_digit(canvas))
    return np.stack(images)


def _fashion(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """Fashion-MNIST clothes, re-normalised as `to_mnist` would."""
    images = need(source, "fashion")
    picks = rng.choice(len(images), size=count, replace=count > len(images))
    return np.stack([normalize_digit(images[pick].astype(np.float32) / 255) for pick in picks])


TRAINED_LETTERS, UNSEEN_LETTERS = halves(LETTERS)
TRAINED_SYMBOLS, UNSEEN_SYMBOLS = halves(SYMBOLS)

TRAINING_KINDS: dict[str, Generator] = {
    "scribbles": _scribbles,
    "strokes": _strokes,
    "polygons": _polygons,
    "shapes": _from_glyphs(TRAINING_SHAPES),
    "letters, trained half": _from_glyphs(TRAINED_LETTERS),
    "symbols, trained half": _from_glyphs(TRAINED_SYMBOLS),
    "fragments": _fragments,
    "pairs": _pairs,
    "fashion": _fashion,
    KIND: turned_or_mirrored,
}
"""The non-digits a not-a-digit score is trained on: half of the letters and of the
symbols, never the other half, and real handwriting that is no digit (`from_digits`).
Fragments, pairs and turned or mirrored digits take MNIST training digits as source, fashion
Fashion-MNIST's training split."""

UNSEEN_KINDS = ("letters, unseen half", "symbols, unseen half", "new shapes", "scrawls")
"""Held-out kinds that training never draws: the figures that show generalisation."""

HELD_OUT_KINDS: dict[str, Generator] = {
    "letters, unseen half": _from_glyphs(UNSEEN_LETTERS),
    "symbols, unseen half": _from_glyphs(UNSEEN_SYMBOLS),
    "new shapes": _from_glyphs(HELD_OUT_SHAPES),
    "scrawls": _scrawls,
    "letters, trained half": _from_glyphs(TRAINED_LETTERS),
    "symbols, trained half": _from_glyphs(TRAINED_SYMBOLS),
    "fragments": _fragments,
    "pairs": _pairs,
    "fashion": _fashion,
}
"""The non-digits thresholds are checked and figures reported on, drawn afresh (their own
seeds). The `UNSEEN_KINDS` were never trained on; the trained halves of the letters and
symbols are reported apart, so that seen is never mistaken for unseen. Fragments and pairs
take MNIST test digits as source, fashion Fashion-MNIST's test split."""

NEEDS_SOURCE = {"fragments": "digits", "pairs": "digits", KIND: "digits", "fashion": "fashion"}
"""The kinds cut from images, and which images: MNIST digits or Fashion-MNIST. Turned or
mirrored digits need the digits' classes too (`labels`)."""


def make_non_digits(
    kind: str,
    count: int,
    seed: int,
    held_out: bool = False,
    source: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """`count` non-digits of `kind` (a key of `TRAINING_KINDS`, or of `HELD_OUT_KINDS` when
    `held_out`), count x 28 x 28 uint8, the same for the same seed. Fragments and pairs
    need MNIST digits as `source`, turned or mirrored digits their classes as `labels` too,
    fashion Fashion-MNIST images. Raises `ConfigError` for an unknown kind or a missing
    source or labels."""
    kinds = HELD_OUT_KINDS if held_out else TRAINING_KINDS
    if kind not in kinds:
        raise ConfigError(f"unknown non-digit kind {kind!r}; choose from {', '.join(kinds)}")
    rng = np.random.default_rng([seed, int(held_out), sorted(kinds).index(kind)])
    return kinds[kind](rng, count, source, labels)

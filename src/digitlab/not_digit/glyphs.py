"""Stroke paths of things that are not digits: letters, symbols and shapes, drawn as a hand
would draw them (never glyphs rendered from a font, which an independent check must not
share with training).

Each glyph is a list of strokes in a unit box (x right, y down, 0..1); a stroke is a
`Stroke(smooth, points)`: a polyline, or a smooth curve through the points when `smooth`.

What counts as a digit: anything a reader would take for one. Circles and ellipses are 0,
a single straight bar (`/`, `|`, `l`, `I`) is 1, and letters that are digits in many hands
(O, o, D, I, l, i, Z, z, S, s, B, b, G, g, q, T, J, L, y) are left out, as are `(`, `)`,
`$` and `&`.
Everything here is something a reader would not call a digit.
"""

from __future__ import annotations

import math
from typing import NamedTuple

Point = tuple[float, float]


class Stroke(NamedTuple):
    """One pen stroke: a polyline, or a smooth curve through `points` when `smooth`."""

    smooth: bool
    points: tuple[Point, ...]


Glyph = list[Stroke]


def line(*points: Point) -> Stroke:
    """A polyline through `points`."""
    return Stroke(False, points)


def curve(*points: Point) -> Stroke:
    """A smooth curve through `points`."""
    return Stroke(True, points)


def dot(x: float, y: float) -> Stroke:
    """A dot: a stroke so short the pen leaves a round mark."""
    return Stroke(False, ((x, y), (x + 0.01, y + 0.01)))


def ring(x: float, y: float, radius: float) -> Stroke:
    """A small closed loop (the circles of % and the like), drawn through eight points."""
    angles = [2 * math.pi * step / 8 for step in range(9)]
    return curve(*((x + radius * math.cos(a), y + radius * math.sin(a)) for a in angles))


_BOWL_P = curve((0.25, 0.1), (0.6, 0.1), (0.75, 0.3), (0.6, 0.5), (0.25, 0.5))

LETTERS: dict[str, Glyph] = {
    "A": [line((0.2, 0.9), (0.5, 0.1), (0.8, 0.9)), line((0.32, 0.6), (0.68, 0.6))],
    "C": [
        curve((0.8, 0.25), (0.6, 0.1), (0.3, 0.2), (0.2, 0.5), (0.3, 0.8), (0.6, 0.9), (0.8, 0.75))
    ],
    "E": [
        line((0.75, 0.1), (0.25, 0.1), (0.25, 0.9), (0.75, 0.9)),
        line((0.25, 0.5), (0.65, 0.5)),
    ],
    "F": [line((0.75, 0.1), (0.25, 0.1), (0.25, 0.9)), line((0.25, 0.5), (0.6, 0.5))],
    "H": [
        line((0.25, 0.1), (0.25, 0.9)),
        line((0.75, 0.1), (0.75, 0.9)),
        line((0.25, 0.5), (0.75, 0.5)),
    ],
    "K": [
        line((0.25, 0.1), (0.25, 0.9)),
        line((0.75, 0.1), (0.25, 0.55)),
        line((0.4, 0.45), (0.75, 0.9)),
    ],
    "M": [line((0.2, 0.9), (0.25, 0.1), (0.5, 0.6), (0.75, 0.1), (0.8, 0.9))],
    "N": [line((0.25, 0.9), (0.25, 0.1), (0.75, 0.9), (0.75, 0.1))],
    "P": [line((0.25, 0.9), (0.25, 0.1)), _BOWL_P],
    "R": [line((0.25, 0.9), (0.25, 0.1)), _BOWL_P, line((0.4, 0.5), (0.75, 0.9))],
    "U": [curve((0.25, 0.1), (0.25, 0.7), (0.5, 0.9), (0.75, 0.7), (0.75, 0.1))],
    "V": [line((0.2, 0.1), (0.5, 0.9), (0.8, 0.1))],
    "W": [line((0.1, 0.1), (0.3, 0.9), (0.5, 0.4), (0.7, 0.9), (0.9, 0.1))],
    "X": [line((0.2, 0.1), (0.8, 0.9)), line((0.8, 0.1), (0.2, 0.9))],
    "Y": [line((0.2, 0.1), (0.5, 0.5), (0.8, 0.1)), line((0.5, 0.5), (0.5, 0.9))],
    "a": [
        curve((0.7, 0.45), (0.5, 0.35), (0.3, 0.5), (0.35, 0.85), (0.6, 0.85), (0.7, 0.6)),
        line((0.7, 0.35), (0.7, 0.9)),
    ],
    "e": [
        curve(
            (0.25, 0.6),
            (0.75, 0.6),
            (0.65, 0.4),
            (0.45, 0.35),
            (0.27, 0.55),
            (0.35, 0.85),
            (0.7, 0.85),
        )
    ],
    "h": [line((0.3, 0.1), (0.3, 0.9)), curve((0.3, 0.6), (0.5, 0.45), (0.7, 0.55), (0.7, 0.9))],
    "k": [
        line((0.3, 0.1), (0.3, 0.9)),
        line((0.7, 0.4), (0.3, 0.7)),
        line((0.42, 0.62), (0.72, 0.9)),
    ],
    "m": [
        line((0.15, 0.9), (0.15, 0.4)),
        curve((0.15, 0.5), (0.3, 0.4), (0.45, 0.5), (0.45, 0.9)),
        curve((0.45, 0.5), (0.6, 0.4), (0.8, 0.5), (0.8, 0.9)),
    ],
    "n": [line((0.3, 0.9), (0.3, 0.4)), curve((0.3, 0.55), (0.5, 0.4), (0.7, 0.5), (0.7, 0.9))],
    "r": [line((0.35, 0.9), (0.35, 0.4)), curve((0.35, 0.6), (0.5, 0.42), (0.7, 0.42))],
    "t": [line((0.45, 0.1), (0.45, 0.8), (0.6, 0.9)), line((0.25, 0.35), (0.7, 0.35))],
    "w": [line((0.1, 0.4), (0.3, 0.9), (0.5, 0.55), (0.7, 0.9), (0.9, 0.4))],
}
"""Letters a reader would not take for a digit, as a hand writes them."""

SYMBOLS: dict[str, Glyph] = {
    "+": [line((0.5, 0.2), (0.5, 0.8)), line((0.2, 0.5), (0.8, 0.5))],
    "=": [line((0.2, 0.4), (0.8, 0.4)), line((0.2, 0.6), (0.8, 0.6))],
    "-": [line((0.2, 0.5), (0.8, 0.5))],
    "#": [
        line((0.4, 0.15), (0.35, 0.85)),
        line((0.65, 0.15), (0.6, 0.85)),
        line((0.2, 0.38), (0.8, 0.38)),
        line((0.2, 0.62), (0.8, 0.62)),
    ],
    "%": [line((0.75, 0.15), (0.25, 0.85)), ring(0.3, 0.25, 0.1), ring(0.7, 0.75, 0.1)],
    "?": [
        curve((0.3, 0.3), (0.45, 0.12), (0.7, 0.2), (0.7, 0.4), (0.5, 0.55), (0.5, 0.7)),
        dot(0.5, 0.88),
    ],
    "!": [line((0.5, 0.1), (0.5, 0.68)), dot(0.5, 0.88)],
    "*": [
        line((0.5, 0.2), (0.5, 0.8)),
        line((0.24, 0.35), (0.76, 0.65)),
        line((0.76, 0.35), (0.24, 0.65)),
    ],
    "<": [line((0.75, 0.2), (0.25, 0.5), (0.75, 0.8))],
    ">": [line((0.25, 0.2), (0.75, 0.5), (0.25, 0.8))],
    "->": [line((0.15, 0.5), (0.85, 0.5)), line((0.65, 0.3), (0.85, 0.5), (0.65, 0.7))],
    "~": [curve((0.15, 0.55), (0.35, 0.4), (0.65, 0.6), (0.85, 0.45))],
    "check": [line((0.2, 0.55), (0.4, 0.8), (0.85, 0.2))],
    "÷": [line((0.2, 0.5), (0.8, 0.5)), dot(0.5, 0.3), dot(0.5, 0.7)],
}
"""Symbols people write near numbers, as a hand writes them."""

TRAINING_SHAPES: dict[str, Glyph] = {
    "square": [line((0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.2))],
    "wide rectangle": [line((0.1, 0.3), (0.9, 0.3), (0.9, 0.7), (0.1, 0.7), (0.1, 0.3))],
    "triangle": [line((0.5, 0.15), (0.85, 0.8), (0.15, 0.8), (0.5, 0.15))],
    "pentagon": [
        line((0.5, 0.1), (0.88, 0.38), (0.74, 0.85), (0.26, 0.85), (0.12, 0.38), (0.5, 0.1))
    ],
    "zigzag": [line((0.1, 0.6), (0.25, 0.4), (0.4, 0.6), (0.55, 0.4), (0.7, 0.6), (0.85, 0.4))],
    "grid": [
        line((0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.2)),
        line((0.5, 0.2), (0.5, 0.8)),
        line((0.2, 0.5), (0.8, 0.5)),
    ],
}
"""Shapes the head is trained on."""

HELD_OUT_SHAPES: dict[str, Glyph] = {
    "star": [
        line(
            (0.5, 0.1),
            (0.62, 0.85),
            (0.15, 0.38),
            (0.85, 0.38),
            (0.38, 0.85),
            (0.5, 0.1),
        )
    ],
    "heart": [
        curve((0.5, 0.85), (0.2, 0.55), (0.2, 0.25), (0.38, 0.18), (0.5, 0.35)),
        curve((0.5, 0.35), (0.62, 0.18), (0.8, 0.25), (0.8, 0.55), (0.5, 0.85)),
    ],
    "diamond": [line((0.5, 0.1), (0.8, 0.5), (0.5, 0.9), (0.2, 0.5), (0.5, 0.1))],
    "hexagon": [
        line(
            (0.3, 0.15), (0.7, 0.15), (0.9, 0.5), (0.7, 0.85), (0.3, 0.85), (0.1, 0.5), (0.3, 0.15)
        )
    ],
    "wave": [curve((0.1, 0.5), (0.25, 0.35), (0.4, 0.5), (0.55, 0.65), (0.7, 0.5), (0.85, 0.35))],
    "cross in a box": [
        line((0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.2)),
        line((0.2, 0.2), (0.8, 0.8)),
        line((0.8, 0.2), (0.2, 0.8)),
    ],
}
"""Shapes kept out of training, to measure whether the head generalises to new shapes."""


def halves(glyphs: dict[str, Glyph]) -> tuple[dict[str, Glyph], dict[str, Glyph]]:
    """`glyphs` split in two by name, alternately in sorted order: (trained, unseen). The
    unseen half is never drawn for training, so the figures on it show whether what was
    learnt from one half carries over to glyphs never seen."""
    names = sorted(glyphs)
    trained = {name: glyphs[name] for name in names[::2]}
    unseen = {name: glyphs[name] for name in names[1::2]}
    return trained, unseen

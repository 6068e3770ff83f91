"""Non-digits made of real handwriting: MNIST digits turned or mirrored into no digit.

A score trained only on glyphs drawn by our stroke renderer learns "our renderer's glyphs"
and generalises poorly to letters and symbols it was not shown. Turned and mirrored digits
are real pen strokes that are no digit, so the score learns what a digit's strokes look
like, not what our renderer's strokes look like.

Only digits that no reader takes for a digit once turned are used, chosen by looking at
samples of every class: on its side, only 3 (an m or w) and 4; upside down, 3 (an epsilon),
4 (an h) and 7 (an L); mirrored, 3, 7 and 9 (a P). A 0 or 8 turned stays a 0 or 8 (or an
infinity sign that reads as 8 when slanted), a 1 becomes a bar that may still be a slanted
1, and a turned 2, 5, 6 or 9 or a mirrored 2, 4, 5 or 6 still reads as a digit in many
hands.
"""

from __future__ import annotations

import numpy as np

from digitlab.errors import ConfigError
from digitlab.images.mnist_style import normalize_digit

TURNS = {"on their side": (3, 4), "upside down": (3, 4, 7), "mirrored": (3, 7, 9)}
"""Each way of turning a digit, and the classes that read as no digit once turned so."""

KIND = "turned or mirrored digits"
"""The training kind of non-digit made here."""


def need(source: np.ndarray | None, kind: str) -> np.ndarray:
    """`source`, or `ConfigError` when a kind cut from images was given none."""
    if source is None or source.ndim != 3 or len(source) == 0:
        raise ConfigError(f"non-digits of kind {kind!r} are cut from images: pass them as source")
    return source


def _of_classes(turn: str, source: np.ndarray | None, labels: np.ndarray | None) -> np.ndarray:
    """The digits of `source` whose `labels` are among the classes `turn` applies to."""
    digits = need(source, KIND)
    if labels is None or len(labels) != len(digits):
        raise ConfigError(f"non-digits of kind {KIND!r} need the class of every source digit")
    return digits[np.isin(labels, TURNS[turn])]


def _picks(rng: np.random.Generator, digits: np.ndarray, count: int) -> np.ndarray:
    return digits[rng.integers(len(digits), size=count)]


def _normalized(images: list[np.ndarray]) -> np.ndarray:
    """Each image read the way `to_mnist` reads a person's drawing: `normalize_digit`."""
    return np.stack([normalize_digit(image.astype(np.float32) / 255) for image in images])


def turned_or_mirrored(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """MNIST digits (`source`, of classes `labels`) on their side (a quarter turn either
    way), upside down or mirrored left to right, about a third each, each only from the
    classes of `TURNS`. Raises `ConfigError` when the source or its labels are missing."""
    sides, downs, mirrors = (int(n) for n in rng.multinomial(count, [1 / 3] * 3))
    side = _picks(rng, _of_classes("on their side", source, labels), sides)
    images = [np.rot90(digit, 1 if rng.random() < 0.5 else 3) for digit in side]
    images += [
        np.rot90(d, 2) for d in _picks(rng, _of_classes("upside down", source, labels), downs)
    ]
    images += list(_picks(rng, _of_classes("mirrored", source, labels), mirrors)[:, :, ::-1])
    return _normalized(images)

"""Non-digits made of real handwriting: MNIST digits turned, mirrored, overlaid or struck.

A score trained only on glyphs drawn by our stroke renderer learns "our renderer's glyphs"
and generalises poorly to letters and symbols it was not shown. These kinds are real pen
strokes that are no digit, so the score learns the strokes' arrangement, not their look.

Only digits that no reader takes for a digit once transformed are used, chosen by looking
at samples of every class: turned on its side, only 3 (an m or w) and 4; upside down, 3
(an epsilon), 4 (an h) and 7 (an L); mirrored, 3, 7 and 9 (a P). A 0 or 8 turned stays a
0 or 8, a 1 becomes a bar, a turned 2, 5, 6 or 9 or a mirrored 2, 4, 5 or 6 still reads as
a digit in many hands. Overlaid digits are two of different classes, never a 1 (a 1 over
most digits reads as that digit), a 0 or an 8 (over most others they read as 0 or 8);
struck-through digits are never a 0, 1 or 7 (a slashed 0, a 1 along the stroke and a
crossed 7 are digits).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from digitlab.errors import ConfigError
from digitlab.images.mnist_style import normalize_digit

TURNABLE = {
    "digits on their side": (3, 4),
    "digits upside down": (3, 4, 7),
    "mirrored digits": (3, 7, 9),
    "overlaid digits": (2, 3, 4, 5, 6, 7, 9),
    "struck-through digits": (2, 3, 4, 5, 6, 8, 9),
}
"""Each kind made from MNIST digits of given classes, and those classes."""


def need(source: np.ndarray | None, kind: str) -> np.ndarray:
    """`source`, or `ConfigError` when a kind cut from images was given none."""
    if source is None or source.ndim != 3 or len(source) == 0:
        raise ConfigError(f"non-digits of kind {kind!r} are cut from images: pass them as source")
    return source


def of_classes(kind: str, source: np.ndarray | None, labels: np.ndarray | None) -> np.ndarray:
    """The digits of `source` whose `labels` are among the classes `kind` is made from.
    Raises `ConfigError` when either is missing or they differ in length."""
    digits = need(source, kind)
    if labels is None or len(labels) != len(digits):
        raise ConfigError(f"non-digits of kind {kind!r} need the class of every source digit")
    return digits[np.isin(labels, TURNABLE[kind])]


def _picks(rng: np.random.Generator, digits: np.ndarray, count: int) -> np.ndarray:
    return digits[rng.integers(len(digits), size=count)]


def _normalized(images: list[np.ndarray]) -> np.ndarray:
    """Each image read the way `to_mnist` reads a person's drawing: `normalize_digit`."""
    return np.stack([normalize_digit(image.astype(np.float32) / 255) for image in images])


def on_their_side(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """Digits turned a quarter, clockwise or not."""
    digits = _picks(rng, of_classes("digits on their side", source, labels), count)
    return _normalized([np.rot90(digit, 1 if rng.random() < 0.5 else 3) for digit in digits])


def upside_down(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """Digits turned half a turn."""
    digits = _picks(rng, of_classes("digits upside down", source, labels), count)
    return _normalized([np.rot90(digit, 2) for digit in digits])


def mirrored(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """Digits mirrored left to right."""
    digits = _picks(rng, of_classes("mirrored digits", source, labels), count)
    return _normalized(list(digits[:, :, ::-1]))


def overlaid(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """Two digits of different classes in one frame, one over the other, the second
    shifted 2 to 4 px from the first."""
    digits = of_classes("overlaid digits", source, labels)
    classes = np.asarray(labels)[np.isin(np.asarray(labels), TURNABLE["overlaid digits"])]
    if len(np.unique(classes)) < 2:
        raise ConfigError("overlaid digits need source digits of at least two classes")
    images = []
    for _ in range(count):
        first = int(rng.integers(len(digits)))
        others = np.flatnonzero(classes != classes[first])
        second = digits[others[rng.integers(len(others))]]
        shift = rng.integers(2, 5, size=2) * rng.choice([-1, 1], size=2)
        moved = np.roll(second, tuple(int(s) for s in shift), axis=(0, 1))
        images.append(np.maximum(digits[first], moved))
    return _normalized(images)


def struck_through(
    rng: np.random.Generator, count: int, source: np.ndarray | None, labels: np.ndarray | None
) -> np.ndarray:
    """A digit crossed out by a straight stroke from one side of its box to the other,
    reaching past it, at any slope."""
    images = []
    for digit in _picks(rng, of_classes("struck-through digits", source, labels), count):
        paper = Image.fromarray(np.pad(digit, 8))
        angle = rng.uniform(0, np.pi)
        half = rng.uniform(14, 20)
        centre = 22 + rng.uniform(-3, 3, size=2)
        offset = half * np.array([np.cos(angle), np.sin(angle)])
        ends = [tuple(centre - offset), tuple(centre + offset)]
        ImageDraw.Draw(paper).line(ends, fill=255, width=int(rng.integers(2, 4)))
        images.append(np.asarray(paper))
    return _normalized(images)

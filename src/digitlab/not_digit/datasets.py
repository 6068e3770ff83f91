"""The named image sets the not-a-digit scores are trained, tuned and measured on.

Three disjoint roles, each a dict of name -> N x 28 x 28 uint8 and a flag saying which are
digits:

    training    MNIST training digits, the same rendered in every style of `styles` and in
                every generic look of `looks`, read back by `to_mnist`, and every TRAINING
                kind of non-digit
    validation  other MNIST training digits, plain, in every style and in every look, one
                set each: the threshold is chosen here
    report      MNIST test, MNIST test digits in every style and with pen gaps (the look
                `looks.pen_gaps`), scikit-learn's UCI digits (43 writers outside MNIST,
                evaluation-only: never trained or tuned on), and every HELD-OUT kind of
                non-digit

Styled images go through the real path: rendered as image files, then `to_mnist`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from digitlab.data.sources import load_mnist
from digitlab.images.mnist_style import to_mnist
from digitlab.not_digit.looks import digit_looks, pen_gaps, read_back
from digitlab.not_digit.non_digits import (
    HELD_OUT_KINDS,
    NEEDS_SOURCE,
    TRAINING_KINDS,
    load_fashion_mnist,
    make_non_digits,
)
from digitlab.styles import STYLES, render

STYLED_PER_STYLE = 1600
LOOKED_PER_LOOK = 5000
"""Distinct MNIST training digits drawn in each style and in each look for training: each
epoch samples from them, so the digit side sees many hands in every style."""

PER_CHECKED_SET = 1000
"""Digits in each styled or looked set a threshold is chosen on, and in each styled set it
is checked on: with 1% allowed flagged, 300 digits left the threshold to the third-lowest
score, and 200 could not tell 2% from 3%."""


@dataclass
class ImageSets:
    """Named image sets, and which of them hold digits."""

    images: dict[str, np.ndarray] = field(default_factory=dict)
    digits: set[str] = field(default_factory=set)

    def add(self, name: str, images: np.ndarray, is_digit: bool) -> None:
        self.images[name] = images
        if is_digit:
            self.digits.add(name)


def styled_digits(digits: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Every style of `styles` applied to `digits`, each file read back through `to_mnist`."""
    result = {}
    for number, style in enumerate(STYLES):
        rng = np.random.default_rng([seed, number])
        result[style] = np.stack([to_mnist(render(digit, style, rng)[0]) for digit in digits])
    return result


def uci_digits() -> np.ndarray:
    """scikit-learn's 1,797 UCI 8x8 digits, dark on white, read through `to_mnist`."""
    from sklearn.datasets import load_digits

    images = load_digits().images
    return np.stack(
        [to_mnist(np.rint(255 - image * 255 / 16).astype(np.uint8)) for image in images]
    )


def _non_digits(
    sets: ImageSets,
    counts: int,
    seed: int,
    held_out: bool,
    digits: np.ndarray,
    labels: np.ndarray,
) -> None:
    fashion = load_fashion_mnist("t10k" if held_out else "train")
    sources = {"digits": digits, "fashion": fashion}
    for kind in HELD_OUT_KINDS if held_out else TRAINING_KINDS:
        source = sources[NEEDS_SOURCE[kind]] if kind in NEEDS_SOURCE else None
        images = make_non_digits(kind, counts, seed, held_out, source, labels)
        sets.add(kind, images, is_digit=False)


def training_sets(
    seed: int = 0,
    mnist_count: int = 20000,
    per_kind: int = 3000,
    per_style: int = STYLED_PER_STYLE,
    per_look: int = LOOKED_PER_LOOK,
) -> ImageSets:
    """Digits and TRAINING non-digits to fit a head or a branch on: `per_style` digits in
    every style and `per_look` other digits in every look."""
    (x_train, y_train), _ = load_mnist()
    sets = ImageSets()
    sets.add("mnist train", x_train[:mnist_count], is_digit=True)
    _add_styled_and_looked(sets, x_train[mnist_count:], per_style, per_look, seed)
    _non_digits(sets, per_kind, seed, False, x_train[:50000], y_train[:50000])
    return sets


def validation_sets(seed: int = 0) -> ImageSets:
    """Digits never trained on (MNIST training digits 50,000 onwards) to choose the
    threshold: plain, and one set per style and per look."""
    (x_train, _), _ = load_mnist()
    sets = ImageSets()
    sets.add("mnist validation", x_train[50000:55000], is_digit=True)
    _add_styled_and_looked(sets, x_train[55000:], PER_CHECKED_SET, PER_CHECKED_SET, seed + 1)
    return sets


def _add_styled_and_looked(
    sets: ImageSets, digits: np.ndarray, per_style: int, per_look: int, seed: int
) -> None:
    """The first `per_style` of `digits` in every style ("styled NAME") and the next
    `per_look` in every look ("look NAME"), added to `sets` as digits."""
    for style, images in styled_digits(digits[:per_style], seed).items():
        sets.add(f"styled {style}", images, is_digit=True)
    looked = digit_looks(digits[per_style : per_style + per_look], seed)
    for look, images in looked.items():
        sets.add(f"look {look}", images, is_digit=True)


def report_sets(seed: int = 0, per_style: int = PER_CHECKED_SET, per_kind: int = 1000) -> ImageSets:
    """MNIST test, styled MNIST test, MNIST test with pen gaps, UCI digits and HELD-OUT
    non-digits, to report on."""
    _, (x_test, y_test) = load_mnist()
    sets = ImageSets()
    sets.add("mnist test", x_test, is_digit=True)
    for style, images in styled_digits(x_test[:per_style], seed + 2).items():
        sets.add(style, images, is_digit=True)
    gapped = read_back(pen_gaps, x_test[:per_style], np.random.default_rng([seed, 3]))
    sets.add("pen gaps", gapped, is_digit=True)
    sets.add("uci 8x8 digits", uci_digits(), is_digit=True)
    _non_digits(sets, per_kind, seed, True, x_test, y_test)
    return sets

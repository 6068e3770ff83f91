"""Digits drawn by a random hand from stroke skeletons: writing no network here was trained
on, for the benches to read (evaluation only; never train on these).

Each digit is drawn from one of a few skeletons, as people write it: a 1 as a bare bar, with
a flag (the continental 1) or with a flag and a base; a 4 closed or open; a 7 with or without
its bar; a 3 with a round or a flat top; a 9 with a straight or a curved tail. The hand is
`not_digit`'s: a random slant, rotation and unequal scale, a wobble on every point, a fine to
broad pen, and now and then a gap where the pen lifted. The images are 28 x 28, white on
black and normalised as `to_mnist` normalises a digit, like the MNIST digits the benches
compose numbers from.

    .venv/bin/python bench/drawn_digits.py [--count 1000] [--seed 0] [--model M]
                                                    # a model (default: the shipped one)
                                                    # on single drawn digits
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from digitlab.inference.predictor import Predictor
from digitlab.not_digit.glyphs import Glyph, curve, line
from digitlab.not_digit.non_digits import render_glyph

_FLAGGED_ONE = line((0.3, 0.28), (0.55, 0.08), (0.55, 0.92))
_NINE_LOOP = curve((0.72, 0.3), (0.5, 0.08), (0.27, 0.28), (0.48, 0.5), (0.72, 0.32))
_SEVEN = line((0.2, 0.1), (0.8, 0.1), (0.42, 0.92))
_THREE_BOTTOM = curve((0.46, 0.46), (0.8, 0.66), (0.52, 0.92), (0.2, 0.8))

SKELETONS: dict[int, dict[str, Glyph]] = {
    0: {
        "oval": [
            curve(
                (0.5, 0.08),
                (0.25, 0.25),
                (0.2, 0.55),
                (0.35, 0.88),
                (0.62, 0.9),
                (0.8, 0.6),
                (0.75, 0.25),
                (0.5, 0.08),
            )
        ]
    },
    1: {
        "bar": [line((0.5, 0.08), (0.5, 0.92))],
        "flag": [_FLAGGED_ONE],
        "flag and base": [_FLAGGED_ONE, line((0.32, 0.92), (0.78, 0.92))],
    },
    2: {
        "plain": [
            curve((0.22, 0.3), (0.5, 0.08), (0.78, 0.28), (0.68, 0.52), (0.22, 0.9)),
            line((0.22, 0.9), (0.82, 0.9)),
        ]
    },
    3: {
        "round top": [curve((0.22, 0.2), (0.5, 0.08), (0.75, 0.25), (0.46, 0.46)), _THREE_BOTTOM],
        "flat top": [line((0.22, 0.1), (0.75, 0.1), (0.46, 0.46)), _THREE_BOTTOM],
    },
    4: {
        "closed": [line((0.65, 0.92), (0.65, 0.08), (0.15, 0.65), (0.85, 0.65))],
        "open": [line((0.28, 0.08), (0.22, 0.58), (0.82, 0.58)), line((0.66, 0.25), (0.66, 0.92))],
    },
    5: {
        "plain": [
            line((0.75, 0.1), (0.3, 0.1), (0.26, 0.46)),
            curve((0.26, 0.46), (0.55, 0.38), (0.78, 0.62), (0.55, 0.9), (0.2, 0.82)),
        ]
    },
    6: {
        "plain": [
            curve(
                (0.7, 0.08),
                (0.42, 0.3),
                (0.25, 0.65),
                (0.45, 0.92),
                (0.72, 0.74),
                (0.52, 0.5),
                (0.27, 0.66),
            )
        ]
    },
    7: {"plain": [_SEVEN], "barred": [_SEVEN, line((0.38, 0.5), (0.72, 0.5))]},
    8: {
        "plain": [
            curve(
                (0.5, 0.5),
                (0.74, 0.3),
                (0.5, 0.08),
                (0.26, 0.3),
                (0.5, 0.5),
                (0.76, 0.72),
                (0.5, 0.92),
                (0.24, 0.72),
                (0.5, 0.5),
            )
        ]
    },
    9: {
        "straight tail": [_NINE_LOOP, line((0.72, 0.3), (0.68, 0.92))],
        "curved tail": [_NINE_LOOP, curve((0.72, 0.3), (0.7, 0.7), (0.45, 0.92))],
    },
}
"""Each digit's skeletons by name, in a unit box (x right, y down)."""


def draw_digits(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` digits of random classes, each from a random one of its skeletons drawn by a
    fresh random hand: (count x 28 x 28 uint8, their classes)."""
    labels = rng.integers(0, 10, size=count)
    images = [_draw(int(label), rng) for label in labels]
    return np.stack(images), labels


def draw_skeleton(skeleton: Glyph, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` drawings of one skeleton, each by a fresh random hand: count x 28 x 28 uint8."""
    return np.stack([render_glyph(skeleton, rng) for _ in range(count)])


def _draw(digit: int, rng: np.random.Generator) -> np.ndarray:
    skeletons = list(SKELETONS[digit].values())
    return render_glyph(skeletons[int(rng.integers(len(skeletons)))], rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="digits per skeleton")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--model", type=Path, default=None, help="model (default: the shipped one)")
    args = parser.parse_args()
    predictor = Predictor.load(args.model)
    rng = np.random.default_rng(args.seed)
    print(f"{'digit':<6}{'skeleton':<16}{'read right':>11}{'flagged':>9}  most read as")
    for digit, skeletons in SKELETONS.items():
        for name, skeleton in skeletons.items():
            said = predictor.predict(draw_skeleton(skeleton, args.count, rng))
            right = np.mean(said.digits == digit)
            flagged = np.mean(~said.is_digit)
            wrong = np.bincount(said.digits[said.digits != digit], minlength=10)
            other = (
                f"{int(wrong.argmax())} ({wrong.max() / args.count:.1%})" if wrong.any() else "-"
            )
            print(f"{digit:<6}{name:<16}{right:>11.1%}{flagged:>9.1%}  {other}")


if __name__ == "__main__":
    main()

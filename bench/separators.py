"""How well `read_number` reads numbers with a point, a comma or a dash between two digits.

Numbers of 3 to 6 digits with ordinary gaps (`digitlab.number_images.compose_number` with a
separator: a decimal point on the baseline, a comma reaching below it, a dash across the
middle, written in a wider gap with a pen about as wide as MNIST's), in every look, and the
same without a separator for comparison. The digits are MNIST *test* digits, or with
`--hand drawn` digits drawn afresh from stroke skeletons (`drawn_digits.py`). Prints, for
each separator, the share of numbers whose digits (`number`) read right and the share read
right as written (`text`, the separator in place), by look and over all looks. With
`--aslant DEGREES`, each image is turned by that angle, one way or the other in turn, as a
photograph taken askew shows a page.

    .venv/bin/python bench/separators.py [--per-cell 40] [--seed 0] [--hand mnist|drawn]
                                         [--aslant 0]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from digitlab.data.sources import load_mnist
from digitlab.errors import NoDigitFoundError
from digitlab.inference.predictor import Predictor
from digitlab.number_images import LOOKS, SEPARATORS, compose_number
from digitlab.reading import read_number
from drawn_digits import draw_digits

LENGTHS = (3, 6)
"""The numbers' shortest and longest lengths."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-cell", type=int, default=40, help="numbers per (look, separator) (default: 40)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--hand", choices=("mnist", "drawn"), default="mnist", help="MNIST test digits or drawn"
    )
    parser.add_argument(
        "--aslant", type=float, default=0.0, help="turn each image by this many degrees"
    )
    args = parser.parse_args()
    _, (x_test, y_test) = load_mnist()
    predictor = Predictor.load(threads=1)
    rng = np.random.default_rng(args.seed)
    tallies: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for look in LOOKS:
        for separator in (None, *SEPARATORS):
            for number in range(args.per_cell):
                length = int(rng.integers(LENGTHS[0], LENGTHS[1] + 1))
                if args.hand == "drawn":
                    digits, labels = draw_digits(length, rng)
                else:
                    picked = rng.integers(0, len(x_test), size=length)
                    digits, labels = x_test[picked], y_test[picked]
                turn = args.aslant if number % 2 else -args.aslant
                item = compose_number(digits, labels, rng, "ordinary", look, separator, turn)
                read_digits, read_text = _read(item.data, predictor)
                for key in ((look, separator or "none"), ("all looks", separator or "none")):
                    tally = tallies[key]
                    tally[0] += read_digits == item.number
                    tally[1] += read_text == item.text
                    tally[2] += 1
    print(f"{'look':<18}{'separator':<11}{'numbers':>8}{'digits right':>14}{'as written':>12}")
    for (look, separator), (digits_right, text_right, count) in sorted(
        tallies.items(), key=lambda item: (item[0][0] != "all looks", item[0])
    ):
        print(
            f"{look:<18}{separator:<11}{count:>8}"
            f"{digits_right / count:>14.1%}{text_right / count:>12.1%}"
        )


def _read(image: bytes | np.ndarray, predictor: Predictor) -> tuple[str, str]:
    """The number read from `image` and its text; both empty (wrong) where the reader
    finds no digit in it."""
    try:
        reading = read_number(image, predictor)
    except NoDigitFoundError:
        return "", ""
    return reading.number, reading.text


if __name__ == "__main__":
    main()

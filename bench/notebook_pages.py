"""Numbers written in notebooks and photographed on desks, read with and without the page
cleanup (issue 17's phone photos of paper).

Numbers of 2 to 6 MNIST *test* digits with ordinary gaps (`digitlab.number_images`) on blank
paper, on a ruled page, on a squared page, with a line under them, on a sheet
photographed with a strip of the desk beside it, and on a sheet lying on a darker desk
that shows all round it. Each is read twice by `read_number` with
the shipped model: as it is, and with the page cleanup switched off in this process (the
desk and rule removal of `images.page_edges` and `images.rules`, and the reader's dropping
of underlines), which is how these numbers read before it, and once more with only the
levelling of a turned page (`images.levelling`) switched off. With `--turned DEGREES`, each
page is photographed that far askew, one way and the other in turn. Prints whole-number
accuracy.

    .venv/bin/python bench/notebook_pages.py [--per-length 40] [--seed 0] [--turned 0]
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import numpy as np

import digitlab.images.mnist_style as mnist_style
import digitlab.reading.number as number_module
from digitlab.data.sources import load_mnist
from digitlab.errors import NoDigitFoundError
from digitlab.inference.predictor import Predictor
from digitlab.number_images import PAPER_LOOKS, ComposedNumber, compose_number, lying_on_a_desk
from digitlab.reading import read_number
from digitlab.tables import markdown_table

LENGTHS = range(2, 7)
ON_A_DESK = "sheet_on_a_desk"
"""Numbers on blank paper, the sheet lying on a darker desk that shows all round it."""


@contextlib.contextmanager
def without_cleanup() -> Iterator[None]:
    """Read as before the page cleanup: every step of it left out, in this process only."""
    kept = (mnist_style.remove_rules, mnist_style.remove_page_edges, number_module.drop_underlines)
    mnist_style.remove_rules = lambda ink, rules=None: ink
    mnist_style.remove_page_edges = lambda ink: ink
    number_module.drop_underlines = lambda pieces: pieces
    try:
        yield
    finally:
        mnist_style.remove_rules, mnist_style.remove_page_edges = kept[:2]
        number_module.drop_underlines = kept[2]


@contextlib.contextmanager
def without_levelling() -> Iterator[None]:
    """Read as before turned pages were levelled, in this process only."""
    kept = mnist_style.page_turn
    mnist_style.page_turn = lambda ink, rules=None: None
    try:
        yield
    finally:
        mnist_style.page_turn = kept


def _share_read(items: list[ComposedNumber], predictor: Predictor) -> float:
    return float(np.mean([_number(item.data, predictor) == item.number for item in items]))


def _number(data: bytes, predictor: Predictor) -> str:
    """The number `read_number` reads in `data`, empty when it finds no digit (as a page
    read without the cleanup can be: a desk left in makes the writing look like specks)."""
    try:
        return read_number(data, predictor).number
    except NoDigitFoundError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-length", type=int, default=40, help="numbers per look and length")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--turned", type=float, default=0.0, help="photograph each page this many degrees askew"
    )
    args = parser.parse_args()
    _, (x_test, y_test) = load_mnist()
    predictor = Predictor.load(threads=1)
    rows = []
    for look in ("plain", *PAPER_LOOKS, ON_A_DESK):
        rng = np.random.default_rng([args.seed, len(rows)])
        items = []
        for length in LENGTHS:
            for number in range(args.per_length):
                picked = rng.integers(0, len(x_test), size=length)
                turned = args.turned if number % 2 else -args.turned
                written = "plain" if look == ON_A_DESK else look
                item = compose_number(
                    x_test[picked], y_test[picked], rng, "ordinary", written, turned=turned
                )
                items.append(lying_on_a_desk(item, rng) if look == ON_A_DESK else item)
        cleaned = _share_read(items, predictor)
        with without_cleanup(), without_levelling():
            before = _share_read(items, predictor)
        with without_levelling():
            unlevelled = _share_read(items, predictor)
        rows.append([look, len(items), f"{before:.1%}", f"{unlevelled:.1%}", f"{cleaned:.1%}"])
        print(rows[-1], flush=True)
    headers = ["look", "numbers", "without the cleanup", "without levelling", "with both"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()

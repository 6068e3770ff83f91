"""Numbers written in notebooks and photographed on desks, read with and without the page
cleanup (issue 17's phone photos of paper).

Numbers of 2 to 6 MNIST *test* digits with ordinary gaps (`digitlab.number_images`) on blank
paper, on a ruled page, on a squared page, with a line under them, on a sheet
photographed with a strip of the desk beside it, and on a sheet lying on a darker desk
that shows all round it. Each is read twice by `read_number` with
the shipped model: as it is, and with the page cleanup switched off in this process (the
desk and rule removal of `images.page_edges` and `images.rules`, and the reader's dropping
of underlines), which is how these numbers read before it, and once more with only the
levelling of a turned page (`images.levelling`) switched off, and once with rules taken out
at one slant only (`PageRules.every_slant`). With `--turned DEGREES`, each page is
photographed that far askew, one way and the other in turn; with `--at-an-angle SHARE`, from
nearer its top or its bottom edge in turn, the far edge taking in that share of the width
more of the page (`photographed_at_an_angle`). Prints whole-number accuracy.

    .venv/bin/python bench/notebook_pages.py [--per-length 40] [--seed 0] [--turned 0]
        [--at-an-angle 0]
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

import digitlab.images.mnist_style as mnist_style
import digitlab.reading.number as number_module
from digitlab.data.sources import load_mnist
from digitlab.errors import NoDigitFoundError
from digitlab.images.rules import PageRules
from digitlab.inference.predictor import Predictor
from digitlab.number_images import (
    PAPER_LOOKS,
    ComposedNumber,
    compose_number,
    lying_on_a_desk,
    photographed_at_an_angle,
)
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


@contextlib.contextmanager
def at_one_slant() -> Iterator[None]:
    """Take out rules at the one slant found first, as before rules at other slants were
    looked for, in this process only."""
    kept = PageRules.every_slant

    def first_only(rules: PageRules) -> tuple[list[Any], list[Any]]:
        return [*filter(None, [rules.across])], [*filter(None, [rules.down])]

    PageRules.every_slant = first_only  # type: ignore[method-assign]
    try:
        yield
    finally:
        PageRules.every_slant = kept  # type: ignore[method-assign]


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
    parser.add_argument(
        "--at-an-angle",
        type=float,
        default=0.0,
        help="photograph each page from nearer one edge: the far edge takes in this share "
        "of the width more of the page",
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
                if look == ON_A_DESK:
                    item = lying_on_a_desk(item, rng)
                if args.at_an_angle:
                    narrowing = args.at_an_angle if number % 2 else -args.at_an_angle
                    item = photographed_at_an_angle(item, narrowing)
                items.append(item)
        cleaned = _share_read(items, predictor)
        with without_cleanup(), without_levelling():
            before = _share_read(items, predictor)
        with without_levelling():
            unlevelled = _share_read(items, predictor)
        with at_one_slant():
            one_slant = _share_read(items, predictor)
        shares = (before, unlevelled, one_slant, cleaned)
        rows.append([look, len(items), *(f"{share:.1%}" for share in shares)])
        print(rows[-1], flush=True)
    headers = [
        "look",
        "numbers",
        "without the cleanup",
        "without levelling",
        "rules at one slant",
        "now",
    ]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()

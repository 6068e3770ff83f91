"""Specks given back to their digit: the small bits of a digit's own ink that finding the
ink of a whole number drops.

`extract_ink` drops blobs under `SPECK_FRACTION` of the image's largest blob. In an image of
one digit that largest blob is the digit, so a light pen's broken-off bit of a 9's loop or
the dots of a faint 3 stay. In a number the largest blob may be a bold neighbour, or two
touching digits, and the same bits fall under the bar: the 9 is read as 7, the 3 as 2. So
the number's specks are kept aside, and once the digits are found each digit takes back the
specks in its reach that `to_mnist` would have kept for it alone: those `remove_specks`
keeps beside it (at least `SPECK_FRACTION` of its largest blob). Specks in no digit's reach
(dust, paper grain, a full stop) stay out.
"""

from __future__ import annotations

import numpy as np

from digitlab.images.mnist_style import remove_specks
from digitlab.reading.segment import Piece, from_mask

SPECK_REACH = 0.15
"""A speck belongs to a digit when its centre lies within this share of the typical digit
height of the digit's columns, and of the rows a whole digit would take from the digit's top
or from its bottom (the dots of a faint 3's lower half lie below its upper half)."""


def give_back_specks(
    digits: list[Piece], ink: np.ndarray, specks: list[Piece], height: float
) -> list[Piece]:
    """`digits`, each joined by those of the `specks` (blobs of the ink `extract_ink`
    dropped) in its reach that `remove_specks` keeps beside it, as it would for the digit
    alone; `ink` is all the ink, specks included. A speck in the reach of two digits goes
    to the nearer (`_owner`)."""
    nearby: list[list[Piece]] = [[] for _ in digits]
    for speck in specks:
        owner = _owner(speck, digits, height)
        if owner is not None:
            nearby[owner].append(speck)
    return [
        _keep_own(digit, extra, ink) if extra else digit
        for digit, extra in zip(digits, nearby, strict=True)
    ]


def _keep_own(digit: Piece, specks: list[Piece], ink: np.ndarray) -> Piece:
    """`digit` with those of `specks` that `remove_specks` keeps in their union; `digit`
    itself when it keeps none."""
    union = digit.union(*specks)
    kept = remove_specks(union.ink(ink)) > 0
    if np.count_nonzero(kept) <= np.count_nonzero(digit.mask):
        return digit
    return from_mask(kept, union.top, union.left) or digit


def _owner(speck: Piece, digits: list[Piece], height: float) -> int | None:
    """The index of the digit whose reach holds `speck`'s centre; if several, the one whose
    columns it lies nearest to (within both: the one whose middle it is nearer to), so that
    a bit beside a wide digit is not given to a thin neighbour."""
    reach = SPECK_REACH * height
    row, column = (speck.top + speck.bottom) / 2, speck.centre_x
    near = [
        (max(0.0, digit.left - column, column - digit.right), abs(column - digit.centre_x), index)
        for index, digit in enumerate(digits)
        if digit.left - reach <= column <= digit.right + reach
        and digit.bottom - height - reach <= row <= digit.top + height + reach
    ]
    return min(near)[2] if near else None

"""Specks given back to their digit: the small bits of a digit's own ink that finding the
ink of a whole number drops.

`extract_ink` drops blobs under `SPECK_FRACTION` of the image's largest blob. In an image of
one digit that largest blob is the digit, so a light pen's broken-off bit of a 9's loop or
the dots of a faint 3 stay. In a number the largest blob may be a bold neighbour, or two
touching digits, and the same bits fall under the bar: the 9 is read as 7, the 3 as 2. So
the number's specks are kept aside, and once the digits are found each digit takes back the
specks in its reach that `to_mnist` would have kept for it alone: those of at least
`SPECK_FRACTION` of its own largest blob. Specks in no digit's reach (dust, paper grain, a
full stop) stay out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from digitlab.images.mnist_style import SPECK_FRACTION
from digitlab.reading.segment import Piece

SPECK_REACH = 0.15
"""A speck belongs to a digit when its centre lies within this share of the typical digit
height of the digit's columns, and of the rows a whole digit would take from the digit's top
or from its bottom (the dots of a faint 3's lower half lie below its upper half)."""

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def give_back_specks(
    digits: list[Piece], ink: np.ndarray, specks: np.ndarray, height: float
) -> list[Piece]:
    """`digits` (pieces of `ink`), each joined by the specks (blobs of `specks`, the ink
    `extract_ink` dropped) in its reach and of at least `SPECK_FRACTION` of its own largest
    blob's ink; a speck in the reach of two digits goes to the nearer (`_owner`)."""
    labels, count = ndimage.label(specks > 0, structure=_EIGHT_CONNECTED)
    if count == 0:
        return digits
    masses = ndimage.sum_labels(specks, labels, index=np.arange(1, count + 1))
    owned: list[list[Piece]] = [[] for _ in digits]
    largest: dict[int, float] = {}
    for label, (rows, columns) in enumerate(ndimage.find_objects(labels), start=1):
        centre = ((rows.start + rows.stop) / 2, (columns.start + columns.stop) / 2)
        owner = _owner(centre, digits, height)
        if owner is None:
            continue
        if owner not in largest:
            largest[owner] = _largest_blob(digits[owner], ink)
        if masses[label - 1] >= SPECK_FRACTION * largest[owner]:
            owned[owner].append(Piece(rows.start, columns.start, labels[rows, columns] == label))
    result = []
    for digit, extra in zip(digits, owned, strict=True):
        for speck in extra:
            digit = digit.union(speck)
        result.append(digit)
    return result


def _owner(centre: tuple[float, float], digits: list[Piece], height: float) -> int | None:
    """The index of the digit whose reach holds a speck's `centre` (row, column); if
    several, the one whose columns it lies nearest to (within both: the one whose middle it
    is nearer to), so that a bit beside a wide digit is not given to a thin neighbour."""
    reach = SPECK_REACH * height
    row, column = centre
    near = [
        (max(0.0, digit.left - column, column - digit.right), abs(column - digit.centre_x), index)
        for index, digit in enumerate(digits)
        if digit.left - reach <= column <= digit.right + reach
        and digit.bottom - height - reach <= row <= digit.top + height + reach
    ]
    return min(near)[2] if near else None


def _largest_blob(piece: Piece, ink: np.ndarray) -> float:
    """The ink of the largest 8-connected blob of `piece`."""
    values = piece.ink(ink)
    labels, count = ndimage.label(piece.mask, structure=_EIGHT_CONNECTED)
    return float(ndimage.sum_labels(values, labels, index=np.arange(1, count + 1)).max())

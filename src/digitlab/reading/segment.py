"""The geometry of reading a number: a page's ink -> the pieces that may be digits.

The ink (from `images.extract_ink`) falls apart into connected blobs. A blob is usually
one digit, but a digit may be several blobs (a 5's flag, a 7's bar, ink broken by a light
pen) and one blob may be several digits (neighbours that touch or overlap). This module
finds the blobs, joins the pieces that geometry alone says belong together (one above the
other, or too short to be a digit), and proposes where a blob of several digits could be
cut: paths from top to bottom that cross as little ink as possible. Which cut is right,
and whether side-by-side pieces are one digit, is the classifier's call (`number`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

FRAGMENT_HEIGHT = 0.5
"""A piece shorter than this share of the typical digit height is part of a digit."""

STACKED_OVERLAP = 0.5
"""Pieces whose columns overlap by this share of the narrower one, one above the other,
are one digit (a 5's flag over its body, a 7's bar over its stem, a broken stroke) ..."""

STACKED_ROWS = 0.6
"""... when their rows overlap by at most this share of the shorter one (neighbours in a
number share nearly all their rows; a 7's bar and stem share half). Pieces wholly one
above the other are one digit when their columns overlap at all (a slanted 1 broken in
two)."""

UNDERLINE_HEIGHT = 0.25
"""An underline is at most this share of the typical digit height thick (its ink per
column), its middle at least as far below the middle of the writing ..."""

UNDERLINE_ASPECT = 4.0
"""... at least this many times as wide as its box is tall (a line under a number
photographed askew slants), and under two digits or more."""

MARK_HEIGHT = 0.5
"""A mark written between digits, with no other piece above or below it, is a separator
rather than a digit or a piece of one when it is a point or a comma: at most this share of
the typical digit height tall and `MARK_WIDTH` wide, at least `LEAST_MARK` tall and wide,
wholly below the middle of the writing (a comma is a stroke, its ink at least
`COMMA_LENGTH` times as long as it is wide, or reaches `COMMA_DROP` digit heights below
the baseline and is at least `COMMA_TAIL` times as long as wide) ..."""

MARK_WIDTH = 0.6

LEAST_MARK = 0.1
"""(About a stroke's width: smaller specks are dust, or bits of a digit a light pen broke.)"""

COMMA_LENGTH = 1.8

COMMA_DROP = 0.1

COMMA_TAIL = 1.3

DASH_HEIGHT = 0.25
"""... or a dash: at most this share of the typical digit height tall, `LEAST_DASH` to
`DASH_WIDTH` wide, at least `DASH_ASPECT` times as wide as tall, its centre at most
`DASH_OFFSET` digit heights from the middle of the writing."""

LEAST_DASH = 0.2

DASH_WIDTH = 0.8

DASH_OFFSET = 0.25

DASH_ASPECT = 1.5

CUT_STEP = 0.1
"""Cut paths start this far apart (a share of the typical digit height) and may wander as
far from their start."""

MIN_PART = 0.1
"""No part of a cut is narrower than this share of the typical digit height (a thin 1)."""

CUTS_PER_HEIGHT = 4.0
"""At most this many cut paths are kept per digit height of a piece's width."""

CUT_TURN_COST = 0.05
"""The cost of a diagonal step in a cut path, next to crossing full ink (1.0)."""

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Piece:
    """A set of ink pixels: `mask` (bool) over the box with corner (`top`, `left`)."""

    top: int
    left: int
    mask: np.ndarray

    @property
    def bottom(self) -> int:
        return self.top + int(self.mask.shape[0])

    @property
    def right(self) -> int:
        return self.left + int(self.mask.shape[1])

    @property
    def height(self) -> int:
        return int(self.mask.shape[0])

    @property
    def width(self) -> int:
        return int(self.mask.shape[1])

    @property
    def centre_x(self) -> float:
        return (self.left + self.right) / 2

    def ink(self, ink: np.ndarray) -> np.ndarray:
        """This piece's ink (float, cropped to its box), zero outside the piece."""
        box = ink[self.top : self.bottom, self.left : self.right]
        return np.where(self.mask, box, 0.0).astype(np.float32)

    def union(self, *others: Piece) -> Piece:
        """The piece holding the pixels of this one and `others`."""
        pieces = (self, *others)
        top, left = min(piece.top for piece in pieces), min(piece.left for piece in pieces)
        bottom, right = max(piece.bottom for piece in pieces), max(piece.right for piece in pieces)
        mask = np.zeros((bottom - top, right - left), bool)
        for piece in pieces:
            rows = slice(piece.top - top, piece.bottom - top)
            cols = slice(piece.left - left, piece.right - left)
            mask[rows, cols] |= piece.mask
        return Piece(top, left, mask)


@dataclass(frozen=True)
class Separator:
    """A mark written between digits, not a digit: `mark` is ".", "," or "-"."""

    mark: str
    piece: Piece


def from_mask(mask: np.ndarray, top: int = 0, left: int = 0) -> Piece | None:
    """The piece of the True pixels of `mask` (whose corner is at `top`, `left`), cropped
    to them; None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    cropped = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return Piece(top + int(rows[0]), left + int(cols[0]), cropped)


def blobs(ink: np.ndarray) -> list[Piece]:
    """The 8-connected blobs of nonzero ink, left to right."""
    labels, _ = ndimage.label(ink > 0, structure=_EIGHT_CONNECTED)
    pieces = []
    for number, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is not None:
            pieces.append(Piece(box[0].start, box[1].start, labels[box] == number))
    return left_to_right(pieces)


def left_to_right(pieces: list[Piece]) -> list[Piece]:
    """The pieces in reading order: by the middle of their columns."""
    return sorted(pieces, key=lambda piece: (piece.centre_x, piece.top))


def typical_height(pieces: list[Piece]) -> float:
    """The height of a whole digit here: the median of the pieces at least half as tall
    as the tallest (shorter ones are fragments, or digits drawn small)."""
    tallest = max(piece.height for piece in pieces)
    return float(np.median([piece.height for piece in pieces if 2 * piece.height >= tallest]))


def _overlap(start_a: int, end_a: int, start_b: int, end_b: int) -> int:
    return max(0, min(end_a, end_b) - max(start_a, start_b))


def _stacked(a: Piece, b: Piece) -> bool:
    columns = _overlap(a.left, a.right, b.left, b.right)
    rows = _overlap(a.top, a.bottom, b.top, b.bottom)
    if rows == 0:
        return columns > 0
    return columns >= STACKED_OVERLAP * min(a.width, b.width) and rows <= STACKED_ROWS * min(
        a.height, b.height
    )


def drop_underlines(pieces: list[Piece]) -> list[Piece]:
    """The pieces without a line drawn under the number: a thin, long piece below the
    middle of the writing, straight or aslant, with two pieces or more above it. (Left in,
    it would be read as a digit or joined to one; a printed rule is already gone,
    `images.rules`.)"""
    if len(pieces) < 3:
        return pieces
    height = typical_height(pieces)
    middle = float(np.median([(piece.top + piece.bottom) / 2 for piece in pieces]))

    def underline(piece: Piece) -> bool:
        above = sum(
            _overlap(piece.left, piece.right, other.left, other.right) > 0
            for other in pieces
            if other is not piece
        )
        thickness = float(piece.mask.sum()) / piece.width
        return (
            thickness <= UNDERLINE_HEIGHT * height
            and piece.width >= UNDERLINE_ASPECT * piece.height
            and (piece.top + piece.bottom) / 2 > middle + UNDERLINE_HEIGHT * height
            and above >= 2
        )

    return [piece for piece in pieces if not underline(piece)]


def split_off_separators(pieces: list[Piece]) -> tuple[list[Piece], list[Separator]]:
    """The pieces that may be digits, and apart from them the separators written between
    digits (a decimal point, a thousands comma, a dash in a date), which would otherwise
    join a neighbour as a fragment and be read as a digit or a piece of one."""
    if len(pieces) < 3:
        return pieces, []
    separators = separators_among(pieces, pieces)
    return not_separators(pieces, separators), separators


def not_separators(pieces: list[Piece], separators: list[Separator]) -> list[Piece]:
    """`pieces` less those that are the `separators`' marks."""
    marked = {id(separator.piece) for separator in separators}
    return [piece for piece in pieces if id(piece) not in marked]


def separators_among(marks: list[Piece], pieces: list[Piece]) -> list[Separator]:
    """Those of `marks` that are separators written between the digits among `pieces`
    (`marks` may be some of `pieces`, or specks apart from them). Each is judged against
    the middle and the baseline of the writing where it stands: straight lines fitted
    through the digits' middles and bottoms, so that a number written aslant, as a photo
    taken askew shows it, is judged as a straight one."""
    height = typical_height(pieces)
    digits = [piece for piece in pieces if piece.height >= FRAGMENT_HEIGHT * height]
    centres = [digit.centre_x for digit in digits]
    if not marks or len(set(centres)) < 2:
        return []  # nothing to judge, or no two digits a mark could stand between
    middle = np.polyfit(centres, [(digit.top + digit.bottom) / 2 for digit in digits], 1)
    baseline = np.polyfit(centres, [digit.bottom for digit in digits], 1)
    separators = []
    for mark in marks:
        others = [piece for piece in pieces if piece is not mark]
        if not _stands_between(mark, others, digits):
            continue
        kind = _separator_kind(
            mark,
            height,
            float(np.polyval(middle, mark.centre_x)),
            float(np.polyval(baseline, mark.centre_x)),
        )
        if kind is not None:
            separators.append(Separator(kind, mark))
    return separators


def _stands_between(mark: Piece, others: list[Piece], digits: list[Piece]) -> bool:
    """Whether `mark` shares no column with any of `others` and has a digit on each side."""
    if any(_overlap(mark.left, mark.right, other.left, other.right) for other in others):
        return False
    return any(digit.right <= mark.left for digit in digits) and any(
        digit.left >= mark.right for digit in digits
    )


def _separator_kind(mark: Piece, height: float, middle: float, baseline: float) -> str | None:
    """The separator `mark` is by its size and place (".", "," or "-"), or None."""
    if (
        mark.height <= DASH_HEIGHT * height
        and max(LEAST_DASH * height, DASH_ASPECT * mark.height) <= mark.width <= DASH_WIDTH * height
        and abs((mark.top + mark.bottom) / 2 - middle) <= DASH_OFFSET * height
    ):
        return "-"
    if not LEAST_MARK * height <= min(mark.height, mark.width) or mark.top < middle:
        return None
    if mark.height > MARK_HEIGHT * height or mark.width > MARK_WIDTH * height:
        return None
    elongation = _elongation(mark)
    if elongation >= COMMA_LENGTH or (
        mark.bottom >= baseline + COMMA_DROP * height and elongation >= COMMA_TAIL
    ):
        return ","
    return "."


def _elongation(piece: Piece) -> float:
    """How many times longer than wide the piece's pixels are: the ratio of the spreads
    along its principal axes (1 for a round point)."""
    rows, columns = np.nonzero(piece.mask)
    if rows.size < 3:
        return 1.0
    spreads = np.linalg.eigvalsh(np.cov(np.stack([rows, columns]).astype(np.float64)))
    return float(np.sqrt(spreads[1] / max(spreads[0], 1e-6)))


def join_fragments(pieces: list[Piece]) -> list[Piece]:
    """Join the pieces that geometry says are one digit: one above the other, or a piece
    too short to be a digit with the piece its columns overlap most (or the nearest, when
    it overlaps none). Returns the joined pieces left to right."""
    pieces = left_to_right(pieces)
    joined = True
    while joined and len(pieces) > 1:
        joined = False
        height = typical_height(pieces)
        for piece in pieces:
            partner = _partner(piece, pieces, height)
            if partner is not None:
                others = [other for other in pieces if other is not piece and other is not partner]
                pieces = left_to_right([*others, piece.union(partner)])
                joined = True
                break
    return pieces


def _partner(piece: Piece, pieces: list[Piece], height: float) -> Piece | None:
    """The piece `piece` belongs with, or None when it stands as a digit on its own."""
    others = [other for other in pieces if other is not piece]
    for other in others:
        if _stacked(piece, other):
            return other
    if piece.height >= FRAGMENT_HEIGHT * height:
        return None

    def distance(other: Piece) -> float:
        columns = _overlap(piece.left, piece.right, other.left, other.right)
        if columns:
            return -columns
        return float(max(other.left - piece.right, piece.left - other.right))

    return min(others, key=distance)


def cut_seams(piece: Piece, ink: np.ndarray, height: float) -> list[np.ndarray]:
    """Where `piece` could be cut into digits: paths from top to bottom that cross little
    ink. A path starts every `CUT_STEP` digit heights across the piece and may wander as
    far; of paths closer than that, only the cheapest is kept, and at most
    `CUTS_PER_HEIGHT` per digit height of width. Returns the seams left to right, each a
    column per row: its pixel and everything right of it are on the right side."""
    local_ink = piece.ink(ink)
    step = max(1.0, CUT_STEP * height)
    starts = np.arange(MIN_PART * height, piece.width - MIN_PART * height + 1, step)
    if starts.size == 0:
        return []
    inside = (MIN_PART * height, piece.width - 1 - MIN_PART * height)
    paths, totals = _cheapest_seams(local_ink, starts, step, inside)
    centres = paths.mean(axis=1)
    kept: list[int] = []
    for index in np.argsort(totals, kind="stable"):
        if all(abs(centres[index] - centres[other]) >= step for other in kept):
            kept.append(int(index))
    kept = sorted(
        kept[: max(1, round(CUTS_PER_HEIGHT * piece.width / height))], key=centres.__getitem__
    )
    return [paths[index] for index in kept]


def between(piece: Piece, left: np.ndarray | None, right: np.ndarray | None) -> Piece | None:
    """The part of `piece` right of seam `left` and left of seam `right` (None: its edge)."""
    columns = np.arange(piece.width)[np.newaxis, :]
    mask = piece.mask.copy()
    if left is not None:
        mask &= columns >= left[:, np.newaxis]
    if right is not None:
        mask &= columns < right[:, np.newaxis]
    return from_mask(mask, piece.top, piece.left)


def _cheapest_seams(
    cost: np.ndarray, starts: np.ndarray, band: float, inside: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """For each start column, the path from top to bottom (one column per row, steps of at
        most one column) that crosses the least ink within `band` columns of its start and
    between the columns `inside` (a cut by the edge would cut nothing off), by
        dynamic programming one row at a time, all starts at once. Returns (K x height columns,
        K total costs)."""
    height, width = cost.shape
    columns = np.arange(width)
    allowed = (np.abs(columns[np.newaxis, :] - starts[:, np.newaxis]) <= band) & (
        (columns >= inside[0]) & (columns <= inside[1])
    )
    barred = np.where(allowed, 0.0, np.inf)
    row_costs = cost[:, np.newaxis, :] + barred
    total = row_costs[0]
    steps = np.ones((height, len(starts), width), np.int8)
    # Arriving from the column left of this one (step 0) or right of it (step 2); the edge
    # columns have no such neighbour.
    from_left = np.full((len(starts), width), np.inf)
    from_right = np.full((len(starts), width), np.inf)
    for row in range(1, height):
        np.add(total[:, :-1], CUT_TURN_COST, out=from_left[:, 1:])
        np.add(total[:, 1:], CUT_TURN_COST, out=from_right[:, :-1])
        # The cheapest of left, straight, right; on a tie the first of them, as argmin.
        straight = total < from_left
        best = np.minimum(from_left, total)
        right = from_right < best
        steps[row] = np.where(right, 2, straight)
        total = np.minimum(best, from_right) + row_costs[row]
    seams = np.zeros((len(starts), height), np.int64)
    seams[:, -1] = total.argmin(axis=1)
    candidates = np.arange(len(starts))
    for row in range(height - 1, 0, -1):
        seams[:, row - 1] = seams[:, row] + steps[row, candidates, seams[:, row]] - 1
    return seams, total.min(axis=1)

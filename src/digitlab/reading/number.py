"""Reading a whole number: an image -> its digits left to right, each with a box and a
confidence.

The ink is found as `to_mnist` finds it (`extract_ink`), cut into pieces by `segment`,
and every piece is normalised as `to_mnist` normalises a digit (`normalize_digit`) before
the classifier sees it. The classifier also settles what geometry cannot: side-by-side
pieces are one digit when the joined piece is a more confident digit than the two apart,
and a wide blob is read as the run of parts between its candidate seams that the
classifier finds most likely, with a prior against parts too wide to be one digit (the
classifier-scored cut search of the issue). A model with a not-a-digit head also says how
much each candidate looks like a digit, and the part scorer, trained on the cut search's
own candidates and on the uncut pieces alone, how likely each is one whole digit rather
than a half or a pair; a small piece it finds no whole digit is a stray stroke, joined to
a neighbour.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from digitlab.images import (
    ImageSource,
    decode,
    find_ink,
    normalize_digit,
    read_header,
    to_grayscale,
)
from digitlab.images.levelling import Turn
from digitlab.reading.part_scorer import NOT_WHOLE, shipped_part_scorer
from digitlab.reading.part_view import part_views
from digitlab.reading.segment import (
    Piece,
    Separator,
    between,
    blobs,
    cut_seams,
    drop_underlines,
    from_mask,
    join_fragments,
    left_to_right,
    not_separators,
    separators_among,
    split_off_separators,
    typical_height,
)
from digitlab.reading.specks import give_back_specks

if TYPE_CHECKING:
    from PIL import Image

    from digitlab.inference.predictor import Predictor

SPLIT_WIDTH = 0.6
"""Blobs at least this wide (a share of the typical digit height) may be several digits."""

SURELY_WHOLE = 0.999
"""A blob the part scorer finds one whole digit at least this surely is not cut (weighing
its cuts would take ten times as long)."""

MAX_PART_WIDTH = 2.3
"""No part of a cut blob is wider than this share of the typical digit height."""

WIDE_PART = 2.0
"""A part wider than this share of the typical digit height is rarely one digit ..."""

WIDE_COST = 20.0
"""... and each digit height of width beyond it costs this much log probability (two
touching digits are read with confidence as one wide digit otherwise)."""

MIN_INK_SHARE = 0.1
"""A part of a cut blob holds at least this share of the blob's ink per digit height of
its width: no sliver of a stroke, but a thin 1 in a long run of touching digits."""

JOIN_WIDTH = 1.1
"""Side-by-side pieces are tried as one digit only when together at most this wide."""

JOIN_GAP = 0.1
"""... and at most this far apart (a share of the typical digit height)."""

STRAY_INK = 0.3
"""A digit read from a whole piece (not cut from a blob) holding less ink than this share
of the median digit's ..."""

STRAY_WHOLE = 0.5
"""... that the part scorer, seeing it with the ink around it, finds less likely than this
to be one whole digit is a stray stroke of a neighbour (a dot beside a 4, a 1's second
stroke drawn apart) ..."""

STRAY_GAP = 0.5
"""... and joins whichever neighbour at most this far from it (a share of the typical
digit height) the classifier finds the more confident digit with it."""


@dataclass(frozen=True)
class DigitReading:
    """One digit of a number: the digit (the best guess, even when the part is not a
    digit), its probability, every class's probability, its box (x0, y0, x1, y1; x1 and
    y1 exclusive) in the original image's pixels, the 28x28 uint8 image the model saw,
    its digit score and whether that reached the predictor's not-digit threshold.

    A digit from a blob the reader weighed cutting (one at least `SPLIT_WIDTH` digit heights
    wide) is read by the classifier and the part scorer together: its probabilities are
    the normalised product of both networks' ten. Any other digit, and the digit of an
    image of one digit, has the classifier's own."""

    digit: int
    confidence: float
    probabilities: np.ndarray
    box: tuple[int, int, int, int]
    image: np.ndarray
    digit_score: float
    is_digit: bool


@dataclass(frozen=True)
class NumberReading:
    """A number read from an image: its digits as a string, the chance that all of them are
    right (the product of their confidences), each digit left to right, the image's size
    (width, height) in pixels, which the boxes refer to, and the number as written: its
    digits with the points, commas and dashes written between them ("12.50" where
    `number` is "1250")."""

    number: str
    confidence: float
    digits: tuple[DigitReading, ...]
    size: tuple[int, int]
    text: str


def read_number(
    image: ImageSource,
    predictor: Predictor | None = None,
    name: str | None = None,
    max_memory_bytes: int | None = None,
) -> NumberReading:
    """Read the number written in `image`: digits left to right, each with a box.

    `image` is what `to_mnist` takes (a path, an image file's bytes, a PIL image or a pixel
    array); `predictor` the model (default: the shipped one, loaded once); `name` and
    `max_memory_bytes` as for `to_mnist`. An image of one digit reads as a one-digit number,
    the digit `Predictor.predict_files` gives. Each digit also says how digit-like it is
    (`digit_score`) and whether that reaches the predictor's `not_digit_threshold`.
    Raises `to_mnist`'s errors: `NotAnImageError`, `CorruptImageError`,
    `ImageTooLargeError`, and `NoDigitFoundError` for a blank image.
    """
    if name is None:
        name = str(image) if isinstance(image, (str, os.PathLike)) else "the image"
    if predictor is None:
        predictor = shipped_predictor()
    decoded = decode(image, name, max_memory_bytes)
    size = _original_size(image, decoded, name)
    gray = to_grayscale(decoded, name)
    found = find_ink(gray, name)
    ink, specks = found.ink, found.specks
    scorer = _Scorer(ink, predictor)
    pieces, separators = find_digits(ink, scorer)
    if len(pieces) == 1:
        # Exactly what `to_mnist` gives: all the ink, specks it keeps included.
        pieces, separators = [from_mask(ink > 0) or pieces[0]], []
        scorer.use_all_ink(pieces[0])
    else:
        speck_pieces = blobs(specks)
        marks = separators_among(speck_pieces, [*pieces, *(mark.piece for mark in separators)])
        separators += marks
        pieces = scorer.give_back_specks(pieces, specks, not_separators(speck_pieces, marks))
    scorer.score(pieces)
    frame = _Frame(size, (int(gray.shape[0]), int(gray.shape[1])), found.turn)
    digits = tuple(scorer.reading(piece, frame.box(piece)) for piece in pieces)
    confidence = float(np.prod([digit.confidence for digit in digits]))
    number = "".join(str(digit.digit) for digit in digits)
    return NumberReading(number, confidence, digits, size, _as_written(pieces, digits, separators))


@functools.cache
def shipped_predictor() -> Predictor:
    """The shipped model, loaded on first use and kept (loading takes longer than reading)."""
    from digitlab.inference.predictor import Predictor

    return Predictor.load()


def find_digits(ink: np.ndarray, scorer: _Scorer) -> tuple[list[Piece], list[Separator]]:
    """The pieces of `ink` that are one digit each, left to right, and the separators
    written between them."""
    pieces, separators = _pieces(ink, scorer)
    height = typical_height(pieces)
    digits: list[Piece] = []
    uncut: list[Piece] = []
    for piece in pieces:
        parts = _segment(piece, ink, scorer, height)
        digits.extend(parts)
        if parts[0] is piece:
            uncut.append(piece)
    return _join_strays(left_to_right(digits), uncut, scorer, height), separators


def cut_candidates(
    ink: np.ndarray, predictor: Predictor
) -> Iterator[tuple[Piece, list[Piece], float]]:
    """Each piece of `ink` with the candidates the part scorer judges in it, and the typical
    digit height: what the part scorer is trained on. A piece that may be several digits
    brings its cut search's candidate parts; any other is its own one candidate, judged
    alone as when the reader asks whether it is a stray."""
    pieces, _ = _pieces(ink, _Scorer(ink, predictor))
    height = typical_height(pieces)
    for piece in pieces:
        cut = cut_parts(piece, ink, height)
        yield piece, [piece] if cut is None else list(cut[0].values()), height


def _pieces(ink: np.ndarray, scorer: _Scorer) -> tuple[list[Piece], list[Separator]]:
    """The blobs of `ink` joined into pieces that may each be one digit or several, and
    the separators between them."""
    pieces, separators = split_off_separators(drop_underlines(blobs(ink)))
    return _join_side_by_side(join_fragments(pieces), scorer), separators


def _as_written(
    pieces: list[Piece], digits: tuple[DigitReading, ...], separators: list[Separator]
) -> str:
    """The digits read with the separators written between them, left to right."""
    marks = [(separator.piece.centre_x, separator.mark) for separator in separators]
    marks += [
        (piece.centre_x, str(digit.digit)) for piece, digit in zip(pieces, digits, strict=True)
    ]
    return "".join(mark for _, mark in sorted(marks, key=lambda mark: mark[0]))


def _join_side_by_side(pieces: list[Piece], scorer: _Scorer) -> list[Piece]:
    """Join neighbours (close, and together no wider than a digit) while one of them joined
    is a more confident digit than both apart: a 0 or a 4 drawn in two strokes."""
    while len(pieces) > 1:
        height = typical_height(pieces)
        pairs = [
            (index, pieces[index].union(pieces[index + 1]))
            for index in range(len(pieces) - 1)
            if pieces[index + 1].left - pieces[index].right <= JOIN_GAP * height
            and max(pieces[index + 1].right, pieces[index].right)
            - min(pieces[index].left, pieces[index + 1].left)
            <= JOIN_WIDTH * height
        ]
        if not pairs:
            return pieces
        confidences = scorer.confidences([*pieces, *(union for _, union in pairs)])
        apart, joined = confidences[: len(pieces)], confidences[len(pieces) :]
        gains = [
            (float(joined[number]), index, union)
            for number, (index, union) in enumerate(pairs)
            if joined[number] > apart[index] * apart[index + 1]
            and joined[number] > max(apart[index], apart[index + 1])
        ]
        if not gains:
            return pieces
        _, index, union = max(gains, key=lambda gain: gain[0])
        pieces = [*pieces[:index], union, *pieces[index + 2 :]]
    return pieces


def _join_strays(
    digits: list[Piece], uncut: list[Piece], scorer: _Scorer, height: float
) -> list[Piece]:
    """`digits` (left to right) with each stray joined to the neighbour that the classifier
    finds the more confident digit with it. A stray is one of the `uncut` pieces with
    under `STRAY_INK` of the median digit's ink that the part scorer finds unlikely to be
    one whole digit (`STRAY_WHOLE`), with a neighbour within `STRAY_GAP` digit heights:
    a stroke broken off its digit that the side-by-side joins left apart, since it is a
    confident 1 on its own."""
    while len(digits) > 1:
        stray = _stray(digits, uncut, scorer, height)
        if stray is None:
            return digits
        index, neighbours = stray
        unions = [digits[index].union(digits[other]) for other in neighbours]
        best = int(np.argmax(scorer.confidences(unions)))
        first = min(index, neighbours[best])
        digits = [*digits[:first], unions[best], *digits[first + 2 :]]
    return digits


def _stray(
    digits: list[Piece], uncut: list[Piece], scorer: _Scorer, height: float
) -> tuple[int, list[int]] | None:
    """The stray among `digits` with the least ink, and its neighbours close enough to
    join (their indices); None when there is none."""
    inks = np.array([digit.mask.sum() for digit in digits])
    small = [
        index
        for index, digit in enumerate(digits)
        if inks[index] < STRAY_INK * np.median(inks) and any(digit is piece for piece in uncut)
    ]
    if not small:
        return None
    whole = scorer.wholeness_alone([digits[index] for index in small], height)
    strays = [index for index, chance in zip(small, whole, strict=True) if chance < STRAY_WHOLE]
    for index in sorted(strays, key=lambda index: inks[index]):
        neighbours = [
            other
            for other in (index - 1, index + 1)
            if 0 <= other < len(digits) and _gap(digits[index], digits[other]) <= STRAY_GAP * height
        ]
        if neighbours:
            return index, neighbours
    return None


def _gap(a: Piece, b: Piece) -> int:
    """The columns between two pieces (negative when they share columns)."""
    return max(b.left - a.right, a.left - b.right)


def _segment(piece: Piece, ink: np.ndarray, scorer: _Scorer, height: float) -> list[Piece]:
    """`piece` read as its most likely run of digits: every way to cut it along its
    candidate seams into parts no wider than `MAX_PART_WIDTH` is weighed, and the best sum
    of the parts' scores wins (dynamic programming, left to right). A part scores the log
    of the classifier's confidence in it, less `WIDE_COST` for width beyond `WIDE_PART`,
    plus the log of the part scorer's chance that it is one whole digit (which sees the ink
    around the part: half of a wide 0 is a confident digit to the classifier alone). The
    part scorer sees every part in one batch; the classifier only the parts it needs to.
    A blob too narrow to be two digits, or one the part scorer finds `SURELY_WHOLE`, stays
    whole without its cuts weighed."""
    if piece.width < SPLIT_WIDTH * height:
        return [piece]
    if scorer.wholeness(piece, [piece], height)[0] >= SURELY_WHOLE:
        return [piece]
    cut = cut_parts(piece, ink, height)
    if cut is None:
        return [piece]
    parts, last = cut
    listed = list(parts.values())
    whole = scorer.wholeness(piece, listed, height)
    widths = np.array([part.width for part in listed]) / height
    bounds = np.log(np.maximum(whole, 1e-12)) - WIDE_COST * np.maximum(0.0, widths - WIDE_PART)
    edges = _best_cut(parts, last, bounds, scorer)
    if edges is None:
        return [piece]
    return [parts[edge] for edge in edges]


def _best_cut(
    parts: dict[tuple[int, int], Piece],
    last: int,
    bounds: np.ndarray,
    scorer: _Scorer,
) -> list[tuple[int, int]] | None:
    """The edges of the best path through `parts` (node 0 -> `last`), each part scoring its
    bound plus the log of the classifier's confidence in it; None when no path joins them.

    The classifier is asked only about the parts on the best path so far, until that path
    holds none unasked. The bound of an unasked part counts its confidence as 1, which no
    answer exceeds, so that path is the best of all: the same answer as asking about every
    part, with a fraction of them asked."""
    listed = list(parts.values())
    index = {edge: number for number, edge in enumerate(parts)}
    scores = bounds.copy()
    asked = np.zeros(len(listed), bool)
    while True:
        path = _best_path(dict(zip(parts, scores.tolist(), strict=True)), last)
        if path is None:
            return None
        edges = list(zip(path, path[1:], strict=False))
        ask = np.array([index[edge] for edge in edges if not asked[index[edge]]], np.int64)
        if not ask.size:
            return edges
        confidences = scorer.confidences([listed[number] for number in ask])
        scores[ask] += np.log(np.maximum(confidences, 1e-12))
        asked[ask] = True


def cut_parts(
    piece: Piece, ink: np.ndarray, height: float
) -> tuple[dict[tuple[int, int], Piece], int] | None:
    """The candidate digits of a blob that may be several: the parts between any two of
    its seams (node 0 is its left edge, node `last` its right edge), each no wider than
    `MAX_PART_WIDTH` digit heights and holding at least `MIN_INK_SHARE` of its ink per
    digit height of its width (of all its ink, when it is narrower than that).
    Returns (parts by (start node, end node), last), or None when `piece` is too narrow
    to be cut or has no seam."""
    if piece.width < SPLIT_WIDTH * height:
        return None
    seams = cut_seams(piece, ink, height)
    if not seams:
        return None
    least_ink = MIN_INK_SHARE * piece.mask.sum() / max(1.0, piece.width / height)
    nodes: list[np.ndarray | None] = [None, *seams, None]
    centres = [0.0, *(float(seam.mean()) for seam in seams), float(piece.width)]
    parts: dict[tuple[int, int], Piece] = {}
    for start in range(len(nodes) - 1):
        for end in range(start + 1, len(nodes)):
            if centres[end] - centres[start] > MAX_PART_WIDTH * height:
                break
            part = between(piece, nodes[start], nodes[end])
            if part is not None and part.mask.sum() >= least_ink:
                parts[start, end] = part
    return parts, len(nodes) - 1


def _best_path(scores: dict[tuple[int, int], float], last: int) -> list[int] | None:
    """The path of nodes 0 -> `last` whose edges (start, end) have the highest summed
    score; None when no path joins them."""
    best = [0.0] + [-np.inf] * last
    back = [0] * (last + 1)
    for (start, end), score in sorted(scores.items(), key=lambda item: item[0][1]):
        if best[start] + score > best[end]:
            best[end], back[end] = best[start] + score, start
    if best[last] == -np.inf:
        return None
    path = [last]
    while path[-1] > 0:
        path.append(back[path[-1]])
    return path[::-1]


class _Scorer:
    """The classifier's view of pieces of one image's ink: each piece normalised as
    `to_mnist` normalises a digit, predicted once (answers are kept by piece)."""

    def __init__(self, ink: np.ndarray, predictor: Predictor) -> None:
        self._ink = ink
        self._predictor = predictor
        self._weigh_digit_score = predictor.has_not_digit_head
        self._known: dict[tuple[int, int, bytes, tuple[int, int]], _Scored] = {}
        # The part scorer's ten digit probabilities of each part the cut search weighed.
        self._in_context: dict[tuple[int, int, bytes, tuple[int, int]], np.ndarray] = {}

    @staticmethod
    def _key(piece: Piece) -> tuple[int, int, bytes, tuple[int, int]]:
        return (piece.top, piece.left, piece.mask.tobytes(), (piece.height, piece.width))

    def score(self, pieces: list[Piece]) -> None:
        """Predict the pieces not yet predicted, all in one classifier call."""
        new = {self._key(piece): piece for piece in pieces if self._key(piece) not in self._known}
        if not new:
            return
        images = np.stack([normalize_digit(piece.ink(self._ink)) for piece in new.values()])
        for key, scored in zip(new, _scored(images, self._predictor), strict=True):
            self._known[key] = scored

    def confidences(self, pieces: list[Piece]) -> np.ndarray:
        """How surely each piece is one digit: its top probability, times its digit score
        when the model has a not-a-digit head (which scores halves of digits, slivers and
        merged pairs low, where the ten probabilities alone may still be confident)."""
        self.score(pieces)
        known = [self._known[self._key(piece)] for piece in pieces]
        confidences = np.array([float(scored.probabilities.max()) for scored in known])
        if self._weigh_digit_score:
            confidences *= np.array([scored.digit_score for scored in known])
        return confidences

    def wholeness(self, blob: Piece, parts: list[Piece], height: float) -> np.ndarray:
        """The part scorer's chance that each of the cut search's `parts` of `blob` is one
        whole digit; its digit probabilities are kept for reading the parts."""
        probabilities = shipped_part_scorer().probabilities(
            part_views(self._ink, blob, parts, height)
        )
        for part, row in zip(parts, probabilities, strict=True):
            self._in_context[self._key(part)] = row[:NOT_WHOLE]
        return 1.0 - probabilities[:, NOT_WHOLE]

    def wholeness_alone(self, pieces: list[Piece], height: float) -> np.ndarray:
        """The part scorer's chance that each piece, seen with the ink around it as the cut
        search's parts are, is one whole digit (one call for all of them)."""
        views = np.concatenate([part_views(self._ink, piece, [piece], height) for piece in pieces])
        probabilities = shipped_part_scorer().probabilities(views)
        return 1.0 - probabilities[:, NOT_WHOLE]

    def give_back_specks(
        self, digits: list[Piece], specks: np.ndarray, candidates: list[Piece]
    ) -> list[Piece]:
        """`digits`, each with those of the `candidates` (blobs of `specks`, the ink
        `extract_ink` dropped) that are its own (`specks.give_back_specks`); the specks'
        ink joins the scorer's, and a digit that takes specks keeps the part scorer's
        probabilities of it."""
        self._ink = self._ink + specks
        given = give_back_specks(digits, self._ink, candidates, typical_height(digits))
        for old, new in zip(digits, given, strict=True):
            if new is not old and self._key(old) in self._in_context:
                self._in_context[self._key(new)] = self._in_context[self._key(old)]
        return given

    def use_all_ink(self, piece: Piece) -> None:
        """Score `piece` from all the ink in its box, as `to_mnist` does (specks kept), by
        the classifier alone, as `predict` would."""
        self._known.pop(self._key(piece), None)
        self._in_context.pop(self._key(piece), None)
        image = normalize_digit(self._ink)
        self._known[self._key(piece)] = _scored(image[np.newaxis], self._predictor)[0]

    def reading(self, piece: Piece, box: tuple[int, int, int, int]) -> DigitReading:
        """The piece's digit, with its `box` in the image's pixels."""
        self.score([piece])
        scored = self._known[self._key(piece)]
        probabilities = scored.probabilities
        in_context = self._in_context.get(self._key(piece))
        if in_context is not None:
            joint = probabilities * in_context
            probabilities = (joint / max(float(joint.sum()), 1e-30)).astype(np.float32)
        digit = int(probabilities.argmax())
        return DigitReading(
            digit,
            float(probabilities[digit]),
            probabilities,
            box,
            scored.image,
            scored.digit_score,
            scored.is_digit,
        )


@dataclass(frozen=True)
class _Frame:
    """Where the reader's pixels lie in the image: the image is `size` (width, height)
    pixels, read at `working` (rows, columns), and levelled there by `turn` (or not)."""

    size: tuple[int, int]
    working: tuple[int, int]
    turn: Turn | None

    def box(self, piece: Piece) -> tuple[int, int, int, int]:
        """The box (x0, y0, x1, y1; x1 and y1 exclusive) around `piece`'s ink in the
        image's pixels; around the ink itself, turned back, when the page was levelled."""
        top, left = float(piece.top), float(piece.left)
        bottom, right = float(piece.bottom), float(piece.right)
        if self.turn is not None:
            rows, columns = np.nonzero(piece.mask)
            image_rows, image_columns = self.turn.to_image(
                rows + float(piece.top), columns + float(piece.left)
            )
            top, left = float(image_rows.min()), float(image_columns.min())
            bottom, right = float(image_rows.max()) + 1, float(image_columns.max()) + 1
        across, down = self.size[0] / self.working[1], self.size[1] / self.working[0]
        return (
            max(0, int(np.floor(left * across))),
            max(0, int(np.floor(top * down))),
            min(self.size[0], int(np.ceil(right * across))),
            min(self.size[1], int(np.ceil(bottom * down))),
        )


@dataclass(frozen=True)
class _Scored:
    """What the classifier said about one piece, and the 28x28 image it saw."""

    image: np.ndarray
    probabilities: np.ndarray
    digit_score: float
    is_digit: bool


def _scored(images: np.ndarray, predictor: Predictor) -> list[_Scored]:
    """The classifier's answer for each of N 28x28 images, in order."""
    predictions = predictor.predict(images)
    return [
        _Scored(image, probabilities, float(score), bool(decision))
        for image, probabilities, score, decision in zip(
            images,
            predictions.probabilities,
            predictions.digit_scores,
            predictions.is_digit,
            strict=True,
        )
    ]


def _original_size(
    image: ImageSource, decoded: Image.Image | np.ndarray, name: str
) -> tuple[int, int]:
    """The image's upright (width, height): from the file's header for a path or bytes,
    since a large JPEG decodes straight to a reduced size."""
    if isinstance(image, (str, os.PathLike, bytes)):
        header = read_header(image, name)
        return header.width, header.height
    if isinstance(decoded, np.ndarray):
        return int(decoded.shape[1]), int(decoded.shape[0])
    return decoded.size

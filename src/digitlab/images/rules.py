"""Page rules: the printed lines of ruled and squared paper, taken out of the ink.

People write numbers in notebooks. A rule under a number joins every digit into one blob
and a squared page's grid cages each digit, so a reader that keeps all the ink reads
nothing right. A page rule is told from a digit's stroke by three things at once: it is
straight, it crosses nearly the whole image, and it is thinner than the writing's strokes.
Where a stroke crosses a rule, the ink above and below it carries on, and those pixels stay.

A page photographed a little askew has slanted rules: the slant (up to `MAX_SLANT`) is
found first, as the one along which the ink lines up best, and the rules are looked for
along it. Rules bent by a lens stay; a page turned further is levelled first
(`levelling`), by the slants `PageRules.slopes` finds beyond `MAX_SLANT`. A page
photographed at an angle has rules that close in towards its far edge, each at its own
slant: they are taken out slant by slant (`PageRules.every_slant`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digitlab.images.strokes import stroke_width

RULE_SPAN = 0.8
"""A rule's ink covers at least this share of the row (or column) it lies along."""

RULE_GAP = 0.01
"""Breaks in a rule up to this share of its length (faint print, a JPEG) are bridged."""

THINNER_THAN_STROKES = 0.75
"""A rule is at most this share of the writing's stroke width thick; a digit's bar drawn
across a tight crop is as thick as the digit's other strokes, and stays."""

LIGHTER_THAN_STROKES = 0.5
"""... or, away from the image's edges (where a desk's strip lies, judged by its rows),
holds at most this share of a stroke's width in ink per column: a light rule spread over
another row or two, by a lens or by levelling a turned page, is no thicker than it was."""

MIN_STROKE = 3.0
"""Writing whose strokes are thinner than this many pixels (a small or coarse image) has
no thinner line to tell apart: nothing is taken out."""

MIN_RULE_LENGTH = 64
"""Nor in an image narrower (or shorter) than this many pixels: a page photographed or
scanned with its rules is larger, and a small image's straight strokes are writing."""


MIN_INSIDE = 0.25
"""A slanted rule may leave the image through its top or bottom edge (a page photographed
askew and cropped close); it is looked for where at least this share of its length is in
the image."""

ALONE = 3
"""A rule stands alone: the rows this many beyond it on each side are mostly paper."""

THICKEST_RULE = 7
"""No rule is looked for thicker than this many pixels (its slant is found from thinner ink)."""

MAX_SLANT = 0.07
"""The steepest slant looked for: about 4 degrees, rise over run."""

MAX_CONVERGING = 0.18
"""The steepest slant of rules not parallel to those found first (about 10 degrees): the
lines down a squared page photographed at an angle close in towards its far edge. Rules
longer than the image is across them close in less: the slant is scaled down by that."""

MAX_SLANTS = 16
"""Rules at most this many slants a direction are taken out (see `PageRules.every_slant`)."""


def remove_rules(ink: np.ndarray, rules: PageRules | None = None) -> np.ndarray:
    """`ink` (float, 0 on paper) without the page's rules across and down: `rules`, the
    candidates `PageRules.find` finds in it (found here when not given), at every slant
    they lie at (`PageRules.every_slant`)."""
    if rules is None:
        rules = PageRules.find(ink)
    across, down = rules.every_slant()
    if not across and not down:
        return ink
    mask = ink > 0
    # The writing's strokes, without the rules or the row either side of them that goes
    # with them (`_rule_pixels`): a rule found along a slant a little off its own leaves
    # thin slivers there.
    stroke = stroke_width(mask & ~_pixels(across, mask, 1) & ~_pixels(down, mask.T, 1).T)
    if stroke < MIN_STROKE:
        return ink
    across = _thinner_than(across, stroke, ink)
    down = _thinner_than(down, stroke, ink.T)
    writing = mask & ~_pixels(across, mask) & ~_pixels(down, mask.T).T
    found = np.zeros_like(mask)
    for rules_across in across:
        found |= rules_across.off_the_writing(writing)
    for rules_down in down:
        found |= rules_down.off_the_writing(writing.T).T
    return np.where(found, 0.0, ink).astype(np.float32)


def _thinner_than(rules: list[_Rules], stroke: float, ink: np.ndarray) -> list[_Rules]:
    """Of each of `rules`, only the bands thinner than the writing (`_Rules.thinner_than`)."""
    thinner = (each.thinner_than(stroke, ink) for each in rules)
    return [each for each in thinner if each is not None]


@dataclass(frozen=True)
class PageRules:
    """A page's candidate rules along its rows (`across`) and along its columns (`down`,
    found in the transposed ink), slanted at most `MAX_SLANT`, each None where there are
    none; and what they were found in, per direction: the ink `masks`, the pixels
    `inside` the photograph and the `thin` ink (None where no rule can cross the image),
    for a search at steeper slants."""

    across: _Rules | None
    down: _Rules | None
    masks: tuple[np.ndarray, np.ndarray]
    inside: tuple[np.ndarray, np.ndarray]
    thin: tuple[np.ndarray | None, np.ndarray | None]

    @classmethod
    def find(cls, ink: np.ndarray, inside: np.ndarray | None = None) -> PageRules:
        """The candidate rules of `ink` (float, 0 on paper). `inside` (bool, default all)
        marks the pixels that lie in the photograph: a levelled page's corners come from
        beyond it, and a rule is judged by the share of it inside."""
        mask = ink > 0
        inside = np.ones_like(mask) if inside is None else inside
        masks, insides = (mask, mask.T), (inside, inside.T)
        thin = (_thin_if_rules_may_cross(mask), _thin_if_rules_may_cross(mask.T))
        across, down = (
            _Rules.find(masks[way], insides[way], thin[way], MAX_SLANT) for way in (0, 1)
        )
        return cls(across, down, masks, insides, thin)

    def slopes(self, max_slant: float) -> tuple[float | None, float | None]:
        """The slant (rise over run) of the rules across and of those down (of the
        transposed ink) that stand alone (`_Rules.standing_alone`): those found when they
        do, else the ones looked for up to `max_slant`; None where there are none."""
        found = []
        for way, rules in enumerate((self.across, self.down)):
            if rules is None or not rules.standing_alone():
                rules = _Rules.find(self.masks[way], self.inside[way], self.thin[way], max_slant)
                rules = rules if rules and rules.standing_alone() else None
            found.append(None if rules is None else rules.slant.slope)
        return found[0], found[1]

    def every_slant(self) -> tuple[list[_Rules], list[_Rules]]:
        """The rules across and down: those found, and where there are some, those at
        other slants up to `MAX_CONVERGING` in the ink left, each slant in turn (at most
        `MAX_SLANTS` a direction). A page photographed at an angle has rules that are not
        parallel: the lines down a squared page close in towards its far edge."""
        found: list[list[_Rules]] = []
        for way, rules in enumerate((self.across, self.down)):
            mask, thin = self.masks[way], self.thin[way]
            every = [] if rules is None else [rules]
            taken = np.zeros_like(mask) if rules is None else rules.pixels(1)
            steepest = MAX_CONVERGING * min(1.0, mask.shape[0] / mask.shape[1])
            while every and len(every) < MAX_SLANTS and thin is not None:
                left = thin & ~taken
                # The thin ink left must cross the image as the first rules' had to.
                if left.any(axis=0).mean() < RULE_SPAN / 2:
                    break
                more = _Rules.find(mask & ~taken, self.inside[way], left, steepest, RULE_SPAN / 2)
                if more is None:
                    break
                every.append(more)
                taken |= more.pixels(1)
            found.append(every)
        return found[0], found[1]


def _pixels(rules: list[_Rules], mask: np.ndarray, fringe: int = 0) -> np.ndarray:
    """All the ink of `mask` on `rules` and `fringe` rows either side of them (none when
    there are no rules)."""
    pixels = np.zeros_like(mask)
    for each in rules:
        pixels |= each.pixels(fringe)
    return pixels


@dataclass(frozen=True)
class _Slant:
    """A shear that lays rules of one slant (`slope`, rise over run) along rows: column c
    moves up by `shifts[c]` rows, every column padded by `pad` rows above and below so
    that nothing falls off."""

    slope: float
    shifts: np.ndarray
    pad: int

    @classmethod
    def of(cls, slope: float, width: int) -> _Slant:
        shifts = np.rint(slope * (np.arange(width) - width / 2)).astype(np.int64)
        return cls(slope, shifts, int(np.abs(shifts).max(initial=0)))

    def level(self, mask: np.ndarray) -> np.ndarray:
        """`mask` sheared: `pad` rows taller at each edge, slanted rules along rows."""
        if self.pad == 0:
            return mask
        padded = np.pad(mask, ((2 * self.pad, 2 * self.pad), (0, 0)))
        rows = np.arange(mask.shape[0] + 2 * self.pad)[:, np.newaxis]
        return np.take_along_axis(padded, rows + self.pad + self.shifts[np.newaxis, :], axis=0)

    def back(self, sheared: np.ndarray, height: int) -> np.ndarray:
        """A sheared mask in the image's own rows (`height` of them)."""
        if self.pad == 0:
            return sheared
        rows = np.arange(height)[:, np.newaxis]
        return np.take_along_axis(sheared, rows + self.pad - self.shifts[np.newaxis, :], axis=0)


def _thin_if_rules_may_cross(mask: np.ndarray) -> np.ndarray | None:
    """The thin ink of `mask` (`_thin_across`), None when the image is narrower than
    `MIN_RULE_LENGTH` or too few of its columns hold ink, or thin ink, for any rule to
    cross it."""
    if mask.shape[1] < MIN_RULE_LENGTH or mask.any(axis=0).mean() < RULE_SPAN:
        return None
    thin = _thin_across(mask)
    # Where writing stands on a rule, its ink runs on down the column: half is enough.
    return None if thin.any(axis=0).mean() < RULE_SPAN / 2 else thin


def _slope(thin: np.ndarray, max_slant: float) -> tuple[float, int]:
    """The slant (rise over run) up to `max_slant` along which the `thin` ink lines up
    into the fullest row, and how many pixels that row holds. Tried coarsely, then to a
    pixel's rise across the image."""
    width = thin.shape[1]
    rows, columns = np.nonzero(thin)

    def fullest(slope: float) -> int:
        levelled = rows - np.rint(slope * (columns - width / 2)).astype(np.int64)
        return int(np.bincount(levelled - levelled.min()).max())

    coarse = np.arange(-max_slant, max_slant + 1e-9, 4 / width)
    best = max([0.0, *coarse.tolist()], key=fullest)
    fine = best + np.arange(-3, 4) / width
    slope = max([best, *fine.tolist()], key=fullest)
    return float(slope), fullest(slope)


def _thin_across(mask: np.ndarray) -> np.ndarray:
    """The ink of `mask` in runs down a column shorter than `THICKEST_RULE` pixels: all of a
    rule across the page, little of thick writing (which keeps the search for a slant off
    most images of digits alone)."""
    structure = np.ones((THICKEST_RULE, 1), bool)
    return np.asarray(mask & ~ndimage.binary_opening(mask, structure=structure), bool)


@dataclass(frozen=True)
class _Rules:
    """The bands of a mask `height` rows tall, sheared level by `slant` (`level`, and
    the pixels `inside` the image so sheared), where rules along rows may lie."""

    height: int
    slant: _Slant
    level: np.ndarray
    inside: np.ndarray
    bands: list[slice]

    @classmethod
    def find(
        cls,
        mask: np.ndarray,
        inside: np.ndarray,
        thin: np.ndarray | None,
        max_slant: float,
        least: float = 0.0,
    ) -> _Rules | None:
        """The candidate rules along the rows of `mask`, slanted up to `max_slant` along
        its `thin` ink (None: no rule can cross it), None when there are none, or when
        the thin ink's fullest row along that slant holds under `least` of the width;
        only the pixels `inside` the photograph count."""
        if thin is None:
            return None
        slope, fullest = _slope(thin, max_slant)
        if fullest < least * mask.shape[1]:
            return None
        slant = _Slant.of(slope, mask.shape[1])
        level, sheared_inside = slant.level(mask), slant.level(inside)
        bands = _bands(level, sheared_inside)
        return cls(mask.shape[0], slant, level, sheared_inside, bands) if bands else None

    def standing_alone(self) -> list[slice]:
        """The bands at most `THICKEST_RULE` rows thick whose rows `ALONE` beyond each
        side are mostly paper (`_paper`)."""
        inked = self._inked()
        return [
            band
            for band in self.bands
            if band.stop - band.start <= THICKEST_RULE
            and all(_paper(row, inked) for row in (band.start - ALONE, band.stop - 1 + ALONE))
        ]

    def _inked(self) -> np.ndarray:
        """The share of each row's pixels inside the image that hold ink."""
        inked: np.ndarray = self.level.sum(axis=1) / np.maximum(self.inside.sum(axis=1), 1)
        return inked

    def pixels(self, fringe: int = 0) -> np.ndarray:
        """The ink on every band and `fringe` rows either side, in the mask's own rows."""
        on_bands = np.zeros_like(self.level)
        for band in self.bands:
            rows = slice(max(0, band.start - fringe), band.stop + fringe)
            on_bands[rows] = self.level[rows]
        return self.slant.back(on_bands, self.height)

    def thinner_than(self, stroke: float, ink: np.ndarray) -> _Rules | None:
        """Only the bands thinner than the writing's `stroke` width: at most
        `THINNER_THAN_STROKES` of it in rows, or, unless the band runs along the image's
        first or last row (where a desk's strip lies), at most `LIGHTER_THAN_STROKES` of it
        in `ink` (the mask's levels) per column. A band along the first or last row must
        also have paper `ALONE` rows inside it (`_paper`): a desk's
        strip that widens along the side, as beside a page photographed at an angle, is no
        rule where it is thinnest. None when no band is."""
        levels = self.slant.level(ink)
        first, last = np.zeros(ink.shape, bool), np.zeros(ink.shape, bool)
        first[0], last[-1] = True, True
        edges = (self.slant.level(first), self.slant.level(last))
        inked = self._inked()

        def thinner(band: slice) -> bool:
            thin = band.stop - band.start <= THINNER_THAN_STROKES * stroke
            inside_edges = [
                row
                for edge, row in zip(
                    edges, (band.stop - 1 + ALONE, band.start - ALONE), strict=True
                )
                if edge[band].sum() > edge.sum() / 2
            ]
            if inside_edges:  # along the image's first or last row
                return thin and all(_paper(row, inked) for row in inside_edges)
            return thin or _ink_per_column(band, levels) <= LIGHTER_THAN_STROKES * stroke

        bands = [band for band in self.bands if thinner(band)]
        return _Rules(self.height, self.slant, self.level, self.inside, bands) if bands else None

    def off_the_writing(self, writing: np.ndarray) -> np.ndarray:
        """The rules' pixels, less those where a stroke of `writing` (the ink off every
        rule) carries on above and below a rule, in the mask's own rows."""
        return self.slant.back(
            _rule_pixels(self.level, self.slant.level(writing), self.bands), self.height
        )


def _paper(row: int, inked: np.ndarray) -> bool:
    """Whether `row` is mostly paper: under `RULE_SPAN` / 2 of its pixels inked (`inked`,
    each row's share), or beyond the image."""
    return not 0 <= row < inked.size or bool(inked[row] < RULE_SPAN / 2)


def _ink_per_column(band: slice, levels: np.ndarray) -> float:
    """The median ink (`levels`, levelled) per column the rows `band` cross."""
    ink = levels[band].sum(axis=0)
    crossed = ink[ink > 0]
    return float(np.median(crossed)) if crossed.size else 0.0


def _bands(mask: np.ndarray, inside: np.ndarray) -> list[slice]:
    """The runs of rows of `mask` whose ink covers `RULE_SPAN` of the row's pixels that lie
    `inside` the image (a slanted rule leaves it at a corner), small breaks bridged, rows
    at least `MIN_INSIDE` inside: where rules along the rows may lie."""
    width = mask.shape[1]
    within = inside.sum(axis=1)
    # A row with under half the span in ink is no rule: bridging fills small breaks only.
    candidates = np.flatnonzero(
        (mask.sum(axis=1) >= RULE_SPAN / 2 * within) & (within >= MIN_INSIDE * width)
    )
    if candidates.size == 0:
        return []
    bridge = max(1, round(RULE_GAP * width))
    structure = np.ones((1, 2 * bridge + 1), bool)
    rows = ndimage.binary_closing(mask[candidates], structure=structure) & inside[candidates]
    # Closing cannot bridge a break at the image's edge: those columns are left out.
    inked = rows[:, bridge:-bridge].sum(axis=1)
    covered = np.zeros(mask.shape[0], bool)
    covered[candidates] = inked >= RULE_SPAN * inside[candidates, bridge:-bridge].sum(axis=1)
    labels, _ = ndimage.label(covered)
    return [rows for (rows,) in ndimage.find_objects(labels)]


def _rule_pixels(mask: np.ndarray, writing: np.ndarray, bands: list[slice]) -> np.ndarray:
    """The pixels of `mask` on the horizontal rules `bands` and a row either side (a rule
    printed or levelled a pixel off its row), less those where a stroke of the `writing`
    (the ink off every rule) carries on above and below."""
    height, width = mask.shape
    rules = np.zeros_like(mask)
    for band in bands:
        rows = slice(max(0, band.start - 1), min(height, band.stop + 1))
        above = writing[rows.start - 1] if rows.start > 0 else np.zeros(width, bool)
        below = writing[rows.stop] if rows.stop < height else np.zeros(width, bool)
        rules[rows] = mask[rows] & ~(_widened(above) & _widened(below))
    return rules


def _widened(row: np.ndarray) -> np.ndarray:
    """`row` with each True pixel's neighbours set too: a slanted stroke crosses a rule a
    pixel or so left or right of where it met it."""
    return np.asarray(ndimage.binary_dilation(row, structure=np.ones(3, bool)), bool)

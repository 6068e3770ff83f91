"""Page rules: the printed lines of ruled and squared paper, taken out of the ink.

People write numbers in notebooks. A rule under a number joins every digit into one blob
and a squared page's grid cages each digit, so a reader that keeps all the ink reads
nothing right. A page rule is told from a digit's stroke by three things at once: it is
straight along a row (or a column), it crosses nearly the whole image, and it is thinner
than the writing's strokes. Where a stroke crosses a rule, the ink above and below it
carries on, and those pixels stay.

Only rules that lie along the image's rows or columns are found: a page photographed at an
angle keeps its slanted rules.
"""

from __future__ import annotations

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

MIN_STROKE = 3.0
"""Writing whose strokes are thinner than this many pixels (a small or coarse image) has
no thinner line to tell apart: nothing is taken out."""

MIN_RULE_LENGTH = 64
"""Nor in an image narrower (or shorter) than this many pixels: a page photographed or
scanned with its rules is larger, and a small image's straight strokes are writing."""


def remove_rules(ink: np.ndarray) -> np.ndarray:
    """`ink` (float, 0 on paper) without the page's rules, horizontal and vertical."""
    mask = ink > 0
    rows, columns = _bands(mask), _bands(mask.T)
    if not rows and not columns:
        return ink
    stroke = stroke_width(_without(mask, rows, columns))
    if stroke < MIN_STROKE:
        return ink
    thin = THINNER_THAN_STROKES * stroke
    rows = [band for band in rows if band.stop - band.start <= thin]
    columns = [band for band in columns if band.stop - band.start <= thin]
    writing = _without(mask, rows, columns)
    rules = _rule_pixels(mask, writing, rows) | _rule_pixels(mask.T, writing.T, columns).T
    return np.where(rules, 0.0, ink).astype(np.float32)


def _without(mask: np.ndarray, rows: list[slice], columns: list[slice]) -> np.ndarray:
    """`mask` with the `rows` and `columns` bands cleared."""
    cleared = mask.copy()
    for band in rows:
        cleared[band] = False
    for band in columns:
        cleared[:, band] = False
    return cleared


def _bands(mask: np.ndarray) -> list[slice]:
    """The runs of rows of `mask` whose ink covers `RULE_SPAN` of the row, small breaks
    bridged: where horizontal rules may lie."""
    width = mask.shape[1]
    if width < MIN_RULE_LENGTH:
        return []
    # A row with under half the span in ink is taken as no rule (bridging fills small breaks)
    # (and most images have no row to bridge at all, which keeps `to_mnist` fast).
    candidates = np.flatnonzero(mask.mean(axis=1) >= RULE_SPAN / 2)
    if candidates.size == 0:
        return []
    bridge = max(1, round(RULE_GAP * width))
    rows = ndimage.binary_closing(mask[candidates], structure=np.ones((1, 2 * bridge + 1), bool))
    # Closing cannot bridge a break at the image's edge: those columns are left out.
    covered = np.zeros(mask.shape[0], bool)
    covered[candidates] = rows[:, bridge:-bridge].mean(axis=1) >= RULE_SPAN
    labels, _ = ndimage.label(covered)
    return [rows for (rows,) in ndimage.find_objects(labels)]


def _rule_pixels(mask: np.ndarray, writing: np.ndarray, bands: list[slice]) -> np.ndarray:
    """The pixels of `mask` on the horizontal rules `bands`, less those where a stroke of
    the `writing` (the ink off every rule) carries on above and below a rule."""
    height, width = mask.shape
    rules = np.zeros_like(mask)
    for rows in bands:
        above = writing[rows.start - 1] if rows.start > 0 else np.zeros(width, bool)
        below = writing[rows.stop] if rows.stop < height else np.zeros(width, bool)
        rules[rows] = mask[rows] & ~(_widened(above) & _widened(below))
    return rules


def _widened(row: np.ndarray) -> np.ndarray:
    """`row` with each True pixel's neighbours set too: a slanted stroke crosses a rule a
    pixel or so left or right of where it met it."""
    return np.asarray(ndimage.binary_dilation(row, structure=np.ones(3, bool)), bool)

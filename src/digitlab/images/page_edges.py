"""What lies beyond the page's edge in a photograph: the desk, a shadow, a dark border.

A phone held over a sheet of paper often catches a strip of the desk beside it. Darker
than the paper, that strip is found as ink: one blob along the image's border, so large
that every real stroke looks like a speck beside it (and is dropped as one), or read as a
digit itself. It is told from writing by running along nearly a whole side of the image
with a straight inner edge (the page's edge, slanted or not), while the writing (the
largest other blob) stays clear of the border: a stroke meets the border at its end, or
along a curving stretch where a digit fills its frame, and then the writing usually meets
the border too, or runs up to that piece. A desk caught only in a corner stays. Rules are
taken out first (`rules`): a squared page's grid along the border is no desk.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ALONG_SIDE = 0.9
"""A blob is beyond the page when it runs along at least this share of a side ..."""

STRAIGHT = 0.02
"""... and most of its inner edge (`STRAIGHT_SHARE`) strays from a straight line by at most
this share of the side's length, or 2 pixels."""

STRAIGHT_SHARE = 0.8

MARGIN = 0.03
"""Paper lies between the page's edge and the writing: at least this share of the image's
shorter side, or `MIN_MARGIN` pixels."""

MIN_MARGIN = 4

MIN_SIDE = 64
"""Images with a side shorter than this many pixels are left as they are: a photograph of a
page is larger, and a small image is all digit."""

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def remove_page_edges(ink: np.ndarray) -> np.ndarray:
    """`ink` (float, 0 on paper) without the blobs beyond the page's edge (see above)."""
    if min(ink.shape) < MIN_SIDE:
        return ink
    sides = (ink[0], ink[-1], ink[:, 0], ink[:, -1])
    if all(np.count_nonzero(side) < ALONG_SIDE * side.size for side in sides):
        return ink  # most images: no side is inked nearly all along
    labels, count = ndimage.label(ink > 0, structure=_EIGHT_CONNECTED)
    if count < 2:
        return ink
    # Each side as the image's first row, turned so: top, bottom, left, right.
    turned = (labels, labels[::-1], labels.T, labels.T[::-1])
    along = {
        int(label)
        for view in turned
        for label, run in zip(*np.unique(view[0], return_counts=True), strict=True)
        if label > 0 and run >= ALONG_SIDE * view.shape[1] and _straight(view == label)
    }
    if not along:
        return ink
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[[0, *along]] = 0
    on_border = set(np.unique(np.concatenate([view[0] for view in turned])).tolist())
    writing = int(sizes.argmax())
    if not sizes.any() or writing in on_border:
        return ink  # no writing, or writing that meets the border: a tight crop
    beyond = np.isin(labels, sorted(along))
    margin = ndimage.distance_transform_edt(~beyond)[labels == writing].min()
    if margin < max(MIN_MARGIN, MARGIN * min(ink.shape)):
        return ink  # the writing runs up to it: a piece of the digit, not the desk
    return np.where(beyond, 0.0, ink).astype(np.float32)


def _straight(blob: np.ndarray) -> bool:
    """Whether `blob`, which runs along the first row, ends in a straight line below it:
    how deep it reaches down each column where it meets the first row, fitted by a line
    through the closest `STRAIGHT_SHARE` of those depths (where the desk turns a corner
    with the page, it reaches deeper), leaving out the runs of columns at either end that
    it fills all the way down, when at least half the columns are left."""
    columns = np.flatnonzero(blob[0])
    depth = np.argmin(blob[:, columns], axis=0).astype(np.float64)
    through = np.asarray(blob[:, columns].all(axis=0), bool)
    depth[through] = blob.shape[0]
    # Where the desk runs right across the image at either end of the side (down the
    # sides of a sheet lying on it), the page's edge is not seen there.
    seen = ~_ends(through)
    if np.count_nonzero(seen) < len(columns) / 2:
        return False
    columns, depth = columns[seen], depth[seen]
    tolerance = max(2.0, STRAIGHT * blob.shape[1])
    kept = np.ones(len(columns), bool)
    for _ in range(2):
        line = np.polyval(np.polyfit(columns[kept], depth[kept], 1), columns)
        strays = np.abs(depth - line)
        kept = strays <= np.quantile(strays, STRAIGHT_SHARE)
    return bool(np.quantile(strays, STRAIGHT_SHARE) <= tolerance)


def _ends(flags: np.ndarray) -> np.ndarray:
    """The True runs of `flags` that start at its first item or end at its last."""
    ends = np.zeros_like(flags)
    leading = int(np.argmin(flags)) if not flags.all() else flags.size
    trailing = int(np.argmin(flags[::-1])) if not flags.all() else flags.size
    ends[:leading] = True
    ends[flags.size - trailing :] = True
    return ends

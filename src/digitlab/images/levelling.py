"""A page photographed turned: levelled by its rules before its ink is read.

`rules` finds a ruled or squared page's rules slanted up to `rules.MAX_SLANT` (about 4
degrees), as a scan or a careful photo leaves them. A phone held loosely turns the page
further, and then the rules stay and cage the digits. Such a page is levelled first:
where no rules are found within `rules.MAX_SLANT`, they are looked for up to `MAX_TURN`,
and when they slant more than `rules` handles, the gray image is turned about its centre
until they lie level, the page running on past the image's edges (its edge pixels carried
out), and read as any other image. The digits stand upright again too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from digitlab.images.rules import MAX_SLANT, PageRules

MAX_TURN = math.tan(math.radians(15))
"""The steepest slant of a page's rules that is levelled (rise over run): 15 degrees."""


@dataclass(frozen=True)
class Turn:
    """The turn that lays rules slanting `slope` (rows down per column) level, in an image
    `shape` (rows, columns) pixels, about its centre."""

    slope: float
    shape: tuple[int, int]

    @property
    def degrees(self) -> float:
        """How far the page is turned (clockwise, as the image shows it)."""
        return math.degrees(math.atan(self.slope))

    def level(self, gray: np.ndarray) -> np.ndarray:
        """`gray` (of `shape`, 0..1) turned so that the rules lie level, the same size; the
        corners that come from beyond the image carry its edge pixels on. A cubic spline
        keeps thin rules about as thin as they were."""
        matrix, offset = self._levelled_to_image()
        levelled = ndimage.affine_transform(gray, matrix, offset=offset, order=3, mode="nearest")
        clipped: np.ndarray = np.clip(levelled, 0.0, 1.0).astype(np.float32)
        return clipped

    def inside(self) -> np.ndarray:
        """Which pixels of the levelled image come from inside the image (bool)."""
        rows, columns = np.indices(self.shape).reshape(2, -1).astype(np.float64)
        image_rows, image_columns = self.to_image(rows, columns)
        within = (
            (image_rows >= -0.5)
            & (image_rows <= self.shape[0] - 0.5)
            & (image_columns >= -0.5)
            & (image_columns <= self.shape[1] - 0.5)
        )
        return within.reshape(self.shape)

    def to_image(self, rows: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points (pixel indices, floats) of the levelled image, where they lie in the
        image before it was turned."""
        matrix, offset = self._levelled_to_image()
        image_rows, image_columns = matrix @ np.stack([rows, columns]) + offset[:, np.newaxis]
        return image_rows, image_columns

    def _levelled_to_image(self) -> tuple[np.ndarray, np.ndarray]:
        """The affine map from a levelled pixel to the image's: `matrix @ p + offset`."""
        angle = math.atan(self.slope)
        cos, sin = math.cos(angle), math.sin(angle)
        # A level row (0, 1) maps to the rules' direction (sin, cos) in the image.
        matrix = np.array([[cos, sin], [-sin, cos]])
        centre = (np.array(self.shape, np.float64) - 1) / 2
        return matrix, centre - matrix @ centre


def page_turn(ink: np.ndarray, rules: PageRules | None = None) -> Turn | None:
    """The turn that levels the page of `ink` (float, 0 on paper) by its `rules` (the
    candidates `PageRules.find` finds in it, found here when not given), None when it has
    none slanted more than `rules` itself handles. A squared page is turned by
    the mean of the slants of its rules across and down (a page photographed at an angle
    leaves them a little off square)."""
    across, down = (rules or PageRules.find(ink)).slopes(MAX_TURN)
    # Turned by an angle, rules across slope by its tangent, rules down by minus it.
    slants = [math.atan(across)] if across is not None else []
    slants += [-math.atan(down)] if down is not None else []
    if not slants or all(abs(math.tan(slant)) <= MAX_SLANT for slant in slants):
        return None
    return Turn(math.tan(sum(slants) / len(slants)), (int(ink.shape[0]), int(ink.shape[1])))

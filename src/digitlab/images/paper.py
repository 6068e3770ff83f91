"""The paper's level under a digit's ink: a smooth surface fitted to the background.

`to_mnist` and the number reader subtract it before they look for ink, so that uneven light
in a photo, a grey page or a vignette is not taken for ink, and thick strokes filling most
of a tight crop are not taken for paper.
"""

from __future__ import annotations

import functools

import numpy as np

from digitlab.images.fast_paths import lower_quartiles, median

PAPER_FIT_ROUNDS = 6
"""Most refits of the paper surface; each drops the blocks too far above the last fit."""


def paper_level(signal: np.ndarray) -> np.ndarray:
    """The paper's level under the ink: a smooth surface fitted to the background.

    `signal` has ink high and paper low. Uneven lighting in a photo makes the paper a slope
    or a vignette rather than one level, so a quadratic surface is fitted to the darkest
    quarter of each block. Ink only ever adds to the signal, so the paper is the lower
    envelope of those levels: the fit starts from the lowest blocks, takes the noise from
    the blocks below it (which can only be paper) and leaves out the blocks far above it.
    Soft, thick strokes that fill most blocks of a tight crop thus stay ink, where a fit
    centred on the typical block would take them for paper and eat them.
    """
    height, width = signal.shape
    grid = max(1, min(8, min(height, width) // 4))
    block_height, block_width = height // grid, width // grid
    blocks = signal[: grid * block_height, : grid * block_width].reshape(
        grid, block_height, grid, block_width
    )
    levels = lower_quartiles(blocks.transpose(0, 2, 1, 3).reshape(grid * grid, -1))
    terms = _block_terms(grid, block_height / height, block_width / width)
    if len(levels) < terms.shape[1]:
        return np.full((height, width), median(levels), np.float32)
    coefficients = np.array([np.sort(levels)[len(levels) // 10], 0, 0, 0, 0, 0])
    inliers = np.zeros(len(levels), dtype=bool)
    for _ in range(PAPER_FIT_ROUNDS):
        within = _paper_blocks(levels - terms @ coefficients, terms)
        if np.array_equal(within, inliers):
            break
        inliers = within
        coefficients = np.linalg.lstsq(terms[inliers], levels[inliers], rcond=None)[0]
    return _quadratic_surface(coefficients.astype(np.float32), height, width)


def _paper_blocks(residual: np.ndarray, terms: np.ndarray) -> np.ndarray:
    """The blocks taken for paper, given their levels' residuals from the current fit.

    Those below the fit can only be paper, so they give the noise; blocks within three
    noise widths above count too. When those lie along one edge (a steep light gradient
    on blank paper), the band widens until they span enough of the image to fit the
    quadratic surface, or it would be extrapolated from one strip.
    """
    below = residual[residual <= 0]
    band = max(0.02, 3 * 1.4826 * median(np.abs(below))) if below.size else 0.02
    within = residual <= band
    while np.linalg.matrix_rank(terms[within]) < terms.shape[1]:
        band *= 2
        within = residual <= band
    return within


@functools.lru_cache(maxsize=16)
def _block_terms(grid: int, block_height: float, block_width: float) -> np.ndarray:
    """The quadratic terms at the centres of a grid x grid set of blocks (block sides as
    shares of the image's), one row per block; read-only, as it is shared."""
    y_centres = (np.arange(grid) + 0.5) * block_height
    x_centres = (np.arange(grid) + 0.5) * block_width
    y, x = (centres.ravel() for centres in np.meshgrid(y_centres, x_centres, indexing="ij"))
    terms = np.stack(_quadratic_terms(y, x), axis=1)
    terms.flags.writeable = False
    return terms


def _quadratic_surface(coefficients: np.ndarray, height: int, width: int) -> np.ndarray:
    """The quadratic surface with these coefficients (of `_quadratic_terms`) at every pixel,
    float32, summed from its row and column parts: no height x width array per term."""
    y = np.arange(height, dtype=np.float32)[:, np.newaxis] / height
    x = np.arange(width, dtype=np.float32)[np.newaxis, :] / width
    constant, c_y, c_x, c_yy, c_xy, c_xx = coefficients
    surface: np.ndarray = (c_xy * y) * x
    surface += constant + y * (c_y + c_yy * y)
    surface += x * (c_x + c_xx * x)
    return surface


def _quadratic_terms(y: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
    """The six terms of a quadratic surface in (y, x), broadcast against each other."""
    return [np.ones_like(y * x), y, x, y * y, x * y, x * x]

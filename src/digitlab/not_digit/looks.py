"""Generic looks of real digits, made from MNIST TRAINING digits, so that a not-a-digit score
learns that a digit stays a digit whatever the pen, the resolution or the crop.

People hand in digits that MNIST never shows: a few pixels tall with coarse grey levels
(an 8 x 8 thumbnail, a form's box), blurred, written with a felt tip or a fine pen, cropped
to the ink, saved as a lossy JPEG, light on dark, or with a gap where the pen skipped. A
score trained on plain MNIST takes such digits for non-digits. Each look here is a generic
degradation, not a copy of any evaluation set: the UCI 8 x 8 digits of
`datasets.report_sets` (other writers) stay evaluation-only, and no look makes a training or
validation image of an MNIST test digit (the report's test digits with pen gaps are only
measured).

Every look renders an image the way a person's file would be, and `to_mnist` reads it
back, so the digits reach a model exactly as a person's would.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from digitlab.errors import NoDigitFoundError
from digitlab.images.mnist_style import to_mnist
from digitlab.styles import change_thickness, encode, fill_frame, pen_strokes

Look = Callable[[np.ndarray, np.random.Generator], np.ndarray | bytes]
"""(28x28 uint8 MNIST digit, random generator) -> an image (uint8 array or file bytes)."""


def _dark_on_white(ink: np.ndarray) -> np.ndarray:
    return np.asarray(np.rint(255 * (1 - np.clip(ink, 0, 1))), np.uint8)


def coarse(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A thumbnail: the digit, at times thickened or binarised first, box-averaged into
    an 8, 10 or 12 pixel frame (as tall as the frame or with 1 pixel of margin, from half
    as wide to as wide as it is tall) with 5 to 17 grey levels, dark on white."""
    ink = change_thickness(pen_strokes(digit, 4.0), int(rng.integers(0, 5)))
    if rng.random() < 0.5:
        ink = (ink >= rng.uniform(0.3, 0.6)).astype(np.float32)
    side = int(rng.choice([8, 10, 12]))
    height = side - 2 * int(rng.integers(0, 2))
    natural = ink.shape[1] / ink.shape[0]
    width = max(1, min(side - 2, round(height * max(natural, rng.uniform(0.5, 1.0)))))
    small = np.asarray(Image.fromarray(ink, mode="F").resize((width, height), Image.Resampling.BOX))
    levels = int(rng.choice([5, 9, 17]))
    small = np.rint(np.clip(small, 0, 1) * (levels - 1)) / (levels - 1)
    frame = np.zeros((side, side), np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    frame[top : top + height, left : left + width] = small
    return _dark_on_white(frame)


def blurred(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Out of focus: the digit 3 to 6 times MNIST's size, blurred by 1 to 4 stroke
    widths' worth of Gaussian, with a margin, dark on white."""
    scale = rng.uniform(3, 6)
    ink = np.pad(pen_strokes(digit, scale), round(3 * scale))
    soft = ndimage.gaussian_filter(ink, scale * rng.uniform(0.3, 1.2))
    return _dark_on_white(soft / soft.max())


def pen_width(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A felt tip or a fine pen: strokes from half to about three times MNIST's width."""
    scale = rng.uniform(4, 7)
    radius = round(scale * rng.uniform(-0.4, 1.3))
    ink = change_thickness(np.pad(pen_strokes(digit, scale), round(scale)), radius)
    return _dark_on_white(ink)


def tight(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cropped to the ink, strokes running into the frame's edges, often soft and thick."""
    scale = rng.uniform(2, 6)
    ink = change_thickness(pen_strokes(digit, scale), round(scale * rng.uniform(0, 0.8)))
    if rng.random() < 0.6:
        ink = ndimage.gaussian_filter(ink, scale * rng.uniform(0.2, 0.8))
        ink = ink / ink.max()
    return _dark_on_white(fill_frame(ink, rng))


def jpeg(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """A small, heavily compressed JPEG (quality 10 to 50) of a digit 1 to 3 times MNIST's size."""
    ink = np.pad(pen_strokes(digit, rng.uniform(1, 3)), 4)
    return encode(_dark_on_white(ink), "JPEG", quality=int(rng.integers(10, 50)))


def light_on_dark(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Chalk on a board: light strokes on a dark grey ground, with a margin and some noise."""
    ink = np.pad(pen_strokes(digit, rng.uniform(2, 6)), 8)
    ground, chalk = rng.uniform(10, 80), rng.uniform(170, 255)
    pixels = ground + (chalk - ground) * ink + rng.normal(0, rng.uniform(0, 10), ink.shape)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


GAP_TRIES = 10
LEAST_PIECE = 0.3
"""`pen_gaps` keeps gaps that split the strokes only into pieces of at least this share of
the ink, trying up to `GAP_TRIES` times (and then leaving the digit whole)."""


def pen_gaps(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pen that skipped: the digit 3 to 6 times MNIST's size with a gap across a stroke:
    a disc wiped out of the ink around a point in the middle of a stroke, reaching 0.3 to
    1 MNIST pixel beyond the stroke's edge (a 0 then shows a gap of a twelfth or so of its
    loop), dark on white. Gaps that would leave a dot or a stub of a stroke (a piece of
    less than `LEAST_PIECE` of the ink: a 1 would turn into a "!") are drawn again."""
    scale = rng.uniform(3, 6)
    ink = np.pad(pen_strokes(digit, scale), round(2 * scale))
    rows, columns = np.mgrid[: ink.shape[0], : ink.shape[1]]
    depth = ndimage.distance_transform_edt(ink > 0.5)
    middles = np.argwhere((depth > 0) & (depth == ndimage.maximum_filter(depth, size=3)))
    pieces = ndimage.label(ink > 0.5)[1]
    for _ in range(GAP_TRIES if len(middles) else 0):
        gapped = ink.copy()
        row, column = middles[rng.integers(0, len(middles))]
        radius = depth[row, column] + scale * rng.uniform(0.3, 1.0)
        gapped[(rows - row) ** 2 + (columns - column) ** 2 <= radius * radius] = 0.0
        if _no_stubs(gapped, pieces):
            return _dark_on_white(gapped)
    return _dark_on_white(ink)


def _no_stubs(gapped: np.ndarray, pieces_before: int) -> bool:
    """Whether `gapped` has no more pieces than the `pieces_before` of the digit it was
    cut from, or only pieces of `LEAST_PIECE` of its ink or more."""
    pieces, count = ndimage.label(gapped > 0.5)
    if count <= pieces_before:
        return True
    sizes = ndimage.sum_labels(gapped, pieces, range(1, count + 1))
    return bool(sizes.min() >= LEAST_PIECE * sizes.sum())


LOOKS: dict[str, Look] = {
    "coarse": coarse,
    "blurred": blurred,
    "pen width": pen_width,
    "tight": tight,
    "jpeg": jpeg,
    "light on dark": light_on_dark,
    "pen gaps": pen_gaps,
}
"""Every look by name."""


def digit_looks(digits: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Every look applied to every one of `digits` (MNIST TRAINING digits, N x 28 x 28
    uint8), each image read back by `to_mnist`: look name -> N x 28 x 28 uint8."""
    return {
        name: read_back(look, digits, np.random.default_rng([seed, number]))
        for number, (name, look) in enumerate(LOOKS.items())
    }


def read_back(look: Look, digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`look` applied to each of `digits` (N x 28 x 28 uint8), in order, each image read
    back by `to_mnist`: N x 28 x 28 uint8."""
    return np.stack([to_mnist(look(digit, rng)) for digit in digits])


def every_look(digits: np.ndarray, seed: int) -> np.ndarray:
    """Every look applied to every one of `digits` (MNIST TRAINING digits, N x 28 x 28
    uint8), read back by `to_mnist`, in one array of up to N x len(LOOKS) images (28 x 28
    uint8): a look that leaves no ink (a thin stroke box-averaged away) is skipped."""
    rng = np.random.default_rng(seed)
    images = []
    for digit in digits:
        for look in LOOKS.values():
            try:
                images.append(to_mnist(look(digit, rng)))
            except NoDigitFoundError:
                continue
    return np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)

"""A person's digit image -> a 28x28 MNIST-style array, made the way MNIST itself was made.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio (with
anti-aliasing), then placed in a 28x28 field so that their centre of mass sits at the centre.
A model trained on MNIST expects exactly that, so `to_mnist` rebuilds it from any image:

    decode -> grayscale (alpha laid on a contrasting background) -> ink polarity
    -> flatten the paper and threshold it gently -> level a turned ruled page
    -> take out rules and a desk beside the page -> drop specks -> crop to the ink
    -> scale the longest side to 20 px -> centre by centre of mass in 28x28

Each step is a public function, so each can be tested and looked at on its own. Decoding
(and its limits) is `decoding`'s job; this module starts from decoded pixels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from digitlab.errors import CorruptImageError, ImageError, NoDigitFoundError
from digitlab.images.decoding import WORKING_SIDE, ImageSource, decode
from digitlab.images.fast_paths import centre_of_mass, median, smooth
from digitlab.images.levelling import Turn, page_turn
from digitlab.images.page_edges import remove_page_edges
from digitlab.images.paper import paper_level
from digitlab.images.rules import PageRules, remove_rules
from digitlab.images.strokes import stroke_width

BOX_SIDE = 20
FIELD_SIDE = 28

MIN_CONTRAST = 0.1
"""Least ink contrast (0..1 of full scale, after light smoothing) that counts as a digit."""

FLOOR_SHARE = 0.05
"""Deviations below this share of the typical ink level count as paper."""

STROKE_SHARE = 0.13
"""MNIST's typical stroke width as a share of the digit's longest side (2.6 px in 20 px)."""

MIN_INK_PIXELS = 6
"""Fewest clearly inked pixels (at working size) that count as a digit rather than a speck."""

SHEET_SHARE = 0.7
"""An image whose border is mostly dark but whose middle is at least this share light, in
thin dark strokes (at most `THIN_STROKES` of the shorter side wide), is a light sheet on
a darker desk: dark ink."""

THIN_STROKES = 0.1
"""The widest dark strokes on such a sheet, as a share of the image's shorter side."""

SPECK_FRACTION = 0.05
"""Ink blobs with less than this share of the largest blob's ink are dust or noise."""

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)

# Pillow modes whose pixels numpy reads directly as gray (2-D) or gray + alpha (H x W x 2).
_GRAY_MODES = {"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"}
# Modes Pillow's fast integer `reduce` accepts.
_REDUCIBLE_MODES = {"L", "LA", "RGB", "RGBA", "I", "F"}


def to_mnist(
    image: ImageSource, name: str | None = None, max_memory_bytes: int | None = None
) -> np.ndarray:
    """Turn a person's digit image into a 28x28 uint8 MNIST-style array (white ink on black).

    `image` is a file path, the bytes of an image file, a PIL image or a numpy array
    (H x W gray, or H x W x 2/3/4 with alpha last; uint8, uint16, bool or float 0..1).
    `name` is used in error messages (a path names itself). `max_memory_bytes`, when given,
    bounds the memory this may take (`memory_needed`; a baseline JPEG of any size decodes
    straight to a reduced size and takes little), for callers such as a server that must
    bound the cost of each request.

    Raises `NotAnImageError`, `CorruptImageError` or `ImageTooLargeError` when the image
    cannot be decoded, and `NoDigitFoundError` when it is blank or nearly blank; every
    message names the image.
    """
    if name is None:
        name = str(image) if isinstance(image, (str, os.PathLike)) else "the image"
    gray = to_grayscale(decode(image, name, max_memory_bytes), name)
    return normalize_digit(extract_ink(gray, name))


def normalize_digit(ink: np.ndarray) -> np.ndarray:
    """One digit's ink (float 0..1, any size, zero around it) -> 28x28 uint8, MNIST-style.

    Crop to the ink, widen strokes much finer than MNIST's, scale the longest side to 20 px
    and centre by mass: the steps `to_mnist` takes after finding the ink, shared with the
    number reader so that every digit it reads is normalised exactly as `to_mnist` would.
    Raises `NoDigitFoundError` when `ink` is all zero.
    """
    digit = crop_to_ink(thicken_thin_strokes(crop_to_ink(ink)))
    return to_uint8(center_by_mass(scale_to_box(digit)))


def to_grayscale(image: Image.Image | np.ndarray, name: str = "the image") -> np.ndarray:
    """Convert any colour mode to gray float32 in 0..1, alpha composited, at most 512 px a side.

    Palette, CMYK and colour images become luminance (ITU-R 601); 16-bit and float pixels keep
    their precision; transparent pixels take a background that contrasts with the ink (see
    `composite_alpha`). Infinite float pixels count as the image's lightest or darkest
    finite level; a NaN pixel, which has no level, raises `CorruptImageError` naming `name`.
    """
    if isinstance(image, Image.Image):
        image = _reduce_in_pillow(image)
    return shrink(_array_to_grayscale(np.asarray(image), name))


def _reduce_in_pillow(image: Image.Image) -> Image.Image:
    """Box-reduce a large image by a whole factor, then make it gray (L or LA), in Pillow.

    Reducing before any conversion keeps a 49-megapixel PNG at a second and a few hundred
    megabytes instead of many seconds and gigabytes of float arrays.
    """
    if image.mode == "1":
        image = image.convert("L")
    elif image.has_transparency_data and image.mode not in ("RGBA", "LA"):
        image = image.convert("RGBA")  # a palette's or a colour key's transparency
    elif image.mode not in _GRAY_MODES | _REDUCIBLE_MODES:
        image = image.convert("RGB")  # Pillow converts every mode (CMYK, YCbCr, P...) to RGB
    factor = max(image.size) // WORKING_SIDE
    if factor >= 2 and image.mode in _REDUCIBLE_MODES:
        image = image.reduce(factor)
    elif factor >= 2:
        # 16-bit gray, which `reduce` refuses: box averages to the same size, at 16 bits.
        size = (-(-image.width // factor), -(-image.height // factor))
        image = image.resize(size, Image.Resampling.BOX)
    if image.mode in ("RGB", "RGBA"):
        image = image.convert("LA" if image.mode == "RGBA" else "L")
    return image


def _array_to_grayscale(pixels: np.ndarray, name: str) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or min(pixels.shape[:2]) < 1:
        raise ImageError(f"expected an H x W or H x W x 1..4 pixel array, got shape {pixels.shape}")
    if pixels.dtype.kind == "f":
        pixels = _finite(pixels, name)
    values = pixels.astype(np.float32) / _full_scale(pixels)
    channels = values.shape[2]
    color = values[:, :, :3] if channels >= 3 else values[:, :, :1]
    gray = color @ np.array([0.299, 0.587, 0.114], np.float32) if channels >= 3 else color[:, :, 0]
    alpha = values[:, :, -1] if channels in (2, 4) else None
    return composite_alpha(gray, alpha)


def _finite(pixels: np.ndarray, name: str) -> np.ndarray:
    """Float pixels with infinities clipped to the finite range (a float TIFF may mark
    saturation so); refuses NaN, which no level stands for, with `CorruptImageError`."""
    not_a_number = int(np.count_nonzero(np.isnan(pixels)))
    if not_a_number:
        raise CorruptImageError(
            f"{name}: NaN (not a number) in {not_a_number:,} pixel(s), so ink and paper "
            "cannot be told apart"
        )
    finite = pixels[np.isfinite(pixels)]
    if finite.size == pixels.size:
        return pixels
    if not finite.size:
        raise CorruptImageError(f"{name}: every pixel is infinite, there is no image")
    clipped: np.ndarray = np.clip(pixels, finite.min(), finite.max())
    return clipped


def _full_scale(pixels: np.ndarray) -> float:
    """The value that means full intensity for this array's dtype and range."""
    if pixels.dtype == np.bool_:
        return 1.0
    if np.issubdtype(pixels.dtype, np.integer) and pixels.dtype.itemsize <= 2:
        return float(np.iinfo(pixels.dtype).max)
    # Wider integers and floats (Pillow's "I" and "F" modes) carry no fixed range.
    peak = float(np.max(pixels)) if pixels.size else 0.0
    return 1.0 if peak <= 1.0 else 255.0 if peak <= 255.0 else 65535.0


def composite_alpha(gray: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Lay a partly transparent gray image on a background that contrasts with its ink.

    When most pixels are opaque they are the paper, and transparent ones take the paper's
    level. When most are transparent (a drawing on a transparent canvas), the opaque pixels
    are the ink, and the background is white under dark ink and black under light ink.
    """
    if alpha is None or float(alpha.min()) >= 1.0:
        return gray
    opaque = alpha > 0.5
    if not opaque.any():
        return np.ones_like(gray)
    if opaque.mean() > 0.5:
        background = float(np.median(gray[opaque]))
    else:
        ink_level = float(np.average(gray, weights=alpha))
        background = 1.0 if ink_level < 0.5 else 0.0
    composited: np.ndarray = gray * alpha + background * (1.0 - alpha)
    return composited


def shrink(gray: np.ndarray, side: int = WORKING_SIDE) -> np.ndarray:
    """Reduce a gray image by area averaging so that its longest side is at most `side`."""
    height, width = gray.shape
    scale = side / max(height, width)
    if scale >= 1.0:
        return gray
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    reduced = Image.fromarray(gray, mode="F").resize(size, Image.Resampling.BOX)
    return np.asarray(reduced, dtype=np.float32)


def ink_is_dark(gray: np.ndarray) -> bool:
    """Decide the ink polarity: True for dark ink on light paper.

    Paper reaches the edges of nearly every digit image, even a tight crop where the ink
    covers more than half of it, so a border that is nearly all one level (three quarters)
    decides. Otherwise ink is the minority of the pixels when the histogram is clear (two
    thirds on one side of the mid level). When neither is clear: dark ink, the usual case.
    A sheet photographed lying on a darker desk is the exception (`_sheet_on_desk`): the
    desk makes the border dark, but the middle of the image is the light sheet.
    """
    smoothed = smooth(gray)
    mid = (float(smoothed.min()) + float(smoothed.max())) / 2
    border_light = float(np.mean(_border(gray) > mid))
    if border_light < 0.5 and _sheet_on_desk(smoothed, mid):
        return True
    if abs(border_light - 0.5) >= 0.25:
        return border_light > 0.5
    light_share = float(np.mean(gray > mid))
    if abs(light_share - 0.5) >= 1 / 6:
        return light_share > 0.5
    return border_light >= 0.5


def _sheet_on_desk(smoothed: np.ndarray, mid: float) -> bool:
    """Whether an image with a dark border is a light sheet on a darker desk: the middle
    of the image (`_middle`) at least `SHEET_SHARE` light, and what is dark there thin
    strokes, at most `THIN_STROKES` of the image's shorter side wide (where the counter of
    a bold light digit filling its frame is a block)."""
    middle = _middle(smoothed)
    if float(np.mean(middle > mid)) < SHEET_SHARE:
        return False
    return bool(stroke_width(middle <= mid) <= THIN_STROKES * min(smoothed.shape))


def _middle(gray: np.ndarray) -> np.ndarray:
    """The middle of `gray`: the box of half its height and half its width."""
    height, width = gray.shape
    return gray[height // 4 : height - height // 4, width // 4 : width - width // 4]


def _border(gray: np.ndarray) -> np.ndarray:
    width = max(1, round(0.03 * min(gray.shape)))
    edges = (gray[:width], gray[-width:], gray[:, :width], gray[:, -width:])
    return np.concatenate([edge.ravel() for edge in edges])


@dataclass(frozen=True)
class Ink:
    """The ink `find_ink` found in a gray image (float32 in 0..1, 1 for ink cores, 0 for
    paper), the specks it dropped beside it (the same scale, zero elsewhere), and the turn
    that levelled the page first (`levelling`; None when it was not turned). Both arrays
    lie in the levelled image's pixels."""

    ink: np.ndarray
    specks: np.ndarray
    turn: Turn | None


def extract_ink(gray: np.ndarray, name: str = "the image") -> np.ndarray:
    """Find the ink: float32 in 0..1, 1 for ink cores, 0 for paper, specks removed.

    The paper level is subtracted, the result scaled so that typical ink is 1 and paper
    noise (three robust standard deviations) is 0, a page turned further than its rules
    are looked for is levelled (`levelling`), a ruled or squared page's printed rules
    (`rules`) and a desk caught beside the page (`page_edges`) are taken out, and ink blobs
    far smaller than the largest one are dropped.
    Raises `NoDigitFoundError` for blank or near-blank images.
    """
    return find_ink(gray, name).ink


def find_ink(gray: np.ndarray, name: str = "the image") -> Ink:
    """`extract_ink`'s ink, the specks it dropped (the number reader gives a digit back the
    specks that are its own) and the turn that levelled the page. Raises what
    `extract_ink` raises."""
    found = _ink_levels(gray, name)
    rules = PageRules.find(found)
    turn = page_turn(found, rules)
    if turn is None:
        found = remove_page_edges(remove_rules(found, rules))
    else:
        inside = turn.inside()
        found = _ink_levels(turn.level(gray), name)
        found = remove_page_edges(remove_rules(found, PageRules.find(found, inside)))
        # The corners beyond the photograph carried its edge pixels on: a desk there has
        # gone with the desk, and whatever else is there was never on the page.
        found = np.where(inside, found, 0.0).astype(np.float32)
    ink = remove_specks(found)
    if np.count_nonzero(ink >= 0.5) < MIN_INK_PIXELS:
        raise NoDigitFoundError(f"{name}: no digit found (only specks, no stroke)")
    return Ink(ink, found - ink, turn)


def _ink_levels(gray: np.ndarray, name: str) -> np.ndarray:
    """How much ink each pixel holds: the paper level subtracted, scaled so that typical
    ink is 1 and paper (and the noise on it) 0. Raises `NoDigitFoundError` when the image
    has no contrast."""
    signal = (1.0 - gray) if ink_is_dark(gray) else gray
    deviation = signal - paper_level(signal)
    contrast = float(smooth(deviation).max())
    if contrast < MIN_CONTRAST:
        raise NoDigitFoundError(f"{name}: no digit found (the image is blank or nearly uniform)")
    inked = deviation >= contrast / 2
    core = median(deviation[inked])
    paper = deviation[~inked]
    paper_median = median(paper) if paper.size else 0.0
    noise = 1.4826 * median(np.abs(paper - paper_median)) if paper.size else 0.0
    # Lossy compression rings faintly around strokes even on clean paper (zero noise):
    # a floor of a few percent of the ink keeps those ripples out of the bounding box.
    paper_top = paper_median + 3 * noise
    floor = min(max(paper_top, FLOOR_SHARE * core), core / 2)
    levels: np.ndarray = np.clip((deviation - floor) / (core - floor), 0.0, 1.0).astype(np.float32)
    return levels


def remove_specks(ink: np.ndarray) -> np.ndarray:
    """Zero the ink blobs (8-connected) whose total ink is tiny next to the largest blob's."""
    labels, count = ndimage.label(ink > 0, structure=_EIGHT_CONNECTED)
    if count <= 1:
        return ink
    mass = ndimage.sum_labels(ink, labels, index=np.arange(1, count + 1))
    keep = np.concatenate([[False], mass >= SPECK_FRACTION * mass.max()])
    return np.where(keep[labels], ink, 0.0).astype(np.float32)


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """Crop to the bounding box of the nonzero pixels. Raises `NoDigitFoundError` if none."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        raise NoDigitFoundError("no digit found (no ink)")
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def thicken_thin_strokes(digit: np.ndarray) -> np.ndarray:
    """Widen strokes much finer than MNIST's to about MNIST's share of the digit's size.

    MNIST was written with pens whose strokes are about an eighth of the digit's height; a
    fine pen photographed up close draws a twentieth, and the model has not seen that. Ink
    within the missing half-width of a stroke is filled in (with a soft edge), so the
    shape is kept. `digit` is cropped to its ink; the result has a margin for the growth.
    """
    mask = digit >= 0.5
    target = STROKE_SHARE * max(digit.shape)
    width = stroke_width(mask)
    if width >= 0.75 * target:
        return digit
    radius = (0.9 * target - width) / 2
    margin = int(np.ceil(radius)) + 1
    padded = np.pad(digit, margin)
    distance = ndimage.distance_transform_edt(~np.pad(mask, margin))
    grown = np.clip(radius + 0.5 - distance, 0.0, 1.0).astype(np.float32)
    thickened: np.ndarray = np.maximum(padded, grown)
    return thickened


def scale_to_box(digit: np.ndarray, box: int = BOX_SIDE) -> np.ndarray:
    """Scale so the longest side is `box` pixels, keeping the aspect ratio, anti-aliased.

    The result is rescaled to peak at 1, as every MNIST digit has a fully inked core.
    """
    height, width = digit.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(np.ascontiguousarray(digit, np.float32), mode="F").resize(
        size, Image.Resampling.LANCZOS
    )
    scaled = np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)
    peak = float(scaled.max())
    return scaled / peak if peak > 0 else scaled


def center_by_mass(digit: np.ndarray, field: int = FIELD_SIDE) -> np.ndarray:
    """Paste `digit` into a `field` x `field` square so that its centre of mass is central.

    The shift is rounded to whole pixels and limited so that no ink falls off the field.
    """
    height, width = digit.shape
    centre_y, centre_x = centre_of_mass(digit)
    top = int(np.clip(round(field / 2 - centre_y), 0, field - height))
    left = int(np.clip(round(field / 2 - centre_x), 0, field - width))
    placed = np.zeros((field, field), np.float32)
    placed[top : top + height, left : left + width] = digit
    return placed


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Map 0..1 floats to uint8 0..255."""
    as_bytes: np.ndarray = np.rint(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)
    return as_bytes

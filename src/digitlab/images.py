"""A person's digit image -> a 28x28 MNIST-style array, made the way MNIST itself was made.

MNIST's digits were size-normalised to fit a 20x20 box keeping their aspect ratio (with
anti-aliasing), then placed in a 28x28 field so that their centre of mass sits at the centre.
A model trained on MNIST expects exactly that, so `to_mnist` rebuilds it from any image:

    decode -> grayscale (alpha laid on a contrasting background) -> ink polarity
    -> flatten the paper and threshold it gently -> drop specks -> crop to the ink
    -> scale the longest side to 20 px -> centre by centre of mass in 28x28

Each step is a public function, so each can be tested and looked at on its own.
"""

from __future__ import annotations

import functools
import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

from digitlab.errors import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NoDigitFoundError,
    NotAnImageError,
)

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray
"""What `to_mnist` accepts: a file path, the file's bytes, a PIL image or a pixel array."""

SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""Pillow formats digitlab decodes (JPEG includes phone cameras' MPO files). Formats that
run external programs (EPS) or are rarely digit images stay out."""

MAX_PIXELS = 50_000_000
"""Largest width x height decoded: a 48-megapixel phone photo fits, a decompression bomb not."""

WORKING_SIDE = 512
"""Larger images are reduced to this longest side first: the digit ends up 20 px tall anyway."""

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

SPECK_FRACTION = 0.05
"""Ink blobs with less than this share of the largest blob's ink are dust or noise."""

# File signatures of the formats above: bytes that start like one of these but do not
# decode are a damaged image, not "not an image".
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)

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
    gray = to_grayscale(decode(image, name, max_memory_bytes))
    digit = crop_to_ink(thicken_thin_strokes(crop_to_ink(extract_ink(gray, name))))
    return to_uint8(center_by_mass(scale_to_box(digit)))


def decode(
    image: ImageSource, name: str = "the image", max_memory_bytes: int | None = None
) -> Image.Image | np.ndarray:
    """Decode a path or bytes into a loaded, upright PIL image; pass images and arrays through.

    Checks the pixel count from the header before decoding (`ImageTooLargeError`; also
    its `memory_needed` against `max_memory_bytes`), for JPEG asks the decoder for a reduced
    size directly, and applies the EXIF orientation.
    """
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Image.Image):
        return ImageOps.exif_transpose(image)
    if isinstance(image, bytes):
        return _decode_stream(io.BytesIO(image), name, max_memory_bytes)
    try:
        with Path(image).open("rb") as stream:
            return _decode_stream(stream, name, max_memory_bytes)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder, not an image file") from None
    except OSError as error:
        raise ImageError(f"{name}: cannot read ({error.strerror or error})") from None


def _decode_stream(stream: BinaryIO, name: str, max_memory_bytes: int | None = None) -> Image.Image:
    image, (width, height) = _open_header(stream, name)
    if max_memory_bytes is not None:
        needed = _peak_memory(image, (width, height))
        if needed > max_memory_bytes:
            raise _too_large(
                name,
                f"{width} x {height} {image.format} {image.mode} pixels would take about "
                f"{needed / 1e6:,.1f} MB of memory, at most {max_memory_bytes / 1e6:,.1f} MB "
                "here: send a smaller image, or a non-progressive JPEG of any size",
            )
    try:
        image.load()
        # In place: otherwise an image without an orientation tag is copied whole.
        ImageOps.exif_transpose(image, in_place=True)
        return image
    except Image.DecompressionBombError:
        raise _too_large(name) from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # Pillow reports truncated and damaged data with any of these types.
        reason = str(error).strip() or type(error).__name__
        raise CorruptImageError(f"{name}: damaged or truncated image ({reason})") from None


def memory_needed(data: bytes, name: str = "the image") -> int:
    """About the most memory, in bytes, that `to_mnist` takes for the image file `data`,
    judged from its header (nothing is decoded): what `max_memory_bytes` is compared with.
    Raises `decode`'s errors for bytes that do not open as an image."""
    return _peak_memory(*_open_header(io.BytesIO(data), name))


def _open_header(stream: BinaryIO, name: str) -> tuple[Image.Image, tuple[int, int]]:
    """Open an image file without decoding it, and its size; a JPEG is then set to decode
    straight to a reduced size (`draft`), which shrinks `image.size`. Refuses more than
    `MAX_PIXELS` and Pillow's decompression bombs with `ImageTooLargeError`."""
    try:
        # Pillow warns, then raises, on huge headers; both mean "too large" here. The warning
        # is made an error so that a bomb below Pillow's own hard limit is not decoded either.
        # (catch_warnings is process-wide; racing threads could at worst mis-restore the
        # filter for this one warning category.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=SUPPORTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_large(name) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        # Unidentified (no plugin accepts the bytes) or cut short inside the header.
        raise _undecodable(stream, name) from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise _too_large(name, f"{width} x {height} pixels, limit {MAX_PIXELS:,}")
    if image.format in ("JPEG", "MPO"):
        image.draft(None, (WORKING_SIDE, WORKING_SIDE))
    return image, (width, height)


def _too_large(name: str, detail: str | None = None) -> ImageTooLargeError:
    message = f"{name}: image too large to decode safely"
    return ImageTooLargeError(f"{message} ({detail})" if detail else message)


# The most memory that decoding an image and reducing it to working size takes, in bytes
# per decoded pixel, by Pillow mode: measured with Pillow 13 at 16 megapixels and rounded
# up (tests/test_images.py checks the figures). Modes not listed (two bands, CMYK, ...) and
# images with transparency take up to 9: Pillow stores them in 4 bytes a pixel and
# averages them through a second, alpha-weighted copy. WebP decodes through extra buffers.
_DECODING_BYTES_PER_PIXEL = {
    "L": 1,
    "1": 2,  # converted to "L" before it is reduced
    **dict.fromkeys(("I;16", "I;16L", "I;16B", "I;16N"), 3),
    **dict.fromkeys(("P", "RGB", "I", "F"), 5),
}
_DECODING_BYTES_PER_PIXEL_AT_MOST = 9
_WEBP_DECODING_BYTES_PER_PIXEL = 16
# What the float arrays of the later steps take, per pixel of the image as reduced in Pillow
# (under 1,024 px a side), then at working size: a few float32 copies of it at a time.
_WORKING_BYTES_PER_PIXEL = 16


def _peak_memory(image: Image.Image, full_size: tuple[int, int]) -> int:
    """About the most memory, in bytes, that `to_mnist` takes for `image` as `_open_header`
    gives it, with its size before any `draft`: the decoded pixels, the copies made to
    reduce them, the later steps' arrays, and a progressive JPEG decoder's buffers."""
    if image.format == "WEBP":
        per_pixel = _WEBP_DECODING_BYTES_PER_PIXEL
    elif image.has_transparency_data:
        per_pixel = _DECODING_BYTES_PER_PIXEL_AT_MOST
    else:
        per_pixel = _DECODING_BYTES_PER_PIXEL.get(image.mode, _DECODING_BYTES_PER_PIXEL_AT_MOST)
    factor = max(1, max(image.size) // WORKING_SIDE)
    reduced = -(-image.width // factor) * -(-image.height // factor)
    needed = image.width * image.height * per_pixel + reduced * _WORKING_BYTES_PER_PIXEL
    if image.format in ("JPEG", "MPO") and image.info.get("progressive"):
        needed += _jpeg_coefficient_bytes(image, *full_size)
    return needed


def _jpeg_coefficient_bytes(image: Image.Image, width: int, height: int) -> int:
    """What a progressive JPEG decoder holds until its last scan: every 8x8 block's 64
    coefficients of 2 bytes, for each component at its own sampling, in whole MCUs."""
    components = [(h, v) for _, h, v, _ in getattr(image, "layer", [])]
    components = components or [(1, 1)] * len(image.getbands())
    most_h = max(h for h, _ in components)
    most_v = max(v for _, v in components)
    mcus = -(-width // (8 * most_h)) * -(-height // (8 * most_v))
    return mcus * sum(h * v for h, v in components) * 64 * 2


def _undecodable(stream: BinaryIO, name: str) -> ImageError:
    """The error for bytes Pillow cannot open: empty, damaged image, or not an image."""
    stream.seek(0)
    head = stream.read(16)
    if not head:
        return NotAnImageError(f"{name}: empty file, not an image")
    if _claims_image_format(head):
        return CorruptImageError(f"{name}: damaged image header, cannot decode")
    formats = ", ".join(SUPPORTED_FORMATS)
    return NotAnImageError(f"{name}: not an image in a supported format ({formats})")


def _claims_image_format(head: bytes) -> bool:
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return True
    return head.startswith(_SIGNATURES)


def to_grayscale(image: Image.Image | np.ndarray) -> np.ndarray:
    """Convert any colour mode to gray float32 in 0..1, alpha composited, at most 512 px a side.

    Palette, CMYK and colour images become luminance (ITU-R 601); 16-bit and float pixels keep
    their precision; transparent pixels take a background that contrasts with the ink (see
    `composite_alpha`).
    """
    if isinstance(image, Image.Image):
        image = _reduce_in_pillow(image)
    return shrink(_array_to_grayscale(np.asarray(image)))


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


def _array_to_grayscale(pixels: np.ndarray) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 2, 3, 4) or min(pixels.shape[:2]) < 1:
        raise ImageError(f"expected an H x W or H x W x 1..4 pixel array, got shape {pixels.shape}")
    values = pixels.astype(np.float32) / _full_scale(pixels)
    channels = values.shape[2]
    color = values[:, :, :3] if channels >= 3 else values[:, :, :1]
    gray = color @ np.array([0.299, 0.587, 0.114], np.float32) if channels >= 3 else color[:, :, 0]
    alpha = values[:, :, -1] if channels in (2, 4) else None
    return composite_alpha(gray, alpha)


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
    return gray * alpha + background * (1.0 - alpha)


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
    """
    smooth = _smooth(gray)
    mid = (float(smooth.min()) + float(smooth.max())) / 2
    border_light = float(np.mean(_border(gray) > mid))
    if abs(border_light - 0.5) >= 0.25:
        return border_light > 0.5
    light_share = float(np.mean(gray > mid))
    if abs(light_share - 0.5) >= 1 / 6:
        return light_share > 0.5
    return border_light >= 0.5


def _border(gray: np.ndarray) -> np.ndarray:
    width = max(1, round(0.03 * min(gray.shape)))
    edges = (gray[:width], gray[-width:], gray[:, :width], gray[:, -width:])
    return np.concatenate([edge.ravel() for edge in edges])


def paper_level(signal: np.ndarray) -> np.ndarray:
    """The paper's level under the ink: a smooth surface fitted to the background.

    `signal` has ink high and paper low. Uneven lighting in a photo makes the paper a slope
    or a vignette rather than one level; a quadratic surface fitted to the darkest quarter of
    each block (ink-filled blocks rejected as outliers) follows it without eating strokes.
    """
    height, width = signal.shape
    grid = max(1, min(8, min(height, width) // 4))
    block_height, block_width = height // grid, width // grid
    blocks = signal[: grid * block_height, : grid * block_width].reshape(
        grid, block_height, grid, block_width
    )
    levels = _lower_quartiles(blocks.transpose(0, 2, 1, 3).reshape(grid * grid, -1))
    terms = _block_terms(grid, block_height / height, block_width / width)
    coefficients = np.array([_median(levels), 0, 0, 0, 0, 0])
    for _ in range(3):
        residual = levels - terms @ coefficients
        spread = max(0.02, 3 * 1.4826 * _median(np.abs(residual)))
        inliers = residual <= spread
        if inliers.sum() < terms.shape[1]:
            break
        coefficients = np.linalg.lstsq(terms[inliers], levels[inliers], rcond=None)[0]
    return _quadratic_surface(coefficients.astype(np.float32), height, width)


# A server preprocesses thousands of same-sized canvases, and np.percentile and np.median
# spend most of their time in generic argument handling on arrays this small: these few
# helpers made `paper_level` 2.4 times faster for a 28x28 image, and `to_mnist` 1.6 times.


def _lower_quartiles(rows: np.ndarray) -> np.ndarray:
    """Each row's 25th percentile, interpolated linearly as `np.percentile` does."""
    ordered = np.sort(rows, axis=1)
    position = 0.25 * (ordered.shape[1] - 1)
    below = int(position)
    above = min(below + 1, ordered.shape[1] - 1)
    return ordered[:, below] + (position - below) * (ordered[:, above] - ordered[:, below])


def _median(values: np.ndarray) -> float:
    """The median of a small 1-D array, as `np.median` gives it."""
    ordered = np.sort(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return float(ordered[middle])
    return float((ordered[middle - 1] + ordered[middle]) / 2)


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
    surface = (c_xy * y) * x
    surface += constant + y * (c_y + c_yy * y)
    surface += x * (c_x + c_xx * x)
    return surface


def _quadratic_terms(y: np.ndarray, x: np.ndarray) -> list[np.ndarray]:
    """The six terms of a quadratic surface in (y, x), broadcast against each other."""
    return [np.ones_like(y * x), y, x, y * y, x * y, x * x]


def _gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """The normalised 1-D Gaussian weights `ndimage.gaussian_filter` uses for `sigma`."""
    radius = int(truncate * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / sigma**2 * offsets.astype(np.float64) ** 2)
    return weights / weights.sum()


_SMOOTHING_KERNEL = _gaussian_kernel(1.0)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _smooth(image: np.ndarray) -> np.ndarray:
    """`ndimage.gaussian_filter(image, 1.0)`, with the kernel computed once: a third of the
    time on a canvas-sized image, the same result."""
    rows = ndimage.correlate1d(image, _SMOOTHING_KERNEL, axis=0, mode="reflect")
    return ndimage.correlate1d(rows, _SMOOTHING_KERNEL, axis=1, mode="reflect")


def extract_ink(gray: np.ndarray, name: str = "the image") -> np.ndarray:
    """Find the ink: float32 in 0..1, 1 for ink cores, 0 for paper, specks removed.

    The paper level is subtracted, the result scaled so that typical ink is 1 and paper
    noise (three robust standard deviations) is 0, and ink blobs far smaller than the
    largest one are dropped. Raises `NoDigitFoundError` for blank or near-blank images.
    """
    signal = (1.0 - gray) if ink_is_dark(gray) else gray
    deviation = signal - paper_level(signal)
    contrast = float(_smooth(deviation).max())
    if contrast < MIN_CONTRAST:
        raise NoDigitFoundError(f"{name}: no digit found (the image is blank or nearly uniform)")
    inked = deviation >= contrast / 2
    core = _median(deviation[inked])
    paper = deviation[~inked]
    paper_median = _median(paper) if paper.size else 0.0
    noise = 1.4826 * _median(np.abs(paper - paper_median)) if paper.size else 0.0
    # Lossy compression rings faintly around strokes even on clean paper (zero noise):
    # a floor of a few percent of the ink keeps those ripples out of the bounding box.
    paper_top = paper_median + 3 * noise
    floor = min(max(paper_top, FLOOR_SHARE * core), core / 2)
    ink = np.clip((deviation - floor) / (core - floor), 0.0, 1.0).astype(np.float32)
    ink = remove_specks(ink)
    if np.count_nonzero(ink >= 0.5) < MIN_INK_PIXELS:
        raise NoDigitFoundError(f"{name}: no digit found (only specks, no stroke)")
    return ink


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


def stroke_width(mask: np.ndarray) -> float:
    """Estimate the typical stroke width in pixels of a binary ink mask.

    A stroke of width w and length L covers w * L pixels and has about 2 * L edge pixels,
    so w is about twice the area over the edge count.
    """
    edge = int(np.count_nonzero(mask & ~_eroded(mask)))
    return 2 * int(np.count_nonzero(mask)) / max(edge, 1)


def _eroded(mask: np.ndarray) -> np.ndarray:
    """`ndimage.binary_erosion(mask)`: the pixels whose four neighbours are all set
    (outside the image counts as unset), by array slicing, several times faster."""
    padded = np.zeros((mask.shape[0] + 2, mask.shape[1] + 2), dtype=bool)
    padded[1:-1, 1:-1] = mask
    return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


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
    return np.maximum(padded, grown)


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
    centre_y, centre_x = _centre_of_mass(digit)
    top = int(np.clip(round(field / 2 - centre_y), 0, field - height))
    left = int(np.clip(round(field / 2 - centre_x), 0, field - width))
    placed = np.zeros((field, field), np.float32)
    placed[top : top + height, left : left + width] = digit
    return placed


def _centre_of_mass(pixels: np.ndarray) -> tuple[float, float]:
    """The (row, column) centre of mass of a 2-D array with a positive sum: what
    `ndimage.center_of_mass` answers, without its per-call overhead."""
    total = pixels.sum(dtype=np.float64)
    rows = pixels.sum(axis=1, dtype=np.float64) @ np.arange(pixels.shape[0], dtype=np.float64)
    columns = pixels.sum(axis=0, dtype=np.float64) @ np.arange(pixels.shape[1], dtype=np.float64)
    return float(rows / total), float(columns / total)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Map 0..1 floats to uint8 0..255."""
    return np.rint(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8)

"""Styled test images: MNIST digits rendered the way people's own digit images look.

People hand a classifier photos, scans and drawings, not MNIST arrays. To measure how well
the real-world path (`to_mnist` + a model) copes, each style here renders an MNIST digit
as such an image file: dark ink on white paper, light ink off-centre on a large dark canvas,
blue ink photographed on grey paper (uneven light, blur, noise, JPEG), low resolution,
thick and thin strokes, tight crops, a small digit on a large canvas, a transparent canvas,
and soft, thick digits that fill the whole frame (a tight scan crop, a small digit scaled up,
a blurred phone crop).

Render only MNIST *test* digits with these, never training digits: the point is to measure
on images the model has not seen.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from digitlab.errors import ConfigError

Renderer = Callable[[np.ndarray, np.random.Generator], tuple[bytes, str]]
"""(28x28 uint8 MNIST digit, random generator) -> (encoded image file, file suffix)."""


def pen_strokes(digit: np.ndarray, scale: float) -> np.ndarray:
    """Upsample an MNIST digit and sharpen it into pen-like strokes (float 0..1 ink).

    The result is cropped to the ink, so each style chooses its own margins.
    """
    side = max(28, round(28 * scale))
    upsampled = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    ink = np.clip((np.asarray(upsampled, np.float32) / 255 - 0.3) / 0.4, 0.0, 1.0)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def change_thickness(ink: np.ndarray, radius: int) -> np.ndarray:
    """Thicken (radius > 0) or thin (radius < 0) strokes with a disc-shaped grey morphology."""
    if radius == 0:
        return ink
    size = abs(radius)
    yy, xx = np.mgrid[-size : size + 1, -size : size + 1]
    disc = yy * yy + xx * xx <= size * size
    morphology = ndimage.grey_dilation if radius > 0 else ndimage.grey_erosion
    if radius > 0:
        ink = np.pad(ink, size)
    return np.asarray(morphology(ink, footprint=disc))


def place(ink: np.ndarray, height: int, width: int, top: int, left: int) -> np.ndarray:
    """Put `ink` on an empty `height` x `width` canvas with its corner at (`top`, `left`)."""
    canvas = np.zeros((height, width), np.float32)
    canvas[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    return canvas


def pad_randomly(ink: np.ndarray, rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """Add a margin on each side, each drawn from `low`..`high` times the digit's height."""
    margins = (rng.uniform(low, high, size=4) * ink.shape[0]).round().astype(int)
    top, bottom, left, right = margins
    return np.pad(ink, ((top, bottom), (left, right)))


def encode(pixels: np.ndarray, image_format: str, **options: int) -> bytes:
    """Encode a uint8 array (gray, RGB or RGBA) as an image file in `image_format`."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def gray_on(ink: np.ndarray, paper: float, ink_level: float) -> np.ndarray:
    """`ink` coverage (0..1) as uint8 gray: `paper` where there is none, `ink_level` where
    it is full."""
    return np.rint(paper + (ink_level - paper) * ink).astype(np.uint8)


def black_on_white(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Dark pen on white paper, scanned: large, with uneven margins. PNG."""
    ink = pad_randomly(pen_strokes(digit, rng.uniform(4, 8)), rng, 0.1, 0.6)
    return encode(gray_on(ink, 255, 0), "PNG"), ".png"


def white_on_black_offcentre(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Light ink on a dark canvas 2.5 to 4 times the digit's size, placed well off-centre. PNG."""
    ink = pen_strokes(digit, rng.uniform(3, 5))
    side = round(max(ink.shape) * rng.uniform(2.5, 4))
    # Draw the corner from the outer thirds of the free room, so the digit is never central.
    rooms = (side - ink.shape[0], side - ink.shape[1])
    top, left = (round(room * (rng.uniform(0, 1 / 3) + rng.choice([0, 2 / 3]))) for room in rooms)
    canvas = place(ink, side, side, top, left)
    return encode(gray_on(canvas, 0, 255), "PNG"), ".png"


def blue_ink_photo(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Blue ballpoint on grey paper, photographed: uneven light, blur, sensor noise. JPEG."""
    scale = rng.uniform(6, 10)
    ink = pen_strokes(digit, scale)
    ink = change_thickness(ink, int(rng.integers(-1, 2) * round(scale / 4)))
    return photograph(pad_randomly(ink, rng, 0.2, 0.7), rng), ".jpg"


def photograph(ink: np.ndarray, rng: np.random.Generator) -> bytes:
    """Blue ballpoint `ink` (float 0..1) on grey paper, photographed: uneven light, blur,
    sensor noise, JPEG at quality 45 to 85. Returns the JPEG file's bytes."""
    height, width = ink.shape
    paper = rng.uniform(150, 200) + np.array([rng.uniform(0, 15), rng.uniform(0, 10), 0.0])
    pen = np.array([rng.uniform(15, 50), rng.uniform(30, 70), rng.uniform(120, 180)])
    color = paper * (1 - ink[..., None]) + pen * ink[..., None]
    # Light falls off across the page: a slope of up to 35% and a soft vignette.
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    angle = rng.uniform(0, 2 * np.pi)
    slope = (np.cos(angle) * xx + np.sin(angle) * yy) * rng.uniform(0.15, 0.35)
    vignette = 0.15 * ((yy - 0.5) ** 2 + (xx - 0.5) ** 2)
    light = 1.0 - slope - vignette + slope.mean()
    color = color * light[..., None]
    color = ndimage.gaussian_filter(color, sigma=(rng.uniform(0.8, 2.0),) * 2 + (0,))
    color = color + rng.normal(0, rng.uniform(3, 8), size=color.shape)
    pixels = np.clip(np.rint(color), 0, 255).astype(np.uint8)
    return encode(pixels, "JPEG", quality=int(rng.integers(45, 85)))


def low_resolution(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A small image: the digit 9 to 14 px tall, dark on white, 1 to 3 px of margin. PNG."""
    ink = pen_strokes(digit, 1.0)
    height = int(rng.integers(9, 15))
    width = max(1, round(ink.shape[1] * height / ink.shape[0]))
    small = Image.fromarray(ink, mode="F").resize((width, height), Image.Resampling.BOX)
    ink = np.clip(np.asarray(small, np.float32), 0, 1)
    ink = np.pad(ink, [tuple(rng.integers(1, 4, size=2)) for _ in range(2)])
    return encode(gray_on(ink, 255, 0), "PNG"), ".png"


def thick_strokes(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A felt-tip pen: strokes about twice as thick as MNIST's, dark on white. PNG."""
    scale = rng.uniform(5, 7)
    ink = change_thickness(pen_strokes(digit, scale), round(scale * rng.uniform(0.6, 1.0)))
    return encode(gray_on(pad_randomly(ink, rng, 0.1, 0.4), 255, 0), "PNG"), ".png"


def thin_strokes(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A fine pen: strokes about half as thick as MNIST's, dark on white. PNG."""
    scale = rng.uniform(6, 8)
    ink = change_thickness(pen_strokes(digit, scale), -round(scale * 0.4))
    return encode(gray_on(pad_randomly(ink, rng, 0.1, 0.4), 255, 0), "PNG"), ".png"


def small_on_large_canvas(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A 40 to 60 px digit somewhere on a 400 to 600 px light-grey canvas. PNG."""
    ink = pen_strokes(digit, rng.uniform(1.5, 2.2))
    side = int(rng.integers(400, 601))
    top, left = (int(rng.integers(0, side - extent)) for extent in ink.shape)
    return encode(gray_on(place(ink, side, side, top, left), 230, 20), "PNG"), ".png"


def tight_crop(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Cropped to the ink with no margin at all, dark on white. BMP."""
    ink = pen_strokes(digit, rng.uniform(3, 6))
    return encode(gray_on(ink, 255, 0), "BMP"), ".bmp"


def transparent_canvas(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A drawing app's export: black strokes on a fully transparent canvas. RGBA PNG."""
    ink = pad_randomly(pen_strokes(digit, rng.uniform(4, 8)), rng, 0.2, 0.5)
    pixels = np.zeros((*ink.shape, 4), np.uint8)
    pixels[..., 3] = np.rint(ink * 255)
    return encode(pixels, "PNG"), ".png"


def fill_frame(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Crop soft `ink` so that the digit fills the frame: no margin, the blurred rim cut
    at a level drawn from 0.1..0.4, so strokes run into the edges."""
    inked = ink >= rng.uniform(0.1, 0.4) * float(ink.max())
    rows = np.flatnonzero(inked.any(axis=1))
    cols = np.flatnonzero(inked.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def soft_thick_pen(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A felt-tip digit, 4 to 8 times MNIST's size, blurred as by a soft scan or a lens."""
    scale = rng.uniform(4, 8)
    ink = change_thickness(pen_strokes(digit, scale), round(scale * rng.uniform(0.2, 1.0)))
    soft = ndimage.gaussian_filter(ink, scale * rng.uniform(0.3, 0.9))
    return np.asarray(soft / soft.max(), np.float32)


def frame_filling_scan(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A tight crop of a scan: soft, thick dark strokes filling the frame, no margin. PNG."""
    ink = fill_frame(soft_thick_pen(digit, rng), rng)
    return encode(gray_on(ink, 255, 0), "PNG"), ".png"


def frame_filling_upscaled(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A small digit (10 to 16 px tall) scaled up 8 to 20 times, bilinear or bicubic, so its
    strokes are blurred, filling the frame with no margin; dark on white. PNG."""
    ink = change_thickness(pen_strokes(digit, 2.0), int(rng.integers(0, 3)))
    height = int(rng.integers(10, 17))
    width = max(1, round(ink.shape[1] * height / ink.shape[0]))
    small = Image.fromarray(ink, mode="F").resize((width, height), Image.Resampling.BOX)
    factor = rng.uniform(8, 20)
    method = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC)[int(rng.integers(2))]
    large = small.resize((round(width * factor), round(height * factor)), method)
    ink = fill_frame(np.clip(np.asarray(large, np.float32), 0.0, 1.0), rng)
    return encode(gray_on(ink, 255, 0), "PNG"), ".png"


def frame_filling_photo(digit: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """A phone photo of a page with a soft, thick ballpoint digit (`photograph`: uneven
    light, blur, noise, JPEG), cropped to the digit with no margin and saved again. JPEG."""
    ink = fill_frame(soft_thick_pen(digit, rng), rng)
    margin = ink.shape[0]
    page = Image.open(io.BytesIO(photograph(np.pad(ink, margin), rng)))
    crop = page.crop((margin, margin, margin + ink.shape[1], margin + ink.shape[0]))
    return encode(np.asarray(crop), "JPEG", quality=int(rng.integers(75, 95))), ".jpg"


STYLES: dict[str, Renderer] = {
    "black_on_white": black_on_white,
    "white_on_black_offcentre": white_on_black_offcentre,
    "blue_ink_photo": blue_ink_photo,
    "low_resolution": low_resolution,
    "thick_strokes": thick_strokes,
    "thin_strokes": thin_strokes,
    "small_on_large_canvas": small_on_large_canvas,
    "tight_crop": tight_crop,
    "transparent_canvas": transparent_canvas,
    "frame_filling_scan": frame_filling_scan,
    "frame_filling_upscaled": frame_filling_upscaled,
    "frame_filling_photo": frame_filling_photo,
}
"""Every style by name, in the order reports list them."""


def render(digit: np.ndarray, style: str, rng: np.random.Generator) -> tuple[bytes, str]:
    """Render one 28x28 MNIST digit in `style`; returns (file bytes, suffix such as ".png").

    Raises `ConfigError` for a style name not in `STYLES`.
    """
    if style not in STYLES:
        raise ConfigError(f"unknown style {style!r}; choose from {', '.join(STYLES)}")
    return STYLES[style](digit, rng)


def write_styled_set(
    folder: str | os.PathLike[str],
    digits: np.ndarray,
    labels: np.ndarray,
    styles: list[str] | None = None,
    seed: int = 0,
) -> dict[str, list[tuple[Path, int]]]:
    """Write every digit in every style as `<folder>/<style>/<label>_<index><suffix>`.

    `digits` are MNIST test images (N x 28 x 28 uint8), `labels` their classes. Returns,
    per style, the (path, label) pairs written. The same seed writes the same files.
    These are generated test files, not a user's data: they are written directly, not
    atomically, so that thousands of them take seconds.
    """
    folder = Path(folder)
    written: dict[str, list[tuple[Path, int]]] = {}
    for number, style in enumerate(styles or list(STYLES)):
        rng = np.random.default_rng([seed, number])
        pairs = []
        for index, (digit, label) in enumerate(zip(digits, labels, strict=True)):
            data, suffix = render(digit, style, rng)
            path = folder / style / f"{int(label)}_{index:05d}{suffix}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            pairs.append((path, int(label)))
        written[style] = pairs
    return written

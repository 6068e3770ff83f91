"""Decoding a user's image file safely: one decoder for every image digitlab is handed.

Uploads to the server, files given to `predict`, class-folder trees and the size scan of
`explore` all open images here, so they share one policy: only `SUPPORTED_FORMATS`, only
regular files (a FIFO would block), at most `MAX_PIXELS` and, when asked, a memory bound
judged from the header (`memory_needed`), a bounded number of JPEG scans (`jpeg_scans`),
and one family of errors (`NotAnImageError`, `CorruptImageError`, `ImageTooLargeError`,
each naming the image).
"""

from __future__ import annotations

import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from digitlab.errors import (
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NotAnImageError,
)
from digitlab.images.jpeg_scans import MAX_JPEG_SCANS, count_scans

ImageSource = str | os.PathLike[str] | bytes | Image.Image | np.ndarray
"""What `to_mnist` accepts: a file path, the file's bytes, a PIL image or a pixel array."""

SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""Pillow formats digitlab decodes (JPEG includes phone cameras' MPO files). Formats that
run external programs (EPS) or are rarely digit images stay out."""

MAX_PIXELS = 50_000_000
"""Largest width x height decoded: a 48-megapixel phone photo fits, a decompression bomb not."""

WORKING_SIDE = 512
"""Larger images are reduced to this longest side first: the digit ends up 20 px tall anyway."""

# File signatures of the formats above: bytes that start like one of these but do not
# decode are a damaged image, not "not an image".
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    _JPEG_SIGNATURE,
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)

# EXIF orientations 5 to 8 turn the image by 90 degrees.
_ORIENTATION_TAG = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says: its format, Pillow mode and upright size."""

    format: str
    mode: str
    width: int
    height: int


def decode(
    image: ImageSource, name: str | None = None, max_memory_bytes: int | None = None
) -> Image.Image | np.ndarray:
    """Decode a path or bytes into a loaded, upright PIL image; pass images and arrays through.

    Checks the pixel count from the header before decoding (`ImageTooLargeError`; also
    its `memory_needed` against `max_memory_bytes`, and a JPEG's number of scans), for
    JPEG asks the decoder for a reduced size directly, and applies the EXIF orientation.
    Errors name the image by `name`, by default its path or "the image".
    """
    if name is None:
        name = str(image) if isinstance(image, (str, os.PathLike)) else "the image"
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Image.Image):
        return ImageOps.exif_transpose(image)
    if isinstance(image, bytes):
        return _decode_stream(io.BytesIO(image), name, max_memory_bytes)
    return decode_file(image, name, max_memory_bytes)


def decode_file(
    path: str | os.PathLike[str], name: str | None = None, max_memory_bytes: int | None = None
) -> Image.Image:
    """`decode` for an image file: a loaded, upright PIL image, with `decode`'s checks and
    errors (named by `name`, by default the path). Only a regular file is opened."""
    name = str(path) if name is None else name
    with _open_regular_file(Path(path), name) as stream:
        return _decode_stream(stream, name, max_memory_bytes)


def read_header(source: str | os.PathLike[str] | bytes, name: str | None = None) -> ImageHeader:
    """The format, mode and upright size of an image file (a path, or its bytes), without
    decoding its pixels, after the checks `decode` makes from the header: a file this
    accepts is one `decode` tries to decode. Raises `decode`'s errors."""
    if isinstance(source, bytes):
        return _header(io.BytesIO(source), "the image" if name is None else name)
    name = str(source) if name is None else name
    with _open_regular_file(Path(source), name) as stream:
        return _header(stream, name)


def _header(stream: BinaryIO, name: str) -> ImageHeader:
    image, (width, height) = _open_header(stream, name)
    with image:
        if image.getexif().get(_ORIENTATION_TAG, 1) in _QUARTER_TURNS:
            width, height = height, width
        return ImageHeader(str(image.format), image.mode, width, height)


def _open_regular_file(path: Path, name: str) -> BinaryIO:
    """Open `path` for reading if it is a regular file: a FIFO or a device would block or
    never end, so they are refused without being read."""
    try:
        # Non-blocking, so that opening a FIFO with no writer returns at once.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder, not an image file") from None
    except OSError as error:
        raise ImageError(f"{name}: cannot read ({error.strerror or error})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        if stat.S_ISDIR(mode):
            raise ImageError(f"{name}: is a folder, not an image file")
        raise ImageError(f"{name}: not a regular file (a pipe, socket or device), not read")
    return os.fdopen(descriptor, "rb")


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
    `MAX_PIXELS`, Pillow's decompression bombs and JPEGs of more than `MAX_JPEG_SCANS`
    scans with `ImageTooLargeError`."""
    stream = _with_jpeg_scans_checked(stream, name)
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


def _with_jpeg_scans_checked(stream: BinaryIO, name: str) -> BinaryIO:
    """`stream`, or for a JPEG its bytes in memory once its scans are counted; refuses a
    JPEG of more than `MAX_JPEG_SCANS` scans, whose decoding work is out of all proportion
    to its size (see `jpeg_scans`)."""
    if stream.read(len(_JPEG_SIGNATURE)) != _JPEG_SIGNATURE:
        stream.seek(0)
        return stream
    stream.seek(0)
    data = stream.getvalue() if isinstance(stream, io.BytesIO) else stream.read()
    if count_scans(data) > MAX_JPEG_SCANS:
        raise _too_large(
            name,
            f"a JPEG of more than {MAX_JPEG_SCANS} scans, where encoders write at most a few "
            "dozen: save it again as an ordinary JPEG or a PNG",
        )
    return io.BytesIO(data)


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
    return int(mcus * sum(h * v for h, v in components) * 64 * 2)


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

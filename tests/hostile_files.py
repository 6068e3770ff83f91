"""Files that test the decoder's guards, built by hand: an oversized PNG header, a folder
that cannot be listed, a JPEG of many scans."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A valid PNG header claiming the size, with a few bytes of pixel data behind it."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def unlistable_folder(parent: Path) -> Path:
    """A folder below `parent` that exists but cannot be listed, even by root (for whom a
    chmod 000 folder is readable): nested so deep that its path is longer than the
    system allows (PATH_MAX), built step by step relative to its parent."""
    descriptor = os.open(parent, os.O_RDONLY)
    path = parent
    try:
        while len(os.fsencode(path)) <= 4096:
            os.mkdir("d" * 200, dir_fd=descriptor)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor, path = inner, path / ("d" * 200)
    finally:
        os.close(descriptor)
    try:
        os.listdir(path)
    except OSError:
        return path
    raise AssertionError(f"{path}: can be listed after all")


def with_scans_repeated(jpeg: bytes, times: int) -> bytes:
    """The JPEG with all its scans (and the tables between them) written `times` over: the
    decoder passes over every block of the image once more for each scan."""
    first_scan = jpeg.index(b"\xff\xda")
    end_of_image = jpeg.rindex(b"\xff\xd9")
    return jpeg[:first_scan] + jpeg[first_scan:end_of_image] * times + jpeg[end_of_image:]

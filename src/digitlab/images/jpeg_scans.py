"""Counting a JPEG file's scans from its bytes, before any decoding.

A progressive JPEG decoder passes over every 8x8 block of the image once per scan, and a
scan can be a dozen bytes (an end-of-band run covering the whole image), so a small file
of thousands of scans costs minutes of CPU while its pixels fit any memory bound. Real
encoders write few scans (libjpeg's progressive scripts 6 for gray and 10 for colour,
a baseline file one per component at most), so the decoder refuses files with more than
`MAX_JPEG_SCANS`. Pillow and libjpeg offer no such bound, hence this marker walk.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

MAX_JPEG_SCANS = 64
"""Most scans (SOS segments) a JPEG may have: several times what real encoders write,
and few enough that decoding the largest image a caller admits stays cheap."""

_START_OF_IMAGE = b"\xff\xd8"
_START_OF_SCAN = 0xDA
_END_OF_IMAGE = 0xD9
# Markers without a length field: TEM, RST0..RST7 (and SOI, handled before the walk).
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# Start-of-frame markers: 0xC0..0xCF but DHT (C4), JPG (C8) and DAC (CC); the progressive ones.
_FRAMES = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PROGRESSIVE_FRAMES = {0xC2, 0xC6, 0xCA, 0xCE}


def count_scans(data: bytes, stop_after: int = MAX_JPEG_SCANS + 1) -> int:
    """The number of scans in the JPEG file `data`, counted up to `stop_after` at most.

    Walks the marker segments (skipping each one's length) and the entropy-coded data
    after each scan header (where 0xFF is followed by 0x00 stuffing or a restart marker).
    Bytes where a marker should be are skipped up to the next 0xFF, as libjpeg skips them
    (with a warning) before decoding every scan after them. Stops at the end of the image
    or of the bytes.
    """
    scans = 0
    for marker in _markers(data):
        if marker == _START_OF_SCAN:
            scans += 1
            if scans >= stop_after:
                break
    return scans


def is_progressive(data: bytes) -> bool:
    """Whether `data` is a progressive JPEG: its frame header (SOF2, SOF6, SOF10 or SOF14)
    says so. Read from the markers alone, whatever size the header claims."""
    for marker in _markers(data):
        if marker in _FRAMES:
            return marker in _PROGRESSIVE_FRAMES
    return False


def _markers(data: bytes) -> Iterator[int]:
    """The markers of the JPEG file `data` after SOI, in order, up to EOI or the end."""
    if not data.startswith(_START_OF_IMAGE):
        return
    position = len(_START_OF_IMAGE)
    while position + 1 < len(data):
        if data[position] != 0xFF:
            position = data.find(b"\xff", position)
            if position < 0:
                return
            continue
        while position + 1 < len(data) and data[position + 1] == 0xFF:
            position += 1  # fill bytes before a marker
        if position + 1 >= len(data):
            return
        marker = data[position + 1]
        position += 2
        if marker == _END_OF_IMAGE:
            return
        yield marker
        if marker in _STANDALONE:
            continue
        if position + 2 > len(data):
            return
        (length,) = struct.unpack_from(">H", data, position)
        position += length
        if marker == _START_OF_SCAN:
            position = _end_of_entropy_coded_data(data, position)


def _end_of_entropy_coded_data(data: bytes, position: int) -> int:
    """The position of the first marker at or after `position` that ends a scan's data."""
    while True:
        position = data.find(b"\xff", position)
        if position < 0 or position + 1 >= len(data):
            return len(data)
        following = data[position + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7:
            position += 2  # a stuffed 0xFF data byte, or a restart marker inside the scan
        elif following == 0xFF:
            position += 1  # fill bytes: the marker follows them
        else:
            return position

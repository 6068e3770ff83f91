"""Hostile inputs for the server's tests and benchmarks, built on demand, never stored.

`tiny_scan_jpeg` makes a progressive JPEG whose scans carry almost no data: each one still
makes the decoder walk every block of the image, so its decoding CPU grows with the file's
size at a rate no ordinary photo comes near.
"""

from __future__ import annotations

import io

from PIL import Image

_SOS, _EOI = 0xDA, 0xD9


def tiny_scan_jpeg(width: int, height: int, size_bytes: int) -> bytes:
    """A blank gray progressive JPEG of `width` x `height`, about `size_bytes` long, padded
    with copies of its smallest scan (an end-of-band run covering every block)."""
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, "JPEG", progressive=True, quality=90)
    segments = _jpeg_segments(buffer.getvalue())
    head = b"\xff\xd8" + b"".join(data for marker, data in segments if marker != _EOI)
    scans = [data for marker, data in segments if marker == _SOS]
    smallest = min(scans[1:], key=len)
    copies = max(0, (size_bytes - len(head) - 2) // len(smallest))
    return head + smallest * copies + b"\xff\xd9"


def with_stray_byte(jpeg: bytes) -> bytes:
    """The JPEG with a 0x00 byte before its first scan, where a marker should be: libjpeg
    skips it with a warning and decodes every scan after it."""
    first_scan = jpeg.index(b"\xff\xda")
    return jpeg[:first_scan] + b"\x00" + jpeg[first_scan:]


def _jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """The marker segments after SOI, each with its bytes; a scan's entropy-coded data
    (up to the next marker that is neither a stuffed FF00 nor a restart) goes with it."""
    segments = []
    position = 2
    while position < len(data):
        marker = data[position + 1]
        if marker == _EOI:
            segments.append((marker, data[position:]))
            break
        end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == _SOS:
            end = data.index(b"\xff", end)
            while data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end = data.index(b"\xff", end + 2)
        segments.append((marker, data[position:end]))
        position = end
    return segments

"""The one guarded decoder: JPEG scan counting and bound, regular files only, headers."""

from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pytest
from PIL import Image

from digitlab.errors import ImageError, ImageTooLargeError
from digitlab.images import MAX_JPEG_SCANS, decode, memory_needed, read_header, to_mnist
from digitlab.images.jpeg_scans import count_scans, is_progressive
from hostile_files import png_claiming, with_scans_repeated


def _jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def digit_page(mnist) -> Image.Image:
    """A test-set digit, dark on white, at 10x MNIST size."""
    _, (x_test, _) = mnist
    pixels = 255 - np.kron(x_test[0], np.ones((10, 10), np.uint8))
    return Image.fromarray(np.pad(pixels, 60, constant_values=255))


def test_count_scans_matches_what_encoders_write(digit_page):
    """libjpeg writes one scan for a baseline image and its progressive scripts six for
    gray and ten for colour; restart markers and stuffed 0xFF bytes do not count."""
    colour = digit_page.convert("RGB")
    assert count_scans(_jpeg(digit_page)) == 1
    assert count_scans(_jpeg(colour, restart_marker_blocks=4)) == 1
    assert count_scans(_jpeg(digit_page, progressive=True)) == 6
    assert count_scans(_jpeg(colour, progressive=True, optimize=True)) == 10
    assert count_scans(with_scans_repeated(_jpeg(colour, progressive=True), 3)) == 30
    assert count_scans(b"\x89PNG\r\n\x1a\n") == 0


def test_is_progressive_reads_the_frame_marker_whatever_size_it_claims(digit_page):
    progressive = bytearray(_jpeg(digit_page, progressive=True))
    assert is_progressive(bytes(progressive))
    assert not is_progressive(_jpeg(digit_page))
    assert not is_progressive(b"\x89PNG\r\n\x1a\n")
    frame = progressive.index(b"\xff\xc2")  # SOF2: length (2), precision (1), height, width
    progressive[frame + 5 : frame + 9] = (60000).to_bytes(2, "big") * 2
    assert is_progressive(bytes(progressive))


def test_a_jpeg_of_thousands_of_scans_is_refused_before_decoding(digit_page, tmp_path):
    """Each scan costs the decoder a pass over the whole image: thousands of them cost
    minutes of CPU in a file small enough for any memory bound."""
    hostile = with_scans_repeated(_jpeg(digit_page, progressive=True), 500)
    assert count_scans(hostile) > MAX_JPEG_SCANS
    path = tmp_path / "scans.jpg"
    path.write_bytes(hostile)
    started = time.process_time()
    for refuse in (
        lambda: decode(hostile, "upload.jpg"),
        lambda: to_mnist(hostile, "upload.jpg", max_memory_bytes=24_000_000),
        lambda: memory_needed(hostile, "upload.jpg"),
        lambda: decode(path),
        lambda: read_header(path),
    ):
        with pytest.raises(ImageTooLargeError, match=r"(upload|scans)\.jpg: .*more than 64 scans"):
            refuse()
    assert time.process_time() - started < 1.0


def test_junk_before_a_scan_does_not_hide_the_scans_after_it(digit_page):
    """libjpeg skips stray bytes where a marker should be and decodes every scan after
    them, so the count must go on past them too."""
    hostile = with_scans_repeated(_jpeg(digit_page, progressive=True), 500)
    first_scan = hostile.index(b"\xff\xda")
    junk_first = hostile[:first_scan] + b"\x00" + hostile[first_scan:]
    assert count_scans(junk_first) > MAX_JPEG_SCANS
    with pytest.raises(ImageTooLargeError, match="more than 64 scans"):
        decode(junk_first, "upload.jpg")


def _with_first_scan_repeated(jpeg: bytes, times: int) -> bytes:
    """The file with its first scan written `times` over: a first scan sets coefficients
    rather than refining them, so the image decodes the same, through more scans."""
    first_scan = jpeg.index(b"\xff\xda")
    second_scan = jpeg.index(b"\xff\xda", first_scan + 2)
    return jpeg[:first_scan] + jpeg[first_scan:second_scan] * times + jpeg[second_scan:]


def test_a_jpeg_at_the_scan_limit_decodes(digit_page):
    """Up to the limit a JPEG is read: far more scans than libjpeg's scripts write."""
    progressive = _jpeg(digit_page.convert("RGB"), progressive=True)
    at_limit = _with_first_scan_repeated(progressive, MAX_JPEG_SCANS - 9)
    assert count_scans(at_limit) == MAX_JPEG_SCANS
    assert np.array_equal(np.asarray(decode(at_limit)), np.asarray(decode(progressive)))
    with pytest.raises(ImageTooLargeError, match="more than 64 scans"):
        decode(_with_first_scan_repeated(progressive, MAX_JPEG_SCANS - 8))


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    errors: list[Exception] = []

    def read_it() -> None:
        try:
            to_mnist(fifo)
        except ImageError as error:
            errors.append(error)

    # A daemon thread: opening a FIFO for reading blocks until a writer comes.
    reader = threading.Thread(target=read_it, daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "opening the FIFO blocked"
    assert len(errors) == 1
    assert str(errors[0]) == f"{fifo}: not a regular file (a pipe, socket or device), not read"


def test_read_header_gives_the_upright_size_and_refuses_what_decode_refuses(tmp_path):
    photo = Image.new("L", (30, 20), 255)
    exif = photo.getexif()
    exif[0x0112] = 6  # turned a quarter
    path = tmp_path / "turned.jpg"
    photo.save(path, exif=exif)
    header = read_header(path)
    assert (header.format, header.mode, header.width, header.height) == ("JPEG", "L", 20, 30)
    eps = tmp_path / "figure.eps"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(ImageError, match="figure.eps: not an image in a supported format"):
        read_header(eps)


def test_the_size_scan_lists_what_the_decoder_refuses(tmp_path):
    """explore's size scan reads headers through the decoder: an EPS (which Pillow would
    open, and render through Ghostscript) and a 169-megapixel PNG are not counted."""
    from digitlab.exploration.analysis import scan_image_sizes

    folder = tmp_path / "7"
    folder.mkdir()
    Image.new("L", (30, 20), 255).save(folder / "seven.png")
    (folder / "figure.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    (folder / "huge.png").write_bytes(png_claiming(13_000, 13_000))
    sizes = scan_image_sizes(tmp_path)
    assert sizes.widths.tolist() == [30] and sizes.heights.tolist() == [20]
    assert sizes.format_modes == {"PNG L": 1}
    assert sorted(sizes.not_images) == ["7/figure.eps", "7/huge.png"]

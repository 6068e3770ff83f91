"""to_mnist: every decoding and preprocessing step, the errors, and robustness on styled images."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.neighbors import KNeighborsClassifier

from digitlab.errors import (
    CorruptImageError,
    ImageTooLargeError,
    NoDigitFoundError,
    NotAnImageError,
)
from digitlab.images import (
    MAX_PIXELS,
    center_by_mass,
    crop_to_ink,
    decode,
    extract_ink,
    ink_is_dark,
    scale_to_box,
    to_grayscale,
    to_mnist,
)
from digitlab.images.fast_paths import centre_of_mass, eroded, lower_quartiles, median, smooth
from digitlab.styles import STYLES, pen_strokes, render
from hostile_files import png_claiming

STYLED_DIGITS = 150


@pytest.fixture(scope="module")
def digit(mnist) -> np.ndarray:
    """A test-set 7: asymmetric, so a wrong rotation or flip shows."""
    _, (x_test, y_test) = mnist
    return x_test[np.flatnonzero(y_test == 7)[0]]


@pytest.fixture(scope="module")
def page(digit) -> np.ndarray:
    """The 7 as dark pen on white paper, 5x MNIST size with margins: uint8 gray."""
    ink = np.pad(pen_strokes(digit, 5), 40)
    return np.rint(255 * (1 - ink)).astype(np.uint8)


@pytest.fixture(scope="module")
def expected(page) -> np.ndarray:
    return to_mnist(page).astype(int)


@pytest.fixture(scope="module")
def knn(mnist) -> KNeighborsClassifier:
    """A quick model that is very sensitive to position and scale: a fair test of centring."""
    (x_train, y_train), _ = mnist
    return KNeighborsClassifier(n_neighbors=3).fit(
        x_train[:20000].reshape(-1, 784), y_train[:20000]
    )


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _mean_difference(image: np.ndarray, expected: np.ndarray) -> float:
    """Mean absolute difference in gray levels, allowing a shift of one pixel either way:
    a different rounding of the centre of mass moves a digit by a pixel, as in MNIST itself."""
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return min(
        float(np.abs(np.roll(image.astype(int), shift, axis=(0, 1)) - expected).mean())
        for shift in shifts
    )


def test_to_mnist_returns_uint8_28x28_white_ink_centred(page):
    result = to_mnist(page)
    assert result.dtype == np.uint8 and result.shape == (28, 28)
    assert result.max() == 255 and result[0].max() == 0 and result[:, 0].max() == 0
    rows = np.flatnonzero(result.any(axis=1))
    cols = np.flatnonzero(result.any(axis=0))
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 20


def test_to_mnist_leaves_mnist_digits_nearly_unchanged(mnist, knn):
    _, (x_test, y_test) = mnist
    digits = x_test[:300]
    redone = np.stack([to_mnist(image) for image in digits])
    assert np.abs(redone.astype(int) - digits).mean() < 3
    accuracy_plain = (knn.predict(digits.reshape(-1, 784)) == y_test[:300]).mean()
    accuracy_redone = (knn.predict(redone.reshape(-1, 784)) == y_test[:300]).mean()
    assert accuracy_redone >= accuracy_plain - 0.01


@pytest.mark.parametrize(
    ("image_format", "options"),
    [
        ("PNG", {}),
        ("JPEG", {"quality": 95}),
        ("BMP", {}),
        ("GIF", {}),
        ("TIFF", {}),
        ("WEBP", {"lossless": True}),
        ("PPM", {}),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_decode_reads_every_supported_format(page, expected, image_format, options):
    data = _encode(Image.fromarray(page), image_format, **options)
    assert _mean_difference(to_mnist(data), expected) < 4


def test_decode_applies_exif_orientation(page):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    stored = Image.fromarray(page).transpose(Image.Transpose.ROTATE_90)
    upright = decode(_encode(stored, "PNG", exif=exif))
    assert np.array_equal(np.asarray(upright), page)


def test_decode_reads_a_path_and_names_it_in_errors(tmp_path, page, expected):
    good = tmp_path / "seven.png"
    good.write_bytes(_encode(Image.fromarray(page), "PNG"))
    assert np.array_equal(to_mnist(good), expected)
    bad = tmp_path / "notes.png"
    bad.write_text("shopping list: eggs, milk")
    with pytest.raises(NotAnImageError, match="notes.png"):
        to_mnist(bad)


def test_grayscale_of_palette_image_matches_gray(page, expected):
    palette = Image.fromarray(page).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert _mean_difference(to_mnist(_encode(palette, "PNG")), expected) < 4


def test_grayscale_of_16_bit_image_keeps_its_levels(page, expected):
    wide = Image.fromarray(page.astype(np.uint16) * 257)
    assert wide.mode.startswith("I;16")
    assert np.abs(to_grayscale(wide) - page / 255).max() < 1e-3
    assert np.array_equal(to_mnist(_encode(wide, "PNG")), expected)


def test_grayscale_of_cmyk_image_matches_gray(page, expected):
    cmyk = Image.fromarray(page).convert("RGB").convert("CMYK")
    assert _mean_difference(to_mnist(_encode(cmyk, "TIFF")), expected) < 2


@pytest.mark.parametrize("ink_value", [0, 255], ids=["black-strokes", "white-strokes"])
def test_alpha_drawing_on_transparent_canvas_is_composited_to_contrast(page, expected, ink_value):
    alpha = 255 - page  # opaque where the ink is, transparent elsewhere
    rgba = np.dstack([np.full_like(page, ink_value)] * 3 + [alpha])
    assert _mean_difference(to_mnist(_encode(Image.fromarray(rgba), "PNG")), expected) < 2


def test_alpha_around_an_opaque_page_takes_the_paper_level(page, expected):
    rgba = np.dstack([page] * 3 + [np.full_like(page, 255)])
    rgba[:10, :, 3] = 0  # a transparent strip above the paper
    assert _mean_difference(to_mnist(Image.fromarray(rgba)), expected) < 2


def test_ink_polarity_comes_from_border_and_histogram(page, mnist):
    assert ink_is_dark(page / 255)
    assert not ink_is_dark(1 - page / 255)
    # Ink covering more than half of a tight crop: the paper border decides.
    bold = np.ones((60, 60))
    bold[6:54, 6:54] = 0.0
    bold[22:38, 22:38] = 1.0
    assert (bold < 0.5).mean() > 0.55
    assert ink_is_dark(bold) and not ink_is_dark(1 - bold)
    # A dark table along one edge of the photo: the border is mixed, the histogram decides.
    photo = np.ones((100, 100))
    photo[:, :20] = 0.0
    photo[40:70, 50:53] = 0.0
    edges = np.concatenate([photo[0], photo[-1], photo[:, 0], photo[:, -1]])
    assert 0.6 < edges.mean() < 0.7
    assert ink_is_dark(photo) and not ink_is_dark(1 - photo)
    # Tightly cropped ones: dark ink is most of the picture.
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(0)
    for one in x_test[y_test == 1][:20]:
        gray = to_grayscale(decode(render(one, "tight_crop", rng)[0]))
        assert ink_is_dark(gray)


def test_a_light_sheet_lying_on_a_darker_desk_has_dark_ink():
    # The desk is the whole border, so the border alone said light ink.
    photo = np.full((100, 200), 0.35)
    photo[20:80, 40:160] = 1.0
    photo[35:65, 70:73] = photo[35:65, 120:123] = 0.0
    assert ink_is_dark(photo)
    # Light ink on a dark page whose middle is as light, but in a block: the border decides.
    block = np.zeros((100, 200))
    block[20:80, 40:160] = 1.0
    block[35:65, 80:120] = 0.0
    assert not ink_is_dark(block)


def test_inverted_and_off_centre_digit_gives_the_same_image(page, expected):
    canvas = np.zeros((700, 500), np.uint8)
    canvas[20 : 20 + page.shape[0], 300 : 300 + page.shape[1]] = 255 - page
    assert _mean_difference(to_mnist(canvas), expected) < 4  # reduced to 512 px: resampled


def test_coloured_ink_on_unevenly_lit_grey_paper_gives_the_same_image(page, expected):
    ink = 1 - page[..., None] / 255
    paper, pen = np.array([170, 165, 150]), np.array([30, 50, 160])
    color = paper * (1 - ink) + pen * ink
    light = np.linspace(1.15, 0.75, page.shape[1])[None, :, None]
    noisy = color * light + np.random.default_rng(0).normal(0, 5, color.shape)
    photo = np.clip(noisy, 0, 255).astype(np.uint8)
    assert (
        _mean_difference(to_mnist(_encode(Image.fromarray(photo), "JPEG", quality=70)), expected)
        < 8
    )


def test_extract_ink_removes_specks_far_from_the_digit(page, expected):
    dusty = page.copy()
    dusty[5:7, 5:7] = 0
    dusty[-8:-6, -30:-28] = 0
    ink = extract_ink(dusty / 255)
    assert ink[5:7, 5:7].max() == 0
    assert np.array_equal(to_mnist(dusty), expected)


def test_crop_scale_and_centre_follow_mnist():
    ink = np.zeros((100, 80), np.float32)
    ink[10:70, 30:45] = 1.0  # a 60 x 15 bar
    cropped = crop_to_ink(ink)
    assert cropped.shape == (60, 15)
    boxed = scale_to_box(cropped)
    assert boxed.shape == (20, 5) and boxed.max() == 1.0
    centred = center_by_mass(boxed)
    assert centred.shape == (28, 28)
    centre = np.array(np.nonzero(centred > 0.5)).mean(axis=1)
    assert np.allclose(centre, 14, atol=0.6)


def test_center_by_mass_keeps_ink_inside_the_field():
    lopsided = np.zeros((20, 20), np.float32)
    lopsided[:2, :] = 1.0  # all mass at the top: the ideal shift would push the box off
    centred = center_by_mass(lopsided)
    assert centred.sum() == lopsided.sum()


def _assert_fast_helpers_match_the_library(pixels: np.ndarray) -> None:
    assert np.array_equal(smooth(pixels), ndimage.gaussian_filter(pixels, 1.0))
    mask = pixels > 0.3
    assert np.array_equal(eroded(mask), ndimage.binary_erosion(mask))
    # ndimage sums a float32 image in float32; the helper in float64.
    assert centre_of_mass(pixels) == pytest.approx(ndimage.center_of_mass(pixels), abs=1e-5)
    rows = pixels.reshape(pixels.shape[0], -1)
    assert np.allclose(lower_quartiles(rows), np.percentile(rows, 25, axis=1), rtol=0, atol=1e-6)
    assert median(pixels.ravel()) == pytest.approx(float(np.median(pixels)), abs=1e-6)
    # Odd and even lengths take different branches of the median.
    assert median(pixels.ravel()[1:]) == pytest.approx(float(np.median(pixels.ravel()[1:])))


def test_fast_helpers_give_scipys_and_numpys_results(mnist):
    """The server's hot path replaces a few library calls by cheaper equivalents: each must
    answer what the library does, exactly or to rounding, on random and real digits."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        shape = tuple(rng.integers(2, 40, size=2))
        pixels = rng.random(shape).astype(np.float32) * (rng.random(shape) < 0.6)
        pixels[rng.integers(shape[0]), rng.integers(shape[1])] = 1.0  # never all zero
        _assert_fast_helpers_match_the_library(pixels)
    _, (x_test, _) = mnist
    for digit in x_test[:50]:
        _assert_fast_helpers_match_the_library(digit.astype(np.float32) / 255)


def _float_tiff(pixels: np.ndarray, path) -> str:
    Image.fromarray(pixels.astype(np.float32), mode="F").save(path, format="TIFF")
    return str(path)


def test_a_nan_pixel_in_a_float_tiff_is_refused_naming_the_file(page, tmp_path):
    pixels = page / 255.0
    pixels[5, 7] = np.nan
    path = _float_tiff(pixels, tmp_path / "scan.tif")
    with pytest.raises(CorruptImageError, match=r"scan.tif: NaN \(not a number\) in 1 pixel\(s\)"):
        to_mnist(path)


def test_infinite_pixels_in_a_float_tiff_count_as_the_lightest_and_darkest(page, tmp_path):
    """A clear 7 stays a clear 7 with an infinite pixel on its paper, light or dark."""
    pixels = page / 255.0
    plain = to_mnist(_float_tiff(pixels, tmp_path / "plain.tif"))
    assert np.array_equal(plain, to_mnist(page))
    pixels[0, 0] = np.inf
    assert np.array_equal(to_mnist(_float_tiff(pixels, tmp_path / "inf.tif")), plain)
    pixels[-1, -1] = -np.inf
    assert np.array_equal(to_mnist(_float_tiff(pixels, tmp_path / "both.tif")), plain)
    with pytest.raises(CorruptImageError, match="every pixel is infinite"):
        to_mnist(_float_tiff(np.full((40, 40), np.inf), tmp_path / "all.tif"))


def test_blank_and_near_blank_images_raise_no_digit_found():
    rng = np.random.default_rng(0)
    white = np.full((200, 200), 255, np.uint8)
    grey_noise = np.clip(160 + rng.normal(0, 6, (300, 300)), 0, 255).astype(np.uint8)
    shaded = np.tile(np.linspace(120, 220, 300), (300, 1)).astype(np.uint8)
    speck = white.copy()
    speck[100, 100] = 0
    for blank in (white, grey_noise, shaded, speck):
        with pytest.raises(NoDigitFoundError, match="no digit found"):
            to_mnist(blank)


def test_non_image_and_empty_bytes_raise_not_an_image():
    with pytest.raises(NotAnImageError, match="empty"):
        to_mnist(b"")
    with pytest.raises(NotAnImageError, match="not an image"):
        to_mnist(b"%PDF-1.4 not a picture at all")


def test_truncated_image_raises_corrupt_image(page):
    data = _encode(Image.fromarray(page), "PNG")
    with pytest.raises(CorruptImageError, match="upload.png"):
        to_mnist(data[: len(data) // 2], name="upload.png")
    with pytest.raises(CorruptImageError):
        to_mnist(data[:20])


@pytest.mark.parametrize(
    "side", [8_000, 10_000, 100_000], ids=["over-ours", "pillow-warns", "bomb"]
)
def test_decompression_bomb_is_refused_from_the_header(side):
    assert side * side > MAX_PIXELS
    started = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="too large"):
        to_mnist(png_claiming(side, side))
    assert time.perf_counter() - started < 1.0  # nothing was decoded or allocated


def test_memory_limit_refuses_a_large_png_but_not_a_baseline_jpeg_of_it():
    page = _page_with_a_bar("L", 4000)
    png, jpeg, progressive = (
        _encoded(page, image_format, **options)
        for image_format, options in (("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}))
    )
    # 16 MB of gray pixels, and float arrays at 572 x 572 after Pillow reduces it.
    with pytest.raises(ImageTooLargeError, match=r"4000 x 4000 PNG L pixels .* about 21\.2 MB"):
        to_mnist(png, max_memory_bytes=18_000_000)
    # Decoded straight to a quarter of each side.
    assert to_mnist(jpeg, max_memory_bytes=18_000_000).max() > 0
    # A progressive decoder holds every 8x8 block's coefficients until its last scan: 32 MB.
    with pytest.raises(ImageTooLargeError, match=r"JPEG L pixels would take about 49\.0 MB"):
        to_mnist(progressive, max_memory_bytes=18_000_000)


def _encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def _page_with_a_bar(mode: str, side: int) -> Image.Image:
    """A `side` x `side` white page with a dark bar (a '1'), in Pillow mode `mode`."""
    page = np.full((side, side), 255, dtype=np.uint8)
    page[side // 5 : 4 * side // 5, 9 * side // 20 : 11 * side // 20] = 0
    if mode == "I;16":
        return Image.fromarray(page.astype(np.uint16) * 257)
    return Image.fromarray(page).convert(mode)


_DECODING_CASES = {
    "png-gray": ("L", "PNG", {}),
    "png-bilevel": ("1", "PNG", {}),
    "png-gray-alpha": ("LA", "PNG", {}),
    "png-16-bit": ("I;16", "PNG", {}),
    "png-palette-with-transparency": ("P", "PNG", {"transparency": 255}),
    "png-rgba": ("RGBA", "PNG", {}),
    "gif": ("L", "GIF", {}),
    "tiff-cmyk": ("CMYK", "TIFF", {"compression": "tiff_deflate"}),
    "tiff-float": ("F", "TIFF", {"compression": "tiff_deflate"}),
    "webp": ("RGB", "WEBP", {"lossless": True}),
    "jpeg-baseline": ("RGB", "JPEG", {}),
    "jpeg-progressive": ("RGB", "JPEG", {"progressive": True}),
    "jpeg-progressive-444": ("RGB", "JPEG", {"progressive": True, "subsampling": 0}),
    "jpeg-progressive-gray": ("L", "JPEG", {"progressive": True}),
}


@pytest.mark.parametrize(
    "mode, image_format, options", _DECODING_CASES.values(), ids=list(_DECODING_CASES)
)
def test_to_mnist_takes_no_more_memory_than_estimated(tmp_path, mode, image_format, options):
    """A server refuses images by `memory_needed`, so it must not underestimate: the peak
    memory of `to_mnist` on a 9-megapixel image, in a fresh process, stays within it."""
    large, small = tmp_path / "large", tmp_path / "small"
    _page_with_a_bar(mode, 3000).save(large, format=image_format, **options)
    _page_with_a_bar(mode, 300).save(small, format=image_format, **options)
    # Linux keeps a process's peak resident memory in VmHWM, and resets it to the present
    # figure when "5" is written to /proc/self/clear_refs.
    script = (
        "import sys\n"
        "from digitlab.images import memory_needed, to_mnist\n"
        "def kib(key):\n"
        "    status = open('/proc/self/status').read().splitlines()\n"
        "    return int(next(line.split()[1] for line in status if line.startswith(key)))\n"
        "to_mnist(sys.argv[2])  # loads the format's plugin and everything else lazily loaded\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "estimate = memory_needed(data)\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = kib('VmRSS:')\n"
        "to_mnist(data)\n"
        "print(1024 * (kib('VmHWM:') - before), estimate)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(large), str(small)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-500:]
    peak, estimate = (int(word) for word in done.stdout.split())
    assert peak <= estimate, f"peak {peak / 1e6:.1f} MB, estimate {estimate / 1e6:.1f} MB"


def _to_mnist_under_memory_cap(path, cap_bytes: int) -> subprocess.CompletedProcess:
    """Run to_mnist on `path` in a fresh process whose address space is capped."""
    script = (
        "import resource, sys\n"
        f"resource.setrlimit(resource.RLIMIT_AS, ({cap_bytes}, {cap_bytes}))\n"
        "from digitlab.errors import ImageError\n"
        "from digitlab.images import to_mnist\n"
        "try:\n"
        "    print(to_mnist(sys.argv[1]).max())\n"
        "except ImageError as error:\n"
        "    print(error)\n"
    )
    # One BLAS thread: thread buffers count against the cap on machines with many cores.
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_decompression_bomb_is_refused_under_a_memory_cap(tmp_path):
    """A 100,000 x 100,000 PNG in a process limited to 2 GiB: decoding it would need 10 GB."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_claiming(100_000, 100_000))
    done = _to_mnist_under_memory_cap(bomb, 2 << 30)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.startswith(f"{bomb}: image too large")


def test_a_25_megapixel_png_is_reduced_within_a_memory_cap(tmp_path):
    """Pillow box-reduces a large image before any float array exists: 768 MiB suffices."""
    from PIL import ImageDraw

    canvas = Image.new("RGBA", (5000, 5000), (255, 255, 255, 255))
    ImageDraw.Draw(canvas).line([(2000, 1000), (2500, 4000)], fill=(0, 0, 0, 255), width=110)
    path = tmp_path / "large.png"
    canvas.save(path, format="PNG", compress_level=1)
    del canvas
    done = _to_mnist_under_memory_cap(path, 3 << 28)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == "255"


@pytest.fixture(scope="module")
def shipped():
    """The model shipped with digitlab, as `digitlab predict` uses it by default."""
    from digitlab.inference.predictor import Predictor

    return Predictor.load()


@pytest.mark.parametrize("style", list(STYLES))
def test_styled_test_digits_score_close_to_plain_mnist(mnist, knn, shipped, style):
    """Two readers: k-NN, which fails on any misplaced or mis-scaled digit, and the shipped
    model, which must reach the 92% target on every style."""
    _, (x_test, y_test) = mnist
    digits, labels = x_test[-STYLED_DIGITS:], y_test[-STYLED_DIGITS:]
    rng = np.random.default_rng(5)
    prepared = np.stack([to_mnist(render(image, style, rng)[0]) for image in digits])
    plain = (knn.predict(digits.reshape(-1, 784)) == labels).mean()
    styled = (knn.predict(prepared.reshape(-1, 784)) == labels).mean()
    assert styled >= plain - 0.07, f"{style}: k-NN {styled:.3f} against {plain:.3f} on MNIST"
    model_plain = (shipped.predict(digits).digits == labels).mean()
    model_styled = (shipped.predict(prepared).digits == labels).mean()
    assert model_styled >= max(0.92, model_plain - 0.04), (
        f"{style}: shipped model {model_styled:.3f} against {model_plain:.3f} on MNIST"
    )

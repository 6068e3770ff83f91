"""Digits as people send and draw them: PNG bytes, scans on paper, and pen strokes (traced
from real MNIST digits, or drawn as a hand would) for the browser tests."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from digitlab.inference.predictor import Predictor
    from digitlab.reading import NumberReading


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode a uint8 gray (H x W) or RGB(A) array as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def paper_png(digit: np.ndarray, side: int = 200) -> bytes:
    """An MNIST digit as a person's scan would look: dark ink on white paper, `side` px wide."""
    enlarged = Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)
    return png_bytes(255 - np.asarray(enlarged))


def digits_in_look(
    x: np.ndarray, y: np.ndarray, look: str, seed: int, count: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """`count` of the digits `x` (labels `y`), each written alone in a look of
    `number_images` (a notebook page, a desk beside the sheet) and read back by `to_mnist`:
    (the 28 x 28 images, their positions in `x`)."""
    from digitlab.images import to_mnist
    from digitlab.number_images import compose_number

    rng = np.random.default_rng(seed)
    picks = rng.choice(len(x), size=count, replace=False)
    images = [to_mnist(compose_number(x[[i]], y[[i]], rng, look=look).data) for i in picks]
    return np.stack(images), picks


def numbers_read_right(
    x: np.ndarray,
    y: np.ndarray,
    predictor: Predictor,
    looks: tuple[str, ...],
    seed: int,
    count: int,
    lengths: tuple[int, int] = (2, 7),
    turn: float = 0.0,
    narrowing: float = 0.0,
) -> dict[str, int]:
    """How many of `count` numbers of the digits `x` (labels `y`), `lengths[0]` to
    `lengths[1] - 1` long with ordinary gaps, each written in every one of `looks`,
    `predictor` reads right, per look. `turn`: the degrees each image is photographed
    askew, one way and the other in turn; `narrowing`: the page photographed at an angle
    (`photographed_at_an_angle`), from nearer its top and its bottom in turn."""
    from digitlab.number_images import compose_number, photographed_at_an_angle
    from digitlab.reading import read_number

    rng = np.random.default_rng(seed)
    right = dict.fromkeys(looks, 0)
    for number in range(count):
        picked = rng.integers(0, len(x), size=int(rng.integers(*lengths)))
        for look in looks:
            turned = turn if number % 2 else -turn
            item = compose_number(x[picked], y[picked], rng, "ordinary", look, turned=turned)
            if narrowing:
                item = photographed_at_an_angle(item, narrowing if number % 2 else -narrowing)
            reading = read_number(item.data, predictor)
            right[look] += reading.number == item.number
    return right


def assert_boxes_round_digits(
    reading: NumberReading, boxes: tuple[tuple[int, int, int, int], ...]
) -> None:
    """Each digit `reading` found lies in the composed box of its digit, give or take 2
    pixels, and fills at least 0.3 of it: a composed box photographed turned or at an
    angle is the box its corners fill, larger than the digit's ink."""
    for digit, (x0, y0, x1, y1) in zip(reading.digits, boxes, strict=True):
        rx0, ry0, rx1, ry1 = digit.box
        assert x0 - 2 <= rx0 < rx1 <= x1 + 2 and y0 - 2 <= ry0 < ry1 <= y1 + 2
        assert (rx1 - rx0) * (ry1 - ry0) >= 0.3 * (x1 - x0) * (y1 - y0)


# Must match STROKE_FRACTION and UPLOAD_SIZE in serve/static/app.js.
STROKE_FRACTION = 1 / 24
UPLOAD_SIZE = 140
INK_THRESHOLD = 128

Stroke = list[tuple[float, float]]


def ink_strokes(digit: np.ndarray) -> list[Stroke]:
    """Pen strokes that retrace a 28x28 digit's ink, in pixel-centre coordinates.

    Each row's runs of ink are joined to the overlapping run of the row above, going back
    and forth, so a digit becomes a few long strokes that stay on its ink, as a hand would.
    """
    strokes: list[Stroke] = []
    open_runs: list[tuple[Stroke, int, int]] = []  # stroke, first and last column
    for row in range(digit.shape[0]):
        inked = np.flatnonzero(digit[row] >= INK_THRESHOLD)
        runs = np.split(inked, np.flatnonzero(np.diff(inked) > 1) + 1) if inked.size else []
        next_open = []
        for run in runs:
            first, last = int(run[0]), int(run[-1])
            above = next((o for o in open_runs if o[1] <= last + 1 and first <= o[2] + 1), None)
            if above is None:
                stroke: Stroke = []
                strokes.append(stroke)
            else:
                open_runs.remove(above)
                stroke = above[0]
            ends = [(first + 0.5, row + 0.5), (last + 0.5, row + 0.5)]
            if stroke and abs(stroke[-1][0] - ends[1][0]) < abs(stroke[-1][0] - ends[0][0]):
                ends.reverse()
            stroke.extend(ends)
            next_open.append((stroke, first, last))
        open_runs = next_open
    return strokes


def smooth_curve(points: list[tuple[float, float]], per_segment: int = 6) -> Stroke:
    """A Catmull-Rom spline through `points`: how a hand draws a curve through them."""
    padded = np.array([points[0], *points, points[-1]], dtype=float)
    curve = []
    for p0, p1, p2, p3 in zip(padded, padded[1:], padded[2:], padded[3:], strict=False):
        for t in np.linspace(0, 1, per_segment, endpoint=False):
            curve.append(
                0.5
                * (
                    2 * p1
                    + (p2 - p0) * t
                    + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                    + (3 * p1 - p0 - 3 * p2 + p3) * t**3
                )
            )
    return [(float(x), float(y)) for x, y in [*curve, padded[-1]]]


# Digits as a person draws them with a mouse (28x28 coordinates), not traced from MNIST.
HAND_DRAWN = {
    2: [
        smooth_curve(
            [(8.5, 9), (11, 6), (15, 5.2), (19, 7), (19.5, 10.5), (17, 14), (12.5, 18), (8, 22.5)]
        ),
        smooth_curve([(8, 22.5), (13, 22.2), (20.5, 22.5)]),
    ],
    5: [
        smooth_curve([(19, 5.5), (10.5, 5.5)]),
        smooth_curve([(10.5, 5.5), (9.8, 12.5)]),
        smooth_curve(
            [(9.8, 12.5), (13, 11), (17, 11.8), (19, 15.5), (17.5, 20), (13, 22), (9, 20.5)]
        ),
    ],
}


def render_strokes(strokes: list[Stroke]) -> np.ndarray:
    """The strokes drawn as the page draws them (dark round pen on white), as sent to the server."""
    scale = UPLOAD_SIZE / 28
    width = UPLOAD_SIZE * STROKE_FRACTION
    paper = Image.new("L", (UPLOAD_SIZE, UPLOAD_SIZE), 255)
    pen = ImageDraw.Draw(paper)
    for stroke in strokes:
        points = [(x * scale, y * scale) for x, y in stroke]
        pen.line(points, fill=17, width=round(width), joint="curve")
        for x, y in points:
            pen.ellipse([x - width / 2, y - width / 2, x + width / 2, y + width / 2], fill=17)
    return np.asarray(paper)

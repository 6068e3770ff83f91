"""Whole numbers composed from MNIST digits, with the true digit boxes: test and bench data.

People write numbers, not single digits, so the reader is measured on images like theirs:
2 to 8 MNIST digits side by side with gaps that are ordinary, touching or overlapping (by
up to a fifth of a digit's width), heights within 15% of each other, a wandering baseline,
dark ink on light paper or light on dark, saved as PNG or JPEG. Other looks than MNIST's
own strokes (a thick or thin pen, a photographed ballpoint) come from `styles`.

Compose only MNIST *test* digits, so that the model is measured on writing it has not seen.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from digitlab.errors import ConfigError
from digitlab.styles import change_thickness, encode, pen_strokes, photograph

GAPS: dict[str, tuple[float, float]] = {
    "ordinary": (0.15, 0.6),
    "touching": (-0.06, 0.0),
    "overlapping": (-0.2, -0.06),
}
"""Gap kinds -> the range of the space between neighbours, as a share of the narrower
one's width (negative: they overlap by that share)."""

LOOKS = (
    "plain",
    "thick_pen",
    "thin_pen",
    "ballpoint_photo",
    "ruled_paper",
    "squared_paper",
    "underlined",
    "desk_edge",
)
"""How the ink looks: MNIST's strokes, a felt-tip, a fine pen, a photographed ballpoint;
and MNIST's strokes on a notebook's ruled or squared page, with a line drawn under the
number, or on a sheet photographed with a strip of the desk beside it (those four always
dark ink on light paper)."""

PAPER_LOOKS = ("ruled_paper", "squared_paper", "underlined", "desk_edge")

SEPARATORS = (".", ",", "-")
"""Marks a number may have written between two of its digits: a decimal point, a thousands
comma, a dash (a date, a range)."""

DIGIT_HEIGHT = 60
"""The tallest digit's height in pixels; the others are 85% to 100% of it."""

MIN_GAP = DIGIT_HEIGHT // 6
"""The narrowest ordinary gap in pixels: a share of a narrow 1's width alone can be a
pixel or two, which a photograph's blur or JPEG's ringing bridges, so the digits touch."""


@dataclass(frozen=True)
class ComposedNumber:
    """An encoded image of a number and what is in it.

    `data` is the image file (`suffix` ".png" or ".jpg"), `number` the digits as a string,
    `boxes` each digit's ink box (x0, y0, x1, y1; x1 and y1 exclusive) in image pixels,
    `text` the number as written: `number` with its separator, if it has one, in place.
    """

    data: bytes
    suffix: str
    number: str
    boxes: tuple[tuple[int, int, int, int], ...]
    text: str


def compose_number(
    digits: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    gap: str = "ordinary",
    look: str = "plain",
    separator: str | None = None,
    turned: float = 0.0,
) -> ComposedNumber:
    """Write the MNIST `digits` (K x 28 x 28 uint8, labels `labels`) as one number image;
    with a `separator` (one of `SEPARATORS`), that mark is written in a wider gap between
    two digits picked at random. `turned` (degrees, counterclockwise) photographs the page
    that far askew: the page is laid out with room around it (its paper, rules and desk
    carry on), turned, and cut to the box the turned number's image fills, each digit's
    box becoming the box its turned corners fill; the same random draws are made as for
    the number upright.

    Raises `ConfigError` for a gap kind not in `GAPS`, a look not in `LOOKS`, or a
    separator not in `SEPARATORS` or not between two digits with an ordinary gap.
    """
    if gap not in GAPS:
        raise ConfigError(f"unknown gap kind {gap!r}; choose from {', '.join(GAPS)}")
    if look not in LOOKS:
        raise ConfigError(f"unknown look {look!r}; choose from {', '.join(LOOKS)}")
    if separator is not None and separator not in SEPARATORS:
        raise ConfigError(f"unknown separator {separator!r}; choose from {' '.join(SEPARATORS)}")
    if separator is not None and (gap != "ordinary" or len(digits) < 2):
        raise ConfigError("a separator is written between two digits with an ordinary gap")
    strokes = [_stroke(digit, rng, look) for digit in digits]
    canvas, boxes = _lay_out(strokes, rng, GAPS[gap])
    number = text = "".join(str(int(label)) for label in labels)
    inked = boxes
    if separator is not None:
        canvas, boxes, at, mark_box = _with_separator(canvas, boxes, rng, separator)
        text = number[:at] + separator + number[at:]
        inked = (*boxes, mark_box)
    turn = _Turn.of(canvas.shape, turned)
    if look == "ballpoint_photo":
        canvas, boxes = turn.turned(turn.with_room(canvas)), turn.boxes(boxes)
        return ComposedNumber(photograph(canvas, rng), ".jpg", number, boxes, text)
    if look == "desk_edge":
        canvas = _desk_edge(turn.with_room(canvas), turn.moved(inked), rng, turn.room)
    elif look in PAPER_LOOKS:
        canvas = _PAPERS[look](turn.with_room(canvas), turn.moved(inked), rng)
    else:
        canvas = turn.with_room(canvas)
    canvas, boxes = turn.turned(canvas), turn.boxes(boxes)
    dark_on_light = look in PAPER_LOOKS or bool(rng.integers(2))
    paper, ink_level = (255.0, 0.0) if dark_on_light else (0.0, 255.0)
    pixels = np.rint(paper + (ink_level - paper) * canvas).astype(np.uint8)
    if rng.integers(2):
        return ComposedNumber(encode(pixels, "PNG"), ".png", number, boxes, text)
    quality = int(rng.integers(70, 96))
    return ComposedNumber(encode(pixels, "JPEG", quality=quality), ".jpg", number, boxes, text)


def lying_on_a_desk(item: ComposedNumber, rng: np.random.Generator) -> ComposedNumber:
    """`item` (made dark ink on light where it is not) as a sheet lying in the middle of a
    photograph of a darker desk (gray 60 to 140 of 255), which shows 10% to 40% of the
    sheet's height above and below it and of its width either side. A PNG."""
    with Image.open(io.BytesIO(item.data)) as image:
        sheet = np.asarray(image.convert("L"))
    if sheet.mean() < 128:
        sheet = 255 - sheet
    rows = round(sheet.shape[0] * rng.uniform(0.1, 0.4))
    columns = round(sheet.shape[1] * rng.uniform(0.1, 0.4))
    shade = round(rng.uniform(60, 140))
    photo = np.pad(sheet, ((rows, rows), (columns, columns)), constant_values=shade)
    boxes = _moved(item.boxes, columns, rows)
    return ComposedNumber(encode(photo, "PNG"), ".png", item.number, boxes, item.text)


def photographed_at_an_angle(item: ComposedNumber, narrowing: float) -> ComposedNumber:
    """`item` as a phone held at an angle to the page photographs it: the image's top edge
    (its bottom edge, where `narrowing` is negative) takes in `narrowing` (a share of the
    width) less of the page than the other, nearer the phone, so the lines down the page
    close in towards the far edge. Each digit's box becomes the box its corners fill. In
    `item`'s format (a JPEG at quality 90)."""
    with Image.open(io.BytesIO(item.data)) as image:
        page = image.convert("L")
    width, height = page.size
    inset = abs(narrowing) * width / 2
    top, bottom = (inset, 0.0) if narrowing >= 0 else (0.0, inset)
    corners = [(0.0, 0.0), (width, 0.0), (width, height), (0.0, height)]
    narrowed = [(top, 0.0), (width - top, 0.0), (width - bottom, height), (bottom, height)]
    # The photograph's pixel at a corner shows the page where `narrowed` puts it.
    to_page = _homography(corners, narrowed)
    photo = page.transform(
        page.size,
        Image.Transform.PERSPECTIVE,
        tuple(to_page.ravel()[:8].tolist()),
        Image.Resampling.BICUBIC,
    )
    to_photo = np.linalg.inv(to_page)
    boxes = []
    for x0, y0, x1, y1 in item.boxes:
        points = to_photo @ np.array([[x0, x1, x1, x0], [y0, y0, y1, y1], [1.0, 1.0, 1.0, 1.0]])
        left, top, right, bottom = _filled_box(points[0] / points[2], points[1] / points[2])
        boxes.append((max(0, left), max(0, top), min(width, right), min(height, bottom)))
    pixels = np.asarray(photo)
    jpeg = item.suffix == ".jpg"
    data = encode(pixels, "JPEG", quality=90) if jpeg else encode(pixels, "PNG")
    return ComposedNumber(data, item.suffix, item.number, tuple(boxes), item.text)


def _homography(
    sources: list[tuple[float, float]], targets: list[tuple[float, float]]
) -> np.ndarray:
    """The 3 x 3 projective map that takes each of four `sources` points to its target."""
    equations, values = [], []
    for (x, y), (u, v) in zip(sources, targets, strict=True):
        equations.append([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y])
        equations.append([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y])
        values += [u, v]
    solved = np.linalg.solve(np.array(equations), np.array(values))
    return np.append(solved, 1.0).reshape(3, 3)


def _filled_box(xs: np.ndarray, ys: np.ndarray) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) of whole pixels that the points (`xs`, `ys`) fill."""
    return (
        int(np.floor(xs.min())),
        int(np.floor(ys.min())),
        int(np.ceil(xs.max())),
        int(np.ceil(ys.max())),
    )


def _moved(boxes: Boxes, right: int, down: int) -> Boxes:
    """`boxes` moved `right` and `down` pixels."""
    return tuple((x0 + right, y0 + down, x1 + right, y1 + down) for x0, y0, x1, y1 in boxes)


@dataclass(frozen=True)
class _Turn:
    """A number image `shape` (rows, columns) photographed `degrees` askew: laid out
    `room` pixels inside a larger page, turned about its centre and cut to the box the
    turned image fills."""

    shape: tuple[int, int]
    degrees: float
    room: int

    @classmethod
    def of(cls, shape: tuple[int, ...], degrees: float) -> _Turn:
        height, width = int(shape[0]), int(shape[1])
        return cls((height, width), degrees, max(height, width) // 2 if degrees else 0)

    def with_room(self, canvas: np.ndarray) -> np.ndarray:
        """`canvas` (ink, 0 on paper) in the middle of the larger page."""
        return np.pad(canvas, self.room) if self.room else canvas

    def moved(self, boxes: Boxes) -> Boxes:
        """`boxes` on the larger page."""
        return _moved(boxes, self.room, self.room)

    def turned(self, page: np.ndarray) -> np.ndarray:
        """The larger `page` turned and cut to the turned image's box (as it is unturned)."""
        if not self.room:
            return page
        turned = Image.fromarray(page.astype(np.float32), mode="F").rotate(
            self.degrees, Image.Resampling.BILINEAR
        )
        (top, left), (height, width) = self._cut()
        return np.asarray(turned, np.float32)[top : top + height, left : left + width]

    def boxes(self, boxes: Boxes) -> Boxes:
        """Each of `boxes` (on the image unturned) as the box its turned corners fill in the
        turned image's pixels."""
        if not self.room:
            return boxes
        (top, left), _ = self._cut()
        centre_x, centre_y = self.shape[1] / 2 + self.room, self.shape[0] / 2 + self.room
        angle = np.radians(self.degrees)
        cos, sin = np.cos(angle), np.sin(angle)
        turned = []
        for x0, y0, x1, y1 in self.moved(boxes):
            xs = np.array([x0, x1, x1, x0]) - centre_x
            ys = np.array([y0, y0, y1, y1]) - centre_y
            # Counterclockwise as the image shows it: y runs down.
            new_x = centre_x + cos * xs + sin * ys - left
            new_y = centre_y - sin * xs + cos * ys - top
            turned.append(_filled_box(new_x, new_y))
        return tuple(turned)

    def _cut(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """The turned image's box on the larger page: (top, left), (height, width)."""
        height, width = self.shape
        angle = np.radians(abs(self.degrees))
        turned_width = round(width * np.cos(angle) + height * np.sin(angle))
        turned_height = round(width * np.sin(angle) + height * np.cos(angle))
        top = self.room + (height - turned_height) // 2
        left = self.room + (width - turned_width) // 2
        return (top, left), (turned_height, turned_width)


def _stroke(digit: np.ndarray, rng: np.random.Generator, look: str) -> np.ndarray:
    """One digit's ink (float 0..1, cropped), 85% to 100% of `DIGIT_HEIGHT` tall."""
    ink_rows = np.flatnonzero(digit.any(axis=1))
    ink_height = max(1, int(ink_rows[-1] - ink_rows[0] + 1)) if ink_rows.size else 20
    scale = DIGIT_HEIGHT * rng.uniform(0.85, 1.0) / ink_height
    ink = pen_strokes(digit, scale)
    if look == "thick_pen":
        return change_thickness(ink, max(1, round(scale * 0.5)))
    if look == "thin_pen":
        return change_thickness(ink, -max(1, round(scale * 0.3)))
    return ink


def _lay_out(
    strokes: list[np.ndarray], rng: np.random.Generator, gap_range: tuple[float, float]
) -> tuple[np.ndarray, tuple[tuple[int, int, int, int], ...]]:
    """Place the digits left to right on a baseline that wanders by up to 8% of their
    height, a positive gap never under `MIN_GAP`; overlapping ink keeps the darker stroke.
    Returns the canvas and the boxes."""
    margin = DIGIT_HEIGHT // 2
    lefts, tops = [margin], []
    for previous, current in zip(strokes, strokes[1:], strict=False):
        narrower = min(previous.shape[1], current.shape[1])
        gap = round(rng.uniform(*gap_range) * narrower)
        if gap_range[0] > 0:
            gap = max(gap, MIN_GAP)
        lefts.append(lefts[-1] + previous.shape[1] + gap)
    baseline = margin + DIGIT_HEIGHT
    for stroke in strokes:
        jitter = round(rng.uniform(-0.08, 0.08) * DIGIT_HEIGHT)
        tops.append(baseline + jitter - stroke.shape[0])
    width = max(left + stroke.shape[1] for left, stroke in zip(lefts, strokes, strict=True))
    height = max(top + stroke.shape[0] for top, stroke in zip(tops, strokes, strict=True))
    canvas = np.zeros((height + margin, width + margin), np.float32)
    boxes = []
    for left, top, stroke in zip(lefts, tops, strokes, strict=True):
        region = canvas[top : top + stroke.shape[0], left : left + stroke.shape[1]]
        np.maximum(region, stroke, out=region)
        boxes.append((left, top, left + stroke.shape[1], top + stroke.shape[0]))
    return canvas, tuple(boxes)


Boxes = tuple[tuple[int, int, int, int], ...]


def _with_separator(
    canvas: np.ndarray, boxes: Boxes, rng: np.random.Generator, separator: str
) -> tuple[np.ndarray, Boxes, int, tuple[int, int, int, int]]:
    """`canvas` widened between two digits picked at random, the `separator` written there:
    a point on the digits' baseline, a comma reaching below it, a dash across their middle.
    Returns the canvas, the digits' boxes, the index of the digit after the mark and the
    mark's box."""
    at = int(rng.integers(1, len(boxes)))
    mark = _mark(separator, rng)
    space = round(DIGIT_HEIGHT * rng.uniform(0.1, 0.25))
    column = (boxes[at - 1][2] + boxes[at][0]) // 2
    added = mark.shape[1] + 2 * space
    widened = np.insert(canvas, [column] * added, 0.0, axis=1)
    moved = tuple(
        box if number < at else (box[0] + added, box[1], box[2] + added, box[3])
        for number, box in enumerate(boxes)
    )
    baseline = float(np.median([box[3] for box in boxes]))
    middle = float(np.median([(box[1] + box[3]) / 2 for box in boxes]))
    if separator == "-":
        top = middle + DIGIT_HEIGHT * rng.uniform(-0.08, 0.08) - mark.shape[0] / 2
    elif separator == ",":
        top = baseline - mark.shape[0] * rng.uniform(0.3, 0.6)
    else:
        top = baseline - mark.shape[0] + DIGIT_HEIGHT * rng.uniform(-0.03, 0.03)
    row, left = round(top), column + space
    region = widened[row : row + mark.shape[0], left : left + mark.shape[1]]
    np.maximum(region, mark, out=region)
    return widened, moved, at, (left, row, left + mark.shape[1], row + mark.shape[0])


MARK_SUPERSAMPLING = 4
"""Marks are drawn this many times larger, then shrunk: smooth edges, as a pen's."""


def _mark(separator: str, rng: np.random.Generator) -> np.ndarray:
    """One separator's ink (float 0..1, cropped), with a pen 10% to 15% of `DIGIT_HEIGHT`
    wide, about as wide as MNIST's: a round point, a comma (a point with a tail down to
    the left) or a dash, a little aslant."""
    big = MARK_SUPERSAMPLING
    pen = DIGIT_HEIGHT * rng.uniform(0.1, 0.15) * big
    side = round(DIGIT_HEIGHT * big * 0.7)
    image = Image.new("L", (side, side))
    draw = ImageDraw.Draw(image)
    centre = side / 2
    if separator == "-":
        half = DIGIT_HEIGHT * big * rng.uniform(0.25, 0.5) / 2
        rise = half * rng.uniform(-0.1, 0.1)
        draw.line(
            [(centre - half, centre + rise), (centre + half, centre - rise)],
            fill=255,
            width=round(pen * 0.8),
        )
    else:
        radius = pen * rng.uniform(0.5, 0.75)
        draw.ellipse([centre - radius, centre - radius, centre + radius, centre + radius], fill=255)
        if separator == ",":
            length = DIGIT_HEIGHT * big * rng.uniform(0.2, 0.32)
            lean = np.radians(rng.uniform(10.0, 35.0))
            end = (centre - length * np.sin(lean), centre + length * np.cos(lean))
            draw.line([(centre + radius / 2, centre), end], fill=255, width=round(pen * 0.7))
    small = image.resize((side // big, side // big), Image.Resampling.BOX)
    ink = np.asarray(small, np.float32) / 255.0
    rows, columns = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def _ruled(canvas: np.ndarray, boxes: Boxes, rng: np.random.Generator) -> np.ndarray:
    """A notebook's printed rules, light and thin, 1.2 to 1.6 digit heights apart, one of
    them near the digits' feet (where people write; on a page photographed askew, near
    their feet in the middle of the number)."""
    spacing = round(DIGIT_HEIGHT * rng.uniform(1.2, 1.6))
    feet = int(np.median([box[3] for box in boxes])) + int(rng.integers(-2, 4))
    return _rules(canvas, feet % spacing, spacing, rng, axis=0)


def _squared(canvas: np.ndarray, boxes: Boxes, rng: np.random.Generator) -> np.ndarray:
    """A squared page's grid: rules across and down, a third to half a digit height apart."""
    spacing = round(DIGIT_HEIGHT * rng.uniform(0.33, 0.5))
    offset = int(rng.integers(spacing))
    return _rules(_rules(canvas, offset, spacing, rng, axis=0), offset, spacing, rng, axis=1)


def _rules(
    canvas: np.ndarray, first: int, spacing: int, rng: np.random.Generator, axis: int
) -> np.ndarray:
    """Printed rules (1 or 2 px, a quarter to a half of the ink's darkness) every `spacing`
    pixels from `first`, along the rows (`axis` 0) or the columns (1), as a page
    photographed up to 3 degrees askew shows them; ink stays on top."""
    ruled = np.moveaxis(canvas.copy(), axis, 0)
    thickness, level = int(rng.integers(1, 3)), float(rng.uniform(0.25, 0.5))
    length = ruled.shape[1]
    rise = np.rint(rng.uniform(-0.05, 0.05) * (np.arange(length) - length / 2)).astype(int)
    # Starting above the page, so that slanted rules reach its upper corners too.
    for start in range(
        first - spacing * (1 + int(np.abs(rise).max()) // spacing), ruled.shape[0], spacing
    ):
        for offset in range(thickness):
            rows = start + offset + rise
            inside = (rows >= 0) & (rows < ruled.shape[0])
            columns = np.flatnonzero(inside)
            ruled[rows[inside], columns] = np.maximum(ruled[rows[inside], columns], level)
    return np.moveaxis(ruled, 0, axis)


def _underlined(canvas: np.ndarray, boxes: Boxes, rng: np.random.Generator) -> np.ndarray:
    """A line drawn with the same pen under the whole number, a little below its lowest
    digit, slightly aslant."""
    left = min(box[0] for box in boxes) - int(rng.integers(0, 8))
    right = max(box[2] for box in boxes) + int(rng.integers(0, 8))
    below = max(box[3] for box in boxes) + int(rng.integers(4, 9))
    thickness = int(rng.integers(3, 6))
    drop = rng.uniform(-0.015, 0.015)
    lined = canvas.copy()
    for column in range(max(0, left), min(canvas.shape[1], right)):
        top = below + round(drop * (column - left))
        lined[top : top + thickness, column] = 1.0
    return lined


def _desk_edge(
    canvas: np.ndarray, boxes: Boxes, rng: np.random.Generator, room: int = 0
) -> np.ndarray:
    """A strip of a darker desk along the left side, and along the bottom half the time,
    its edge straight and slightly aslant: a sheet photographed without filling the frame.
    The image lies `room` pixels inside `canvas` (a page to be turned): the desk is laid
    beside the image, and runs on beyond it."""
    height, width = canvas.shape[0] - 2 * room, canvas.shape[1] - 2 * room
    rows, columns = np.mgrid[: canvas.shape[0], : canvas.shape[1]] - room
    shade = float(rng.uniform(0.55, 0.8))
    edge = width * rng.uniform(0.05, 0.12) + rng.uniform(-0.03, 0.03) * (rows - height / 2)
    desk = columns < np.minimum(edge, min(box[0] for box in boxes) - room - 0.05 * width)
    if rng.random() < 0.5:
        top = max(box[3] for box in boxes) - room + 0.05 * height
        desk |= rows >= max(top, height - height * rng.uniform(0.06, 0.12))
    return np.where(desk, np.maximum(canvas, shade), canvas)


_PAPERS = {
    "ruled_paper": _ruled,
    "squared_paper": _squared,
    "underlined": _underlined,
}

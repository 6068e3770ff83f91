"""Reading whole numbers: real MNIST test digits composed into numbers, the shipped model."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import digitlab.reading.number as number_module
from digitlab.errors import ConfigError, NoDigitFoundError
from digitlab.images import (
    decode,
    extract_ink,
    find_ink,
    normalize_digit,
    to_grayscale,
    to_mnist,
)
from digitlab.inference.modelfile import load_keras_model
from digitlab.inference.predictor import FileFailure, FileReading, Predictor
from digitlab.number_images import LOOKS, SEPARATORS, compose_number
from digitlab.reading import read_number
from digitlab.reading.number import SPLIT_WIDTH, _Scorer, cut_parts
from digitlab.reading.part_scorer import NOT_WHOLE, shipped_part_scorer
from digitlab.reading.segment import (
    CUT_STEP,
    CUT_TURN_COST,
    MIN_PART,
    Piece,
    _cheapest_seams,
    blobs,
    from_mask,
    join_fragments,
    split_off_separators,
    typical_height,
)
from digitlab.reading.specks import give_back_specks
from digitlab.styles import render
from trained_models import with_ink_head


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(threads=1)


@pytest.fixture(scope="module")
def held_out_digits(mnist):
    _, (x_test, y_test) = mnist
    return x_test, y_test


def _numbers(held_out_digits, count, gap, seed):
    x_test, y_test = held_out_digits
    rng = np.random.default_rng(seed)
    numbers = []
    for _ in range(count):
        picked = rng.integers(0, len(x_test), size=int(rng.integers(2, 7)))
        numbers.append(compose_number(x_test[picked], y_test[picked], rng, gap))
    return numbers


def test_read_number_reads_composed_mnist_numbers(held_out_digits, predictor):
    numbers = _numbers(held_out_digits, 20, "ordinary", seed=1)
    correct = sum(read_number(item.data, predictor).number == item.number for item in numbers)
    assert correct >= 18


def test_touching_neighbours_are_cut_apart(held_out_digits, predictor):
    numbers = _numbers(held_out_digits, 20, "touching", seed=2)
    lengths = sum(
        len(read_number(item.data, predictor).number) == len(item.number) for item in numbers
    )
    assert lengths >= 14


def test_a_1_overlapping_its_neighbour_is_cut_off(held_out_digits, predictor, monkeypatch):
    # A 1 is thin: overlapping a neighbour, the two together are hardly wider than one digit.
    # Weighing cuts only in blobs at least 0.85 digit heights wide read more as one digit.
    x_test, y_test = held_out_digits
    rng = np.random.default_rng(18)
    ones = rng.choice(np.flatnonzero(y_test == 1), 120)
    others = rng.choice(np.flatnonzero(y_test != 1), 120)
    pairs = [
        [one, other] if number % 2 else [other, one]
        for number, (one, other) in enumerate(zip(ones, others, strict=True))
    ]
    numbers = [compose_number(x_test[pair], y_test[pair], rng, "overlapping") for pair in pairs]

    def right():
        return sum(read_number(item.data, predictor).number == item.number for item in numbers)

    weighed = right()
    monkeypatch.setattr(number_module, "SPLIT_WIDTH", 0.85)
    assert weighed >= right() + 5  # 112 of these 120 against 105


def test_a_thin_1_at_the_end_of_a_long_blob_is_a_candidate_digit():
    # A 1 and four 0-like rings, all touching: the 1 holds under a tenth of the blob's ink,
    # but over a tenth of the ink per digit height of the blob's width.
    ink = np.zeros((50, 120), np.float32)
    ink[5:45, 2:5] = 1.0
    for left in range(8, 104, 24):
        ink[5:45, left : left + 24] = 1.0
        ink[8:42, left + 3 : left + 21] = 0.0
    ink[24:26, 5:8] = 1.0
    (blob,) = blobs(ink)
    assert ink[:, :5].sum() < 0.1 * ink.sum()
    parts, _ = cut_parts(blob, ink, 40.0)
    assert any(part.left == blob.left and part.right <= 8 for part in parts.values())


def test_boxes_are_in_the_original_pixels_of_a_large_jpeg(held_out_digits, predictor):
    item = _numbers(held_out_digits, 1, "ordinary", seed=3)[0]
    small = Image.open(io.BytesIO(item.data)).convert("L")
    large = small.resize((small.width * 4, small.height * 4))
    buffer = io.BytesIO()
    large.save(buffer, format="JPEG", quality=95)
    reading = read_number(buffer.getvalue(), predictor)
    assert reading.size == large.size
    assert reading.number == item.number
    for digit, (x0, y0, x1, y1) in zip(reading.digits, item.boxes, strict=True):
        truth = np.array([x0, y0, x1, y1]) * 4
        assert np.abs(np.array(digit.box) - truth).max() <= 0.1 * (truth[3] - truth[1])


def test_a_single_digit_reads_as_predict_gives(held_out_digits, predictor, tmp_path):
    x_test, _ = held_out_digits
    rng = np.random.default_rng(4)
    paths = []
    for index in range(12):
        data, suffix = render(
            x_test[index], "blue_ink_photo" if index % 2 else "black_on_white", rng
        )
        paths.append(tmp_path / f"{index}{suffix}")
        paths[-1].write_bytes(data)
    for path, prediction in zip(paths, predictor.predict_files(paths), strict=True):
        reading = read_number(path, predictor)
        assert len(reading.digits) == 1, path
        assert reading.number == str(prediction.digit)
        np.testing.assert_array_equal(reading.digits[0].image, prediction.image)


def test_pieces_of_one_digit_join_up(held_out_digits, predictor):
    x_test, y_test = held_out_digits
    zero = x_test[np.flatnonzero(y_test == 0)[0]]
    big = np.asarray(Image.fromarray(zero).resize((112, 112), Image.Resampling.BICUBIC)).copy()
    rows = np.flatnonzero(big.max(axis=1) > 80)
    middle = (rows[0] + rows[-1]) // 2
    big[middle - 2 : middle + 2] = 0  # a light pen: the 0 breaks into a top and a bottom arc
    page = 255 - big
    assert len(blobs(extract_ink(to_grayscale(page)))) == 2
    reading = read_number(page, predictor)
    assert len(reading.digits) == 1
    np.testing.assert_array_equal(reading.digits[0].image, to_mnist(page))


def test_a_blank_page_has_no_number(predictor):
    with pytest.raises(NoDigitFoundError, match="page.png"):
        read_number(np.full((60, 200), 255, np.uint8), predictor, name="page.png")


def test_read_files_reports_bad_files_and_reads_the_rest(held_out_digits, predictor, tmp_path):
    item = _numbers(held_out_digits, 1, "ordinary", seed=5)[0]
    good = tmp_path / f"number{item.suffix}"
    good.write_bytes(item.data)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    results = predictor.read_files([bad, good])
    assert isinstance(results[0], FileFailure) and "broken.png" in results[0].reason
    assert isinstance(results[1], FileReading) and results[1].reading.number == item.number


def test_ordinary_gaps_keep_neighbours_apart_in_every_look(held_out_digits):
    x_test, y_test = held_out_digits
    rng = np.random.default_rng(8)
    for index in range(120):
        picked = rng.integers(0, len(x_test), size=6)
        look = LOOKS[index % len(LOOKS)]
        item = compose_number(x_test[picked], y_test[picked], rng, "ordinary", look)
        ink = extract_ink(to_grayscale(decode(item.data)))
        labels, _ = ndimage.label(ink > 0, structure=np.ones((3, 3), bool))
        for (x0, y0, x1, y1), (u0, v0, u1, v1) in itertools.pairwise(item.boxes):
            left = set(np.unique(labels[y0:y1, x0:x1])) - {0}
            right = set(np.unique(labels[v0:v1, u0:u1])) - {0}
            assert not left & right, (look, item.number)


@pytest.mark.parametrize("digit", [5, 7])
def test_a_digit_broken_in_two_strokes_reads_as_one(held_out_digits, predictor, digit):
    # A 5's flag or a 7's bar drawn apart from its stem: rows a third of the way down
    # are erased, so the digit's ink falls into a top and a bottom piece.
    x_test, y_test = held_out_digits
    rng = np.random.default_rng(10 + digit)
    right = 0
    for index in np.flatnonzero(y_test == digit)[:10]:
        broken = x_test[index].copy()
        rows = np.flatnonzero(broken.max(axis=1) > 0)
        cut = rows[0] + (rows[-1] - rows[0]) // 3
        broken[cut : cut + 2] = 0
        neighbours = rng.choice(np.flatnonzero(y_test != digit), size=2)
        digits = np.stack([x_test[neighbours[0]], broken, x_test[neighbours[1]]])
        labels = np.array([y_test[neighbours[0]], digit, y_test[neighbours[1]]])
        item = compose_number(digits, labels, rng)
        assert len(blobs(extract_ink(to_grayscale(decode(item.data))))) > 3
        right += read_number(item.data, predictor).number == item.number
    assert right >= 9


def _written_alone(held_out_digits, index):
    """MNIST test digit `index` written as a one-digit number, drawn as seed `index` draws it."""
    x_test, y_test = held_out_digits
    pick = slice(index, index + 1)
    return compose_number(x_test[pick], y_test[pick], np.random.default_rng(index))


@pytest.mark.parametrize("index", [3448, 3552, 3893])
def test_a_digit_that_falls_apart_when_drawn_large_reads_as_one(held_out_digits, predictor, index):
    # MNIST test digits whose strokes part when drawn at a number's size: a 3 whose halves
    # share a quarter of their rows, a 5 whose flag sits wholly above its body, a 5 whose
    # flag shares 40% of its body's rows. Each read as two or three digits before.
    item = _written_alone(held_out_digits, index)
    assert len(blobs(extract_ink(to_grayscale(decode(item.data))))) == 2
    assert read_number(item.data, predictor).number == item.number


@pytest.mark.parametrize("index", [7212, 7451, 8165, 8198])
def test_a_digit_with_a_long_tail_reads_as_one(held_out_digits, predictor, index):
    # 2s and a 5 whose last stroke runs on: about twice as wide as tall. The part scorer
    # finds each one whole digit; each read as two digits while parts over 1.5 digit
    # heights wide cost 20 a height.
    item = _written_alone(held_out_digits, index)
    (digit,) = read_number(item.data, predictor).digits
    x0, y0, x1, y1 = digit.box
    assert str(digit.digit) == item.number
    assert x1 - x0 > 1.7 * (y1 - y0)


@pytest.mark.parametrize(
    ("picked", "seed", "with_stray"),
    [
        ((9640, 5676, 8503, 9147, 4113, 1939), 1, "7149721"),
        ((5676, 8228, 6175, 6493), 0, "14048"),
        ((7312, 2783, 883, 8112, 6214, 8047), 0, "3832192"),
        ((6281, 7011, 5457), 2, "2811"),
    ],
)
def test_a_stray_stroke_joins_its_neighbour(
    held_out_digits, predictor, monkeypatch, picked, seed, with_stray
):
    # MNIST test digits with a stroke drawn apart: dots before a 4 (5676), a 2's tail
    # (8112), a 1's dot (5457). Each stray is a confident 1 on its own and was read as one.
    number = _composed(held_out_digits, picked, seed)
    assert read_number(number.data, predictor).number == number.number
    monkeypatch.setattr(number_module, "STRAY_INK", 0.0)
    assert read_number(number.data, predictor).number == with_stray


def _composed(held_out_digits, picked, seed):
    """A number of the MNIST test digits `picked`, composed with `seed`."""
    x_test, y_test = held_out_digits
    return compose_number(x_test[list(picked)], y_test[list(picked)], np.random.default_rng(seed))


@pytest.mark.parametrize(
    ("picked", "seed", "without_specks"),
    [
        ((8248, 9620), 8, "77"),
        ((2588, 3482, 6577), 0, "721"),
        ((6632, 1216, 3929), 0, "175"),
        ((5715, 9852, 6569), 0, "672"),
    ],
)
def test_a_faint_digit_keeps_the_specks_a_bold_neighbour_would_drop(
    held_out_digits, predictor, monkeypatch, picked, seed, without_specks
):
    # MNIST test digits drawn with a light pen: a 9 whose loop is broken (a stem and a
    # tick, read as 7, or as 1 once the continental-1 head sees a flag), a 7's end (read
    # as 1), a 3 in dots (read as 2). Alone, `to_mnist` keeps these bits.
    number = _composed(held_out_digits, picked, seed)
    assert read_number(number.data, predictor).number == number.number
    monkeypatch.setattr(number_module, "give_back_specks", lambda digits, *_: digits)
    assert read_number(number.data, predictor).number == without_specks


def _bar(top, left, height, width):
    return Piece(top, left, np.ones((height, width), bool))


def test_a_digit_takes_back_its_own_specks_and_no_others():
    # Two digits 40 rows tall: a bold one (20 x 40 of ink, 800) and a light one (6 x 40,
    # 240). Specks of 16 and 9: 5% of the bold digit's blob is 40, so `extract_ink` drops
    # them all; 5% of the light digit's is 12.
    ink = np.zeros((60, 120), np.float32)
    ink[10:50, 10:30] = 1.0
    ink[10:50, 70:76] = 1.0
    specks = np.zeros_like(ink)
    specks[20:24, 78:82] = 1.0  # beside the light digit, 16: its own
    specks[52:55, 66:69] = 1.0  # under the light digit, 9: under 5% of it
    specks[20:24, 48:52] = 1.0  # between the two, out of both reaches: dust
    specks[5:9, 12:16] = 1.0  # on the bold digit, 16: under 5% of it
    bold, light = Piece(10, 10, np.ones((40, 20), bool)), Piece(10, 70, np.ones((40, 6), bool))
    given = give_back_specks([bold, light], ink + specks, blobs(specks), height=40.0)
    assert given[0] is bold
    assert given[1].left == 70 and given[1].right == 82 and given[1].mask.sum() == 240 + 16
    # The dots of a faint digit's lower half, below its upper half, are its own too.
    upper = Piece(10, 70, np.ones((20, 6), bool))
    ink[30:50, 70:76] = 0.0
    specks[:] = 0.0
    specks[40:44, 71:75] = 1.0
    assert give_back_specks([bold, upper], ink + specks, blobs(specks), 40.0)[1].bottom == 44


@pytest.mark.parametrize("mark", SEPARATORS)
def test_points_commas_and_dashes_between_digits_are_written_not_read(
    held_out_digits, predictor, mark
):
    # A price, a thousands comma, a date. Before separators, a dash or a comma joined a
    # neighbour as a fragment and was read as a digit or split one; so could a point.
    x_test, y_test = held_out_digits
    rng = np.random.default_rng(5)
    read = []
    for _ in range(12):
        picked = rng.integers(0, len(x_test), size=4)
        item = compose_number(x_test[picked], y_test[picked], rng, separator=mark)
        reading = read_number(item.data, predictor)
        read.append((reading.number == item.number, reading.text == item.text))
    digits_right, texts_right = (sum(column) for column in zip(*read, strict=True))
    assert digits_right >= 10 and texts_right >= 10, read


def test_a_point_as_small_as_a_speck_is_a_separator(held_out_digits, predictor):
    # Three MNIST test digits 70 pixels tall; a point 7 pixels across after the first is
    # under 5% of a digit's ink, so `extract_ink` drops it as a speck: the specks are
    # looked at for separators too, and this one is not given back to a digit.
    x_test, y_test = held_out_digits
    canvas = np.zeros((120, 300), np.uint8)
    for place, index in enumerate((3, 2, 1)):
        digit = Image.fromarray(x_test[index]).resize((70, 70), Image.Resampling.BILINEAR)
        left = 10 + 85 * place + (20 if place else 0)
        canvas[20:90, left : left + 70] = np.maximum(canvas[20:90, left : left + 70], digit)
    rows, columns = np.ogrid[:120, :300]
    point = (rows - 81) ** 2 + (columns - 97) ** 2 <= 12
    canvas[point] = 255
    gray = 1.0 - canvas / 255.0
    assert find_ink(gray).specks[point].min() > 0
    reading = read_number(255 - canvas, predictor)
    digits = "".join(str(y_test[index]) for index in (3, 2, 1))
    assert (reading.number, reading.text) == (digits, f"{digits[0]}.{digits[1:]}")


def test_separators_are_found_in_a_number_written_aslant(held_out_digits, predictor):
    # Photographed askew, a number's baseline climbs: a point at one end sits above the
    # whole line's median middle. Marks are judged against lines fitted through the
    # digits' middles and bottoms.
    x_test, y_test = held_out_digits
    rng = np.random.default_rng(8)
    as_written = 0
    for number in range(16):
        picked = rng.integers(0, len(x_test), size=6)
        mark = SEPARATORS[number % len(SEPARATORS)]
        turned = 10 if number % 2 else -10
        item = compose_number(x_test[picked], y_test[picked], rng, separator=mark, turned=turned)
        as_written += read_number(item.data, predictor).text == item.text
    assert as_written >= 14


def test_a_separator_is_composed_in_a_wider_gap_between_two_digits(held_out_digits):
    x_test, y_test = held_out_digits
    digits, labels = x_test[:5], y_test[:5]
    for mark in SEPARATORS:
        item = compose_number(digits, labels, np.random.default_rng(1), separator=mark)
        at = item.text.index(mark)
        assert 0 < at < 5 and item.text.replace(mark, "") == item.number
        gaps = [after[0] - before[2] for before, after in itertools.pairwise(item.boxes)]
        assert int(np.argmax(gaps)) == at - 1
        gray = np.asarray(Image.open(io.BytesIO(item.data)).convert("L"), np.float32)
        ink = np.abs(gray - np.median(gray)) > 100
        between = ink[:, item.boxes[at - 1][2] + 1 : item.boxes[at][0] - 1]
        assert between.sum() > 20
    with pytest.raises(ConfigError, match="ordinary gap"):
        compose_number(digits, labels, np.random.default_rng(1), "touching", separator=".")
    with pytest.raises(ConfigError, match="unknown separator"):
        compose_number(digits, labels, np.random.default_rng(1), separator=":")


def test_only_small_marks_between_digits_low_or_across_the_middle_are_separators():
    # Digits 40 rows tall (rows 10 to 50: middle 30, baseline 50), and marks between them.
    left, right = _bar(10, 0, 40, 20), _bar(10, 100, 40, 20)
    point, dash = _bar(44, 26, 6, 6), _bar(28, 40, 4, 14)
    comma = Piece(44, 64, np.eye(12, 5, dtype=bool) | np.eye(12, 5, k=-1, dtype=bool))
    pieces, separators = split_off_separators([left, point, dash, comma, right])
    assert len(pieces) == 2 and pieces[0] is left and pieces[1] is right
    assert [(separator.mark, id(separator.piece)) for separator in separators] == [
        (".", id(point)),
        ("-", id(dash)),
        (",", id(comma)),
    ]
    high = _bar(12, 35, 6, 6)  # a 5's flag or a bit of a 7's bar: a piece of a digit
    after = _bar(44, 130, 6, 6)  # no digit on its right
    under = _bar(44, 14, 6, 6)  # in a digit's columns
    speck = _bar(46, 36, 2, 2)  # dust
    for mark in (high, after, under, speck):
        assert split_off_separators([left, mark, right])[1] == []


def test_stacked_pieces_join_and_neighbours_sharing_rows_stay_apart():
    # A 7's bar over its stem, sharing half the bar's rows, is one digit; so is a slanted
    # 1 broken in two, its halves wholly one above the other, sharing one column.
    bar, stem = _bar(0, 0, 20, 40), _bar(10, 10, 40, 12)
    assert len(join_fragments([bar, stem])) == 1
    upper, lower = _bar(0, 10, 24, 8), _bar(26, 3, 24, 8)
    assert len(join_fragments([upper, lower])) == 1
    # A thin 1 overlapping a fifth of its neighbour's width lies wholly within its columns
    # but shares nearly all its rows: two digits.
    zero, one = _bar(2, 0, 48, 36), _bar(0, 30, 50, 6)
    assert len(join_fragments([zero, one])) == 2


def test_a_number_is_read_in_few_classifier_calls(held_out_digits, predictor, monkeypatch):
    # Speed: the candidate parts of a blob are scored in one batch, and so are the digits.
    calls = []
    predict = predictor.predict
    monkeypatch.setattr(predictor, "predict", lambda images: calls.append(1) or predict(images))
    numbers = _numbers(held_out_digits, 10, "touching", seed=12)
    for item in numbers:
        read_number(item.data, predictor)
    assert len(calls) <= 2.5 * len(numbers)


class _EveryPartWhole:
    """The part scorer switched off: every part whole, every digit as likely."""

    def probabilities(self, views):
        return np.concatenate([np.full((len(views), 10), 0.1), np.zeros((len(views), 1))], 1)


def test_the_part_scorer_keeps_wide_digits_whole(held_out_digits, predictor, monkeypatch):
    # Before the part scorer, a wide 0 or 2 beside others was often read as two digits
    # (its halves are confident digits to the classifier alone): 12 of these 200, against 2
    # with it.
    numbers = _numbers(held_out_digits, 200, "ordinary", seed=11)

    def too_long():
        readings = [read_number(item.data, predictor).number for item in numbers]
        return sum(
            len(read) > len(item.number) for read, item in zip(readings, numbers, strict=True)
        )

    with_scorer = too_long()
    monkeypatch.setattr(number_module, "shipped_part_scorer", _EveryPartWhole)
    monkeypatch.setattr(number_module, "SURELY_WHOLE", 2.0)  # no blob kept whole on its word
    without = too_long()
    assert with_scorer <= 4
    assert without >= with_scorer + 4


class _WholenessOnly:
    """The shipped part scorer with its digit probabilities flattened: a cut part is read
    by the classifier alone."""

    def probabilities(self, views):
        probabilities = shipped_part_scorer().probabilities(views)
        probabilities[:, :NOT_WHOLE] = 1.0
        return probabilities


def test_parts_cut_through_an_overlap_are_read_by_both_networks(
    held_out_digits, predictor, monkeypatch
):
    # A part cut through an overlap keeps a stray end of its neighbour's stroke, which the
    # part scorer has learnt to look past: 183 of these 200 read right, against 168.
    numbers = _numbers(held_out_digits, 200, "overlapping", seed=13)

    def right():
        return sum(read_number(item.data, predictor).number == item.number for item in numbers)

    both = right()
    monkeypatch.setattr(number_module, "shipped_part_scorer", _WholenessOnly)
    assert both >= right() + 5


def test_asking_the_classifier_lazily_reads_as_asking_about_every_part(
    held_out_digits, predictor, monkeypatch
):
    # The cut search asks the classifier only about the parts the best reading so far
    # holds; bounding the others' scores by a confidence of 1 keeps every answer the same.
    numbers = [
        *_numbers(held_out_digits, 15, "touching", seed=14),
        *_numbers(held_out_digits, 15, "overlapping", seed=15),
    ]
    asked = []
    predict = predictor.predict
    monkeypatch.setattr(
        predictor, "predict", lambda images: asked.append(len(images)) or predict(images)
    )

    def readings():
        asked.clear()
        return [read_number(item.data, predictor) for item in numbers], sum(asked)

    def every_part_asked(parts, last, bounds, scorer):
        confidences = scorer.confidences(list(parts.values()))
        scores = bounds + np.log(np.maximum(confidences, 1e-12))
        path = number_module._best_path(dict(zip(parts, scores.tolist(), strict=True)), last)
        return None if path is None else list(itertools.pairwise(path))

    lazily, few = readings()
    monkeypatch.setattr(number_module, "_best_cut", every_part_asked)
    eagerly, every = readings()
    assert few < 0.3 * every  # 120 images against 950
    for lazy, eager in zip(lazily, eagerly, strict=True):
        assert lazy.number == eager.number
        assert [digit.box for digit in lazy.digits] == [digit.box for digit in eager.digits]


def _seams_by_argmin(cost, starts, band, inside):
    """`_cheapest_seams`'s definition, step by step: each row's cheapest of the three cells
    above (left, straight, right; the first on a tie, as `argmin`), then back from the
    cheapest cell of the last row."""
    height, width = cost.shape
    columns = np.arange(width)
    allowed = (np.abs(columns[np.newaxis, :] - starts[:, np.newaxis]) <= band) & (
        (columns >= inside[0]) & (columns <= inside[1])
    )
    barred = np.where(allowed, 0.0, np.inf)
    total = cost[0] + barred
    steps = np.ones((height, len(starts), width), np.int8)
    options = np.full((3, len(starts), width), np.inf)
    for row in range(1, height):
        options[0, :, 1:] = total[:, :-1] + CUT_TURN_COST
        options[1] = total
        options[2, :, :-1] = total[:, 1:] + CUT_TURN_COST
        steps[row] = options.argmin(axis=0)
        total = np.take_along_axis(options, steps[row][np.newaxis], axis=0)[0]
        total += cost[row] + barred
    seams = np.zeros((len(starts), height), np.int64)
    seams[:, -1] = total.argmin(axis=1)
    for row in range(height - 1, 0, -1):
        seams[:, row - 1] = seams[:, row] + steps[row, np.arange(len(starts)), seams[:, row]] - 1
    return seams, total.min(axis=1)


def test_cut_seams_are_the_cheapest_paths_ties_broken_as_argmin(held_out_digits):
    # The seam search is vectorised for speed; every seam and cost must stay what the
    # step-by-step definition gives, or readings would change.
    cases = []
    for item in _numbers(held_out_digits, 12, "touching", seed=21):
        ink = extract_ink(to_grayscale(decode(item.data)))
        pieces = join_fragments(blobs(ink))
        height = typical_height(pieces)
        for piece in pieces:
            step = max(1.0, CUT_STEP * height)
            starts = np.arange(MIN_PART * height, piece.width - MIN_PART * height + 1, step)
            inside = (MIN_PART * height, piece.width - 1 - MIN_PART * height)
            if piece.width >= SPLIT_WIDTH * height and starts.size:
                cases.append((piece.ink(ink), starts, step, inside))
    assert len(cases) >= 10
    rng = np.random.default_rng(5)
    for _ in range(20):  # costs of 0 and 1 only: many paths tie
        cases.append(
            (rng.integers(0, 2, (30, 40)).astype(np.float32), np.arange(2.0, 38, 3), 3, (2, 37))
        )
    for case in cases:
        seams, totals = _cheapest_seams(*case)
        expected_seams, expected_totals = _seams_by_argmin(*case)
        assert np.array_equal(seams, expected_seams)
        assert np.array_equal(totals, expected_totals)


def test_cut_candidates_count_by_top_probability_times_digit_score(tiny_model_path, mnist):
    """With a not-a-digit head, the cut search weighs a candidate by how digit-like it is
    too; without one, by its top probability alone."""
    _, (x_test, _) = mnist
    ink = np.pad(x_test[3], 10)
    piece = from_mask(ink > 0)
    assert piece is not None
    image = normalize_digit(piece.ink(ink))[np.newaxis]
    headed = Predictor.from_keras(with_ink_head(load_keras_model(tiny_model_path)))
    answer = headed.predict(image)
    assert answer.digit_scores[0] < 0.999
    expected = answer.probabilities[0].max() * answer.digit_scores[0]
    assert _Scorer(ink, headed).confidences([piece])[0] == pytest.approx(expected, rel=1e-5)
    plain = Predictor.load(tiny_model_path)
    expected = plain.predict(image).probabilities[0].max()
    assert _Scorer(ink, plain).confidences([piece])[0] == pytest.approx(expected, rel=1e-5)

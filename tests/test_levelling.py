"""A ruled or squared page photographed turned further than `rules` looks for its rules:
levelled by them first, then read as any page."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from digit_images import assert_boxes_round_digits, numbers_read_right
from digitlab.images import find_ink, to_grayscale
from digitlab.images.levelling import page_turn
from digitlab.images.rules import remove_rules
from digitlab.inference.predictor import Predictor
from digitlab.number_images import compose_number
from digitlab.reading import read_number


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(threads=1)


def _ruled_page(degrees: float, width: int = 300, height: int = 160) -> np.ndarray:
    """The ink (0 on paper) of a page ruled every 25 pixels, with one pen stroke down its
    middle, turned `degrees` counterclockwise about its centre."""
    side = 2 * max(width, height)
    page = np.zeros((side, side), np.float32)
    page[::25, :] = page[1::25, :] = 0.4  # rules two pixels thick
    page[side // 2 - 40 : side // 2 + 40, side // 2 - 3 : side // 2 + 3] = 1.0
    turned = np.asarray(Image.fromarray(page, mode="F").rotate(degrees, Image.Resampling.BILINEAR))
    top, left = (side - height) // 2, (side - width) // 2
    return np.asarray(turned[top : top + height, left : left + width], np.float32)


@pytest.mark.parametrize("degrees", [-12.0, -6.0, 8.0])
def test_a_turned_ruled_page_is_found_turned_by_its_rules(degrees):
    turn = page_turn(_ruled_page(degrees))
    assert turn is not None
    # Turned counterclockwise, rules rise to the right: rows fall as columns grow.
    assert turn.degrees == pytest.approx(-degrees, abs=0.5)


@pytest.mark.parametrize(
    ("ink", "why"),
    [
        (_ruled_page(2.0), "rules within the slant `rules` handles itself"),
        (_ruled_page(8.0)[:, :40], "an image too narrow for rules, turned or not"),
        (np.pad(np.ones((80, 6), np.float32), 60), "a stroke and no rule"),
    ],
)
def test_a_page_is_not_turned_without_rules_slanted_past_what_rules_handles(ink, why):
    assert page_turn(ink) is None, why


def test_a_desk_beside_an_upright_page_does_not_turn_it(mnist):
    # A desk's dark block has full rows along some steep slants: while rules had only to
    # be at most 7 pixels thick, 4 of these 40 pages were turned by 9 to 16 degrees.
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(0)
    for _ in range(40):
        picked = rng.integers(0, len(x_test), size=int(rng.integers(3, 7)))
        item = compose_number(x_test[picked], y_test[picked], rng, "ordinary", "desk_edge")
        gray = to_grayscale(np.asarray(Image.open(io.BytesIO(item.data)).convert("L")))
        assert find_ink(gray).turn is None


def test_a_levelled_point_maps_back_to_where_it_was_in_the_image():
    gray = np.ones((160, 300), np.float32)
    gray[::25, :] = 0.6
    turned = np.asarray(
        Image.fromarray(gray, mode="F").rotate(9.0, Image.Resampling.BILINEAR, fillcolor=1.0)
    ).copy()
    turned[40:43, 250:253] = 0.0  # a dark dot near the top right
    turn = page_turn(1.0 - turned)
    assert turn is not None
    levelled = turn.level(turned)
    row, column = np.unravel_index(np.argmin(levelled), levelled.shape)
    back = turn.to_image(np.array([float(row)]), np.array([float(column)]))
    assert abs(back[0][0] - 41) <= 1.5 and abs(back[1][0] - 251) <= 1.5
    inside = turn.inside()
    assert inside[80, 150] and not inside[0, 0] and not inside[-1, -1]


def _stroke_page() -> np.ndarray:
    """An empty page's ink with one pen stroke, 4 pixels wide, down its middle."""
    ink = np.zeros((120, 200), np.float32)
    ink[30:90, 98:102] = 1.0
    return ink


def test_a_light_rule_blurred_over_more_rows_than_a_stroke_is_wide_still_goes():
    # Levelling (or a lens) spreads a thin rule over 4 rows at partial ink: more rows than
    # the stroke is wide, but little ink per column.
    ink = _stroke_page()
    ink[58:62, :] = np.maximum(ink[58:62, :], np.array([0.1, 0.3, 0.3, 0.1])[:, np.newaxis])
    cleaned = remove_rules(ink)
    assert not cleaned[58:62, :90].any() and not cleaned[58:62, 110:].any()
    np.testing.assert_array_equal(cleaned[:, 98:102], _stroke_page()[:, 98:102])


@pytest.mark.parametrize("shade", [0.67, 0.4])
def test_a_strip_of_desk_as_wide_as_a_stroke_and_lighter_is_no_rule(shade):
    # Where a page turned 10 degrees leaves a wedge of desk, its narrow end is a strip
    # down the image's edge, as wide as a stroke. Judged by its ink per column, the
    # lighter one would pass as a rule: along the image's edge, a band is judged by its
    # rows (taken for a rule, part of a desk's strip was left to be read as a 1).
    ink = _stroke_page()
    ink[:, :4] = shade
    np.testing.assert_array_equal(remove_rules(ink), ink)


def test_numbers_on_turned_notebook_pages_read_nearly_as_on_blank_paper(mnist, predictor):
    # Without levelling, at 8 degrees: ruled 8 of 20 right, squared 1 of 20; levelled but
    # with the rules' smeared ends left in the corners beyond the photograph, squared 14.
    _, (x_test, y_test) = mnist
    looks = ("plain", "ruled_paper", "squared_paper")
    right = numbers_read_right(x_test, y_test, predictor, looks, 5, 20, lengths=(3, 7), turn=8.0)
    assert right["ruled_paper"] >= right["plain"] - 2, right
    assert right["squared_paper"] >= right["plain"] - 4, right


def test_the_boxes_of_a_levelled_page_lie_round_each_digit_in_the_image(mnist, predictor):
    _, (x_test, y_test) = mnist
    item = compose_number(
        x_test[:5], y_test[:5], np.random.default_rng(2), look="ruled_paper", turned=10.0
    )
    gray = to_grayscale(np.asarray(Image.open(io.BytesIO(item.data)).convert("L")))
    found = find_ink(gray)
    assert found.turn is not None
    beyond = ~found.turn.inside()
    assert beyond.any() and not found.ink[beyond].any() and not found.specks[beyond].any()
    reading = read_number(item.data, predictor)
    assert reading.number == item.number
    assert_boxes_round_digits(reading, item.boxes)

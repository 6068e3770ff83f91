"""The part scorer: the views it sees, how its training parts are labelled and exported, and
the shipped scorer on parts of numbers of MNIST test digits it was never trained on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from digitlab.images import decode, extract_ink, to_grayscale
from digitlab.inference.predictor import Predictor
from digitlab.number_images import compose_number
from digitlab.reading.number import SPLIT_WIDTH, cut_candidates
from digitlab.reading.part_scorer import NOT_WHOLE, PartScorer, shipped_part_scorer
from digitlab.reading.part_view import VIEW_COLUMNS, VIEW_ROWS, part_views
from digitlab.reading.segment import Piece, blobs
from digitlab.training.part_scorer import (
    _class,
    export_part_scorer,
    part_set,
    train_part_scorer,
)


def _two_squares() -> np.ndarray:
    ink = np.zeros((80, 160), np.float32)
    ink[20:60, 30:50] = 1.0
    ink[20:60, 60:100] = 0.5
    return ink


def test_a_view_holds_the_part_and_the_ink_around_it_apart():
    ink = _two_squares()
    left, right = blobs(ink)
    views = part_views(ink, left, [left], height=40.0)
    assert views.shape == (1, VIEW_ROWS, VIEW_COLUMNS, 2)
    mine, rest = views[0, ..., 0], views[0, ..., 1]
    columns = np.arange(VIEW_COLUMNS)
    # The part is centred; the other square lies right of it, none of it in channel 0.
    assert abs((mine.sum(axis=0) * columns).sum() / mine.sum() - (VIEW_COLUMNS - 1) / 2) < 1
    assert (rest.sum(axis=0) * columns).sum() / rest.sum() > VIEW_COLUMNS / 2 + 4
    assert mine.max() == pytest.approx(1.0) and rest.max() == pytest.approx(0.5)
    # Box filtering keeps the ink's mass: the window is 60 x 80 working pixels.
    scale = VIEW_ROWS * VIEW_COLUMNS / (60 * 80)
    assert mine.sum() == pytest.approx(left.mask.sum() * scale, rel=1e-3)


def test_a_part_at_the_image_edge_is_viewed_on_blank_paper():
    ink = np.zeros((30, 30), np.float32)
    ink[0:30, 0:6] = 1.0
    (part,) = blobs(ink)
    views = part_views(ink, part, [part], height=30.0)
    assert views[0, ..., 1].max() == 0.0
    assert views[0, ..., 0].sum() > 0


def test_a_blob_without_candidate_parts_has_no_views_to_score():
    ink = np.zeros((30, 30), np.float32)
    ink[5:25, 10:14] = 1.0
    (blob,) = blobs(ink)
    views = part_views(ink, blob, [], height=20.0)
    assert views.shape == (0, VIEW_ROWS, VIEW_COLUMNS, 2)
    assert shipped_part_scorer().probabilities(views).shape == (0, NOT_WHOLE + 1)


def _pillow_views(ink, blob, parts, height):
    """The views as the shipped part scorer's training made them: each part's window
    pasted and resized by Pillow (BOX), the part and the rest apart."""
    rows = max(1, round(1.5 * height))
    columns = max(1, round(rows * VIEW_COLUMNS / VIEW_ROWS))
    pad = max(rows, columns)
    padded = np.pad(ink.astype(np.float32), pad)
    canvas = np.zeros_like(padded)
    top = round((blob.top + blob.bottom) / 2 - rows / 2) + pad
    views = []
    for part in parts:
        left = round(part.centre_x - columns / 2) + pad
        canvas[:] = 0
        canvas[part.top + pad : part.bottom + pad, part.left + pad : part.right + pad] = part.ink(
            ink
        )
        window = padded[top : top + rows, left : left + columns]
        mine = canvas[top : top + rows, left : left + columns]
        views.append(
            np.stack(
                [
                    np.asarray(
                        Image.fromarray(np.ascontiguousarray(channel), mode="F").resize(
                            (VIEW_COLUMNS, VIEW_ROWS), Image.Resampling.BOX
                        )
                    )
                    for channel in (mine, window - mine)
                ],
                axis=-1,
            )
        )
    return np.array(views)


def test_views_are_box_filtered_as_the_scorers_training_views_were(mnist):
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(8)
    predictor = Predictor.load(threads=1)
    cases = 0
    for length, gap, look in [(3, "touching", "plain"), (5, "overlapping", "thin_pen")] * 3:
        picked = rng.integers(0, len(x_test), size=length)
        item = compose_number(x_test[picked], y_test[picked], rng, gap, look)
        ink = extract_ink(to_grayscale(decode(item.data)))
        for blob, parts, height in cut_candidates(ink, predictor):
            expected = _pillow_views(ink, blob, parts, height)
            np.testing.assert_allclose(part_views(ink, blob, parts, height), expected, atol=1e-6)
            cases += len(parts)
    small = np.zeros((20, 24), np.float32)  # two digits 9 px tall: the window is enlarged
    small[4:13, 2:9] = small[4:13, 12:20] = 1.0
    joined = small.copy()
    joined[8, 4:15] = 1.0
    (blob,) = blobs(joined)
    parts = [blob, *blobs(small)]
    np.testing.assert_allclose(
        part_views(joined, blob, parts, 9.0), _pillow_views(joined, blob, parts, 9.0), atol=1e-6
    )
    assert cases > 30


def test_pieces_too_narrow_to_cut_are_candidates_alone(mnist):
    # The reader asks the scorer whether a piece it does not cut is a stray, so the scorer
    # is trained on such pieces too: each is its own one candidate.
    _, (x_test, y_test) = mnist
    ones = np.flatnonzero(y_test == 1)[:3]
    others = np.flatnonzero(y_test == 8)[:3]
    picked = np.array([others[0], ones[0], others[1], ones[1], others[2], ones[2]])
    item = compose_number(x_test[picked], y_test[picked], np.random.default_rng(4))
    ink = extract_ink(to_grayscale(decode(item.data)))
    alone = [
        blob
        for blob, parts, height in cut_candidates(ink, Predictor.load(threads=1))
        if blob.width < SPLIT_WIDTH * height and len(parts) == 1 and parts[0] is blob
    ]
    assert len(alone) >= 3


@pytest.fixture(scope="module")
def held_out_parts(mnist):
    _, (x_test, y_test) = mnist
    return part_set(
        x_test, y_test, 40, np.random.default_rng(3), Predictor.load(threads=1), judged_alone=True
    )


def test_the_shipped_scorer_tells_whole_digits_from_halves_and_pairs(held_out_parts):
    whole = held_out_parts.classes != NOT_WHOLE
    assert 0.1 < whole.mean() < 0.9
    views = held_out_parts.views.astype(np.float32) / 255
    scored = 1 - shipped_part_scorer().probabilities(views)[:, NOT_WHOLE]
    ours = roc_auc_score(whole, scored)
    # What the reader weighed parts by before: the classifier's own view of each part.
    assert ours >= 0.95
    assert ours > roc_auc_score(whole, held_out_parts.alone) + 0.05


def test_parts_are_labelled_whole_only_when_they_cover_one_digit():
    spans = [(10.0, 50.0), (60.0, 90.0)]
    mask = np.ones((40, 1), bool)

    def part(left, right):
        return Piece(0, left, np.repeat(mask, right - left, axis=1))

    assert _class(part(10, 50), spans, "47") == 4
    assert _class(part(62, 90), spans, "47") == 7  # a cut through an overlap
    assert _class(part(10, 30), spans, "47") == NOT_WHOLE  # half of the 4
    assert _class(part(10, 90), spans, "47") == NOT_WHOLE  # both
    assert _class(part(10, 40), spans, "47") is None  # three quarters: left out
    thin_one = [(10.0, 18.0), (16.0, 56.0)]  # a 1 overlapping a 2 by a quarter of its width
    assert _class(part(17, 56), thin_one, "12") == 2
    assert _class(part(10, 18), thin_one, "12") == 1
    assert _class(part(10, 56), thin_one, "12") == NOT_WHOLE  # 46 columns, the 2's 40


def test_a_scorer_trained_briefly_exports_to_onnx_that_answers_as_keras(mnist, tmp_path):
    (x_train, y_train), _ = mnist
    predictor = Predictor.load(threads=1)
    rng = np.random.default_rng(0)
    parts = part_set(x_train[:2000], y_train[:2000], 6, rng, predictor)
    assert len(parts) > 20 and set(np.unique(parts.classes)) > {NOT_WHOLE}
    assert parts.alone is None
    model = train_part_scorer(parts, parts, epochs=1, verbose=0)
    out = tmp_path / "scorer.onnx"
    assert export_part_scorer(model, out, parts) <= 1e-4
    exported = PartScorer(out).probabilities(parts.views.astype(np.float32) / 255)
    reference = np.asarray(model.predict(parts.views.astype(np.float32), verbose=0))
    np.testing.assert_allclose(exported, reference, atol=1e-4)

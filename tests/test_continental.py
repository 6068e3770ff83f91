"""Continental 1s: the flag drawn on a 1, and the head beside the classifier that reads it
(docs/reading.md, "Writing no network here was trained on")."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import MnistArrays
from digitlab.errors import DataError, ModelError
from digitlab.inference.modelfile import load_keras_model
from digitlab.inference.pretrained import pretrained_model_path
from digitlab.not_digit.branch import build_branch, without_branch
from digitlab.not_digit.looks import LOOKS, every_look
from digitlab.training.continental import add_flag, flagged_ones
from digitlab.training.continental_head import (
    HEAD_NAME,
    HeadData,
    attach_head,
    choose_threshold,
    head_logits,
    move_sevens,
    train_head,
    without_head,
)


def _bar() -> np.ndarray:
    """An upright 1: a bar three pixels wide, rows 4 to 23."""
    one = np.zeros((28, 28), np.uint8)
    one[4:24, 13:16] = 255
    return one


def test_a_flag_runs_down_to_the_left_from_the_top_of_the_stem() -> None:
    flagged = add_flag(_bar(), np.random.default_rng(0), angles=(45, 45), lengths=(0.3, 0.3))
    assert flagged.shape == (28, 28) and flagged.dtype == np.uint8
    ink = flagged > 128
    rows, columns = np.nonzero(ink)
    top, height = rows.min(), rows.max() - rows.min()
    stem = int(np.median(columns[rows > top + height // 2]))  # the stem below the flag
    assert abs(int(columns[rows == top].mean()) - stem) <= 2  # the flag meets the stem's top
    left = columns < stem - 3
    assert left.any() and not ink[top + height // 2 :, : stem - 3].any()
    # A 45-degree flag 0.3 of the height long ends about 0.21 of the height below the top.
    assert 0.1 <= (rows[left].max() - top) / height <= 0.35


def test_flags_are_drawn_on_the_1s_only_and_a_blank_image_is_refused(
    mnist: MnistArrays,
) -> None:
    (x_train, y_train), _ = mnist
    flagged = flagged_ones(x_train[:200], y_train[:200], seed=1)
    assert len(flagged) == np.sum(y_train[:200] == 1) > 0
    assert flagged_ones(x_train[:200], y_train[:200], seed=1).tolist() == flagged.tolist()
    assert flagged_ones(x_train[:5], np.zeros(5, int)).shape == (0, 28, 28)
    with pytest.raises(DataError, match="no stroke"):
        add_flag(np.zeros((28, 28), np.uint8), np.random.default_rng(0))


@pytest.fixture(scope="module")
def shipped() -> keras.Model:
    """The shipped model, loaded once for the module's tests (they only read it)."""
    return load_keras_model(pretrained_model_path())


def _classifier(model: keras.Model) -> keras.Model:
    return without_head(without_branch(model))


def test_the_head_moves_only_the_probability_of_7_to_1(
    mnist: MnistArrays, shipped: keras.Model, tmp_path: Path
) -> None:
    _, (x_test, y_test) = mnist
    classifier = _classifier(shipped)
    head = build_branch(128, seed=3, name=HEAD_NAME)
    model = attach_head(classifier, head, threshold=0.5)
    images = np.concatenate([x_test[y_test == 7][:20], x_test[y_test != 7][:20]])
    alone = classifier.predict(images, verbose=0)
    moved = model.predict(images, verbose=0)
    expected = move_sevens(alone, head_logits(head, classifier, images), 0.5)
    np.testing.assert_allclose(moved, expected, atol=1e-5)
    assert not np.allclose(moved[:20, 7], alone[:20, 7])  # an untrained head moves some
    others = [digit for digit in range(10) if digit not in (1, 7)]
    np.testing.assert_allclose(moved[:, others], alone[:, others], atol=1e-6)
    np.testing.assert_allclose(moved.sum(axis=1), 1.0, atol=1e-5)
    path = tmp_path / "with_head.keras"
    model.save(path)
    reloaded = load_keras_model(path)  # safe_mode: stock layers only
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), moved, atol=1e-6)
    np.testing.assert_allclose(without_head(reloaded).predict(images, verbose=0), alone, atol=1e-6)
    with pytest.raises(ModelError, match="already has"):
        attach_head(model, head, 0.0)


def test_the_threshold_is_the_most_cautious_of_the_most_accurate() -> None:
    probabilities = np.array([[0.0, 0.4, 0, 0, 0, 0, 0, 0.6, 0, 0]] * 3)
    labels = np.array([1, 1, 7])
    # A 1 reads as 1 when at least a sixth of p7 moves: logit - threshold > -1.61. Logits
    # 3, -0.5 and -3: thresholds from -1 to 1 read the two 1s and the 7 right.
    threshold = choose_threshold(probabilities, np.array([3.0, -0.5, -3.0]), labels)
    assert threshold == 1.0
    # A head that is never sure keeps the most cautious threshold, moving the least.
    assert choose_threshold(probabilities, np.full(3, -9.0), np.array([7, 7, 7])) == 2.0


def test_every_look_skips_a_look_that_leaves_no_ink(mnist: MnistArrays) -> None:
    (x_train, _), _ = mnist
    looked = every_look(x_train[:3], seed=0)
    assert looked.dtype == np.uint8 and 3 * (len(LOOKS) - 2) <= len(looked) <= 3 * len(LOOKS)
    assert every_look(np.zeros((0, 28, 28), np.uint8), seed=0).shape == (0, 28, 28)


def test_a_head_learns_flagged_1s_from_a_few_hundred_digits(
    mnist: MnistArrays, shipped: keras.Model
) -> None:
    (x_train, y_train), (x_test, y_test) = mnist
    classifier = _classifier(shipped)
    ones, sevens = x_train[:4000][y_train[:4000] == 1], x_train[:4000][y_train[:4000] == 7]
    data = HeadData(ones, sevens, np.zeros((0, 28, 28), np.uint8), np.zeros((0, 28, 28), np.uint8))
    head = train_head(
        classifier,
        data,
        lambda images, epoch: flagged_ones(images, np.ones(len(images), int), seed=epoch),
        epochs=3,
    )
    flagged = flagged_ones(x_test[:2000], y_test[:2000], seed=9)  # test 1s, other flags
    test_sevens = x_test[:2000][y_test[:2000] == 7]
    logits = head_logits(head, classifier, np.concatenate([flagged, test_sevens]))
    positive, negative = logits[: len(flagged)], logits[len(flagged) :]
    assert np.mean(positive[:, None] > negative[None, :]) >= 0.95  # AUROC


def test_the_shipped_model_reads_flagged_1s_and_keeps_its_7s(
    mnist: MnistArrays, shipped: keras.Model
) -> None:
    _, (x_test, y_test) = mnist
    model, classifier = shipped, _classifier(shipped)
    flagged = flagged_ones(x_test, y_test, seed=1)
    sevens = x_test[y_test == 7]
    read = model.predict(np.concatenate([flagged, sevens]), batch_size=1000, verbose=0)[:, :10]
    alone = classifier.predict(np.concatenate([flagged, sevens]), batch_size=1000, verbose=0)
    flags_read, sevens_read = read[: len(flagged)].argmax(1), read[len(flagged) :].argmax(1)
    assert np.mean(alone[: len(flagged)].argmax(1) == 1) <= 0.7  # the classifier reads 7s
    assert np.mean(flags_read == 1) >= 0.9
    assert np.sum(sevens_read != 7) <= np.sum(alone[len(flagged) :].argmax(1) != 7) + 1

"""Continental 1s: the flag drawn on a 1, and the last-layer refit that teaches a classifier
to read it (docs/reading.md, "Writing no network here was trained on")."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import MnistArrays
from digitlab.errors import DataError
from digitlab.inference.modelfile import load_keras_model
from digitlab.inference.pretrained import pretrained_model_path
from digitlab.not_digit.branch import without_branch
from digitlab.not_digit.scores import last_dense, penultimate_features
from digitlab.training.continental import add_flag, flagged_ones
from digitlab.training.refit import refit_last_layer


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


def _clusters(rng: np.random.Generator, centres: list[tuple[float, float]], count: int):
    return np.concatenate([rng.normal(centre, 0.3, size=(count, 2)) for centre in centres])


def test_a_refit_learns_a_new_look_of_a_class_and_keeps_the_old_ones() -> None:
    rng = np.random.default_rng(0)
    # Class 0 around (-2, 0), class 1 around (2, 0); a new look of class 1 sits at (-2, 3),
    # on class 0's side of the trained boundary x = 0.
    kernel, bias = np.array([[-2.0, 2.0], [0.0, 0.0]]), np.zeros(2)
    old = _clusters(rng, [(-2, 0), (2, 0)], 200)
    old_labels = np.repeat([0, 1], 200)
    new = _clusters(rng, [(-2, 3)], 200)
    assert ((new @ kernel + bias).argmax(1) == 0).all()
    fitted = refit_last_layer(
        np.concatenate([old, new]), np.r_[old_labels, np.ones(200, int)], kernel, bias
    )
    assert fitted[0].shape == (2, 2) and fitted[1].shape == (2,)
    assert ((new @ fitted[0] + fitted[1]).argmax(1) == 1).mean() >= 0.99
    assert ((old @ fitted[0] + fitted[1]).argmax(1) == old_labels).mean() >= 0.99
    # A strong pull holds the layer where it was trained.
    held = refit_last_layer(
        np.concatenate([old, new]), np.r_[old_labels, np.ones(200, int)], kernel, bias, pull=1e4
    )
    np.testing.assert_allclose(held[0], kernel, atol=1e-2)
    # Weighing the new look at 0 leaves nothing to learn it from.
    unweighted = refit_last_layer(
        np.concatenate([old, new]),
        np.r_[old_labels, np.ones(200, int)],
        kernel,
        bias,
        sample_weight=np.r_[np.ones(400), np.zeros(200)],
    )
    assert ((new @ unweighted[0] + unweighted[1]).argmax(1) == 0).mean() >= 0.99


def test_a_refit_refuses_features_that_do_not_fit_the_layer() -> None:
    kernel, bias = np.zeros((3, 2)), np.zeros(2)
    with pytest.raises(DataError, match="N x 3"):
        refit_last_layer(np.zeros((4, 2)), np.zeros(4, int), kernel, bias)
    with pytest.raises(DataError, match="0..1"):
        refit_last_layer(np.zeros((4, 3)), np.array([0, 1, 2, 0]), kernel, bias)
    with pytest.raises(DataError, match="sample weights"):
        refit_last_layer(
            np.zeros((4, 3)), np.zeros(4, int), kernel, bias, sample_weight=np.zeros(4)
        )


def test_a_refit_teaches_the_shipped_classifier_flagged_1s(mnist: MnistArrays) -> None:
    (x_train, y_train), (x_test, y_test) = mnist
    classifier = without_branch(load_keras_model(pretrained_model_path()))
    trained = [np.asarray(weights) for weights in last_dense(classifier).get_weights()]
    x, y = x_train[:3000], y_train[:3000]
    ones = flagged_ones(x, y, seed=0)
    features, _ = penultimate_features(classifier, np.concatenate([x, ones]))
    layer = refit_last_layer(features, np.r_[y, np.ones(len(ones), y.dtype)], *trained)
    unseen = flagged_ones(x_test[:3000], y_test[:3000], seed=1)  # test 1s, other flags
    flagged, _ = penultimate_features(classifier, unseen)
    test, _ = penultimate_features(classifier, x_test[:3000])

    def read(features: np.ndarray, weights: tuple[np.ndarray, ...]) -> np.ndarray:
        return np.asarray((features @ weights[0] + weights[1]).argmax(axis=1))

    assert np.mean(read(flagged, trained) == 1) <= 0.7  # 58%: the shipped layer reads 7
    assert np.mean(read(flagged, layer) == 1) >= 0.95  # 99% after
    before, after = (np.mean(read(test, weights) == y_test[:3000]) for weights in (trained, layer))
    assert after >= before - 0.002  # six of 3,000 test digits at most

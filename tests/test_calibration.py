"""Calibrated probabilities: the temperature fitted, baked into the model, kept by every
export and by training, and measured (ECE, reliability diagram) by the evaluation report."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from scipy.special import softmax

from digitlab.errors import DataError, ModelError
from digitlab.evaluation import evaluate
from digitlab.inference.calibration import (
    TEMPERATURE_LAYER,
    calibrate,
    expected_calibration_error,
    fit_temperature,
    logits_of,
    reliability_bins,
    temperature_of,
    uncalibrated_probabilities,
    with_temperature,
)
from digitlab.inference.export import export_model
from digitlab.inference.predictor import Predictor
from digitlab.training.loop import split_train_validation
from trained_models import build_tiny_model

# Held-out MNIST training images the tiny model never saw (it was fitted on the first 4,000).
CALIBRATION_SLICE = slice(50000, 55000)
TEST_IMAGES = 2000


@pytest.fixture(scope="module")
def tiny_model(tiny_model_path) -> keras.Model:
    return keras.models.load_model(tiny_model_path, compile=False, safe_mode=True)


@pytest.fixture(scope="module")
def held_out(mnist) -> tuple[np.ndarray, np.ndarray]:
    (x_train, y_train), _ = mnist
    return x_train[CALIBRATION_SLICE], y_train[CALIBRATION_SLICE]


@pytest.fixture(scope="module")
def mnist_test_images(mnist) -> tuple[np.ndarray, np.ndarray]:
    _, (x_test, y_test) = mnist
    return x_test[:TEST_IMAGES], y_test[:TEST_IMAGES]


@pytest.fixture(scope="module")
def calibrated(tiny_model, held_out) -> keras.Model:
    return calibrate(tiny_model, *held_out)


@pytest.fixture(scope="module")
def calibrated_path(calibrated, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("calibrated") / "calibrated.keras"
    calibrated.save(path)
    return str(path)


def test_fit_temperature_recovers_the_temperature_that_drew_the_labels(tiny_model, mnist):
    _, (x_test, _) = mnist
    logits = logits_of(tiny_model, x_test)
    rng = np.random.default_rng(0)
    true_temperature = 2.5
    chances = softmax(logits / true_temperature, axis=1)
    labels = np.array([rng.choice(10, p=row / row.sum()) for row in chances])
    assert fit_temperature(logits, labels) == pytest.approx(true_temperature, rel=0.1)


def test_logits_are_those_behind_the_models_softmax(tiny_model, mnist_test_images):
    x, _ = mnist_test_images
    logits = logits_of(tiny_model, x)
    probabilities = tiny_model.predict(x, verbose=0)
    np.testing.assert_allclose(softmax(logits, axis=1), probabilities, atol=1e-5)


def test_calibration_lowers_the_calibration_error_and_keeps_every_answer(
    tiny_model, calibrated, mnist_test_images
):
    x, y = mnist_test_images
    before = tiny_model.predict(x, verbose=0)
    after = calibrated.predict(x, verbose=0)
    assert temperature_of(tiny_model) == 1.0
    assert np.array_equal(before.argmax(axis=1), after.argmax(axis=1))
    assert expected_calibration_error(after, y) < 0.75 * expected_calibration_error(before, y)


def test_baked_model_gives_softmax_of_logits_over_the_temperature(calibrated, mnist_test_images):
    x, _ = mnist_test_images
    temperature = temperature_of(calibrated)
    expected = softmax(logits_of(calibrated, x) / temperature, axis=1)
    np.testing.assert_allclose(calibrated.predict(x, verbose=0), expected, atol=1e-5)
    layers = [layer.name for layer in calibrated.layers]
    assert layers[-3:] == ["logits", TEMPERATURE_LAYER, "probabilities"]
    assert calibrated.layers[-3].get_config()["activation"] == "linear"


def test_recalibrating_replaces_the_temperature_instead_of_stacking_it(
    calibrated, mnist_test_images
):
    x, _ = mnist_test_images
    recalibrated = with_temperature(calibrated, 3.0)
    assert temperature_of(recalibrated) == pytest.approx(3.0)
    assert [layer.name for layer in recalibrated.layers].count(TEMPERATURE_LAYER) == 1
    assert len(recalibrated.layers) == len(calibrated.layers)
    expected = softmax(logits_of(calibrated, x) / 3.0, axis=1)
    np.testing.assert_allclose(recalibrated.predict(x, verbose=0), expected, atol=1e-5)


def test_calibrated_model_loads_with_safe_mode_and_keeps_its_temperature(
    calibrated, calibrated_path, mnist_test_images
):
    x, _ = mnist_test_images
    loaded = keras.models.load_model(calibrated_path, compile=False, safe_mode=True)
    assert temperature_of(loaded) == pytest.approx(temperature_of(calibrated))
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), calibrated.predict(x, verbose=0), atol=1e-6
    )


def test_uncalibrated_probabilities_are_recovered_from_the_calibrated_ones(
    tiny_model, calibrated, mnist_test_images
):
    x, _ = mnist_test_images
    recovered = uncalibrated_probabilities(
        calibrated.predict(x, verbose=0), temperature_of(calibrated)
    )
    np.testing.assert_allclose(recovered, tiny_model.predict(x, verbose=0), atol=1e-4)


@pytest.mark.parametrize(
    ("format", "name"),
    [("onnx", "model.onnx"), ("tflite", "model.tflite"), ("savedmodel", "saved")],
)
def test_every_export_gives_the_calibrated_probabilities(
    format, name, tiny_model, calibrated, calibrated_path, mnist_test_images, tmp_path
):
    x, _ = mnist_test_images
    report = export_model(calibrated_path, format, tmp_path / name)
    assert report.passed
    exported = Predictor.load(tmp_path / name).predict(x).probabilities
    np.testing.assert_allclose(exported, calibrated.predict(x, verbose=0), atol=1e-4)
    uncalibrated = tiny_model.predict(x, verbose=0)
    assert np.abs(exported - uncalibrated).max() > 0.01


def test_fit_temperature_refuses_nan_and_mismatched_labels_and_leaves_one_class_alone():
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 1.5]])
    with pytest.raises(DataError, match="NaN"):
        fit_temperature(np.where(logits > 2.5, np.nan, logits), np.array([0, 1, 1]))
    with pytest.raises(DataError, match="3 integer class indices"):
        fit_temperature(logits, np.array([0, 1]))
    with pytest.raises(DataError, match="0..1"):
        fit_temperature(logits, np.array([0, 1, 2]))
    with pytest.raises(DataError, match="non-empty"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))
    # One class: sharper answers always look better, so there is no temperature to find.
    assert fit_temperature(logits, np.array([1, 1, 1])) == 1.0


def test_with_temperature_refuses_a_bad_temperature_or_a_model_it_cannot_calibrate():
    with pytest.raises(DataError, match="positive"):
        with_temperature(build_tiny_model(), 0.0)
    inputs = keras.Input((28, 28))
    no_dense = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Flatten()(inputs)))
    with pytest.raises(ModelError, match="no Dense layer"):
        with_temperature(no_dense, 2.0)
    after_dense = keras.Model(
        inputs,
        keras.layers.Activation("sigmoid")(
            keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs))
        ),
    )
    with pytest.raises(ModelError, match="cannot be calibrated"):
        with_temperature(after_dense, 2.0)


def test_ece_weights_each_bins_gap_by_its_share_of_images():
    # Bin (0.9, 0.93]: two images at 0.92, one right: gap 0.42, weight 2/4.
    # Last bin (0.93.., 1]: two at exactly 1.0, both right: gap 0, weight 2/4.
    probabilities = np.array([[0.92, 0.08], [0.92, 0.08], [1.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.21)
    table = reliability_bins(probabilities, labels)
    assert table["count"].sum() == 4 and table["count"][-1] == 2 and table["count"][13] == 2
    assert np.isnan(table["accuracy"][0])


def test_evaluation_reports_ece_before_and_after_with_a_reliability_diagram(
    tiny_model, calibrated, calibrated_path, mnist_test_images, tmp_path
):
    x, y = mnist_test_images
    result = evaluate(calibrated_path, x, y, out=tmp_path / "report")
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    before = expected_calibration_error(tiny_model.predict(x, verbose=0), y)
    after = expected_calibration_error(calibrated.predict(x, verbose=0), y)
    assert metrics["temperature"] == pytest.approx(temperature_of(calibrated))
    assert metrics["ece"] == pytest.approx(after, abs=1e-6)
    assert metrics["ece_uncalibrated"] == pytest.approx(before, abs=1e-4)
    assert f"ECE:      {result.ece:.4f}" in (tmp_path / "report" / "report.txt").read_text()
    diagram = (tmp_path / "report" / "reliability.png").read_bytes()
    assert diagram[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_training_saves_the_model_calibrated_on_its_validation_split(tmp_path, mnist):
    from digitlab.training.config import make_config
    from digitlab.training.loop import train

    overrides = {"limit": 1000, "epochs": 1, "batch_size": 32, "augment": False}
    config = make_config(overrides={**overrides, "model_options.hidden_units": [32]})
    result = train(config, out=tmp_path / "run", verbose=0)
    summary = json.loads((result.run_dir / "summary.json").read_text())
    model = keras.models.load_model(result.model_path, compile=False, safe_mode=True)
    best = keras.models.load_model(
        result.run_dir / "checkpoints" / "best.keras", compile=False, safe_mode=True
    )
    (x_train, y_train), _ = mnist
    _, _, x_val, y_val = split_train_validation(
        x_train, y_train, config.val_fraction, config.seed, config.limit
    )
    expected = fit_temperature(logits_of(best, x_val), y_val)
    assert summary["temperature"] == pytest.approx(expected, rel=1e-6)
    assert temperature_of(model) == pytest.approx(expected, rel=1e-6)


_JAX_ROUND_TRIP = """
import sys
import keras, numpy as np
from digitlab.inference.calibration import calibrate, temperature_of, with_temperature
loaded = keras.models.load_model(sys.argv[1], compile=False, safe_mode=True)
again = with_temperature(loaded, 2 * temperature_of(loaded))
again.save(sys.argv[2])
reloaded = keras.models.load_model(sys.argv[2], compile=False, safe_mode=True)
x, y = np.load(sys.argv[4]), np.load(sys.argv[5])
np.save(sys.argv[3], reloaded.predict(x, verbose=0))
refitted = temperature_of(calibrate(reloaded, x, y))
print(keras.backend.backend(), temperature_of(reloaded), refitted)
"""


@pytest.mark.slow
def test_a_calibrated_model_is_fitted_recalibrated_saved_and_run_on_jax(
    calibrated, calibrated_path, held_out, tmp_path
):
    np.save(tmp_path / "y.npy", held_out[1])
    np.save(tmp_path / "x_val.npy", held_out[0])
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _JAX_ROUND_TRIP,
            calibrated_path,
            str(tmp_path / "jax.keras"),
            str(tmp_path / "out.npy"),
            str(tmp_path / "x_val.npy"),
            str(tmp_path / "y.npy"),
        ],
        env={**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    backend, temperature, refitted = completed.stdout.split()[-3:]
    assert backend == "jax"
    assert float(temperature) == pytest.approx(2 * temperature_of(calibrated))
    # Fitted on JAX from the same held-out images, the temperature is the one TensorFlow found.
    assert float(refitted) == pytest.approx(temperature_of(calibrated), rel=1e-3)
    expected = with_temperature(calibrated, 2 * temperature_of(calibrated)).predict(
        held_out[0], verbose=0
    )
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, atol=1e-5)

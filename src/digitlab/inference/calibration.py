"""Calibrated probabilities: temperature scaling baked into the model, and the calibration error.

A classifier trained with cross-entropy is usually over-confident: of the digits it calls at
99%, fewer than 99% are right. Temperature scaling (Guo et al. 2017) divides the logits by one
number T > 0 fitted on held-out data, which changes confidences but never which class wins.

T lives inside the model graph, so every runtime and export (Keras, ONNX, TFLite, SavedModel)
applies it with no code of its own: the last `Dense` layer becomes linear (its outputs are the
logits), followed by `Rescaling(1/T, name="temperature")` and `Softmax`. A model without that
layer has T = 1. The input of the last `Dense` layer stays the penultimate feature vector,
calibrated or not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from digitlab.errors import DataError, ModelError

if TYPE_CHECKING:
    import keras

TEMPERATURE_LAYER = "temperature"
"""The name of the `Rescaling` layer that holds 1/T."""

ECE_BINS = 15
"""Equal-width confidence bins of the expected calibration error, as in Guo et al. 2017."""

TEMPERATURE_BOUNDS = (0.05, 20.0)
"""The range T is searched in: far wider than any useful temperature, and it keeps the
search finite when the data cannot pin T down."""

_PROBABILITY_FLOOR = 1e-30
"""Probabilities are raised to this before a log: a float32 softmax can underflow to 0."""


def temperature_of(model: keras.Model) -> float:
    """The temperature baked into `model`, 1.0 when it has no `temperature` layer."""
    for layer in model.layers:
        if layer.name == TEMPERATURE_LAYER:
            return 1.0 / float(layer.get_config()["scale"])
    return 1.0


def with_temperature(model: keras.Model, temperature: float) -> keras.Model:
    """A copy of `model` whose probabilities are softmax(logits / `temperature`).

    The new model shares every layer before the last `Dense` with `model`; that layer is
    replaced by a linear copy with the same weights, then `Rescaling(1/T)` and `Softmax`.
    A model already calibrated has its temperature replaced, never stacked. Only stock Keras
    layers are used, so the result saves and loads with `safe_mode`.
    Raises `DataError` for a temperature that is not a positive finite number and
    `ModelError` for a model whose output is not its last `Dense` layer's softmax.
    """
    import keras

    if not (np.isfinite(temperature) and temperature > 0):
        raise DataError(f"temperature must be a positive number, got {temperature}")
    dense = _last_dense(model)
    logits_layer = keras.layers.Dense.from_config(
        {**dense.get_config(), "activation": "linear", "name": "logits"}
    )
    logits = logits_layer(dense.input)
    logits_layer.set_weights(dense.get_weights())
    scaled = keras.layers.Rescaling(1.0 / float(temperature), name=TEMPERATURE_LAYER)(logits)
    probabilities = keras.layers.Softmax(name="probabilities")(scaled)
    return keras.Model(model.inputs, probabilities, name=model.name)


def logits_of(model: keras.Model, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """The logits of `model` for images `x` (before any temperature), float64, (N, classes).

    They are the last `Dense` layer's outputs without its softmax, computed from its input
    features, so they are exact even where a float32 softmax saturates.
    Raises `ModelError` as `with_temperature` does.
    """
    import keras

    dense = _last_dense(model)
    features = keras.Model(model.inputs, dense.input).predict(x, batch_size=batch_size, verbose=0)
    weights = dense.get_weights()
    logits = np.asarray(features, dtype=np.float64) @ np.asarray(weights[0], dtype=np.float64)
    if len(weights) > 1:
        logits += np.asarray(weights[1], dtype=np.float64)
    return logits


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the negative log-likelihood of `labels` under
    softmax(`logits` / T): a bounded one-dimensional search over log T (SciPy).

    Held-out logits are what T must be fitted on: on the training set the model is already
    confident and right, and T would come out too low. With fewer than two classes among
    `labels` the likelihood has no minimum (it always prefers sharper answers), so T = 1.
    Raises `DataError` for empty or non-finite logits, or labels that do not fit them.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    _check_scores(logits, labels, "logits")
    if not np.all(np.isfinite(logits)):
        raise DataError("cannot fit a temperature: the logits hold NaN or infinite values")
    if len(np.unique(labels)) < 2:
        return 1.0
    rows = np.arange(len(labels))

    def negative_log_likelihood(log_temperature: float) -> float:
        scaled = log_softmax(logits / np.exp(log_temperature), axis=1)
        return float(-np.mean(scaled[rows, labels]))

    low, high = np.log(TEMPERATURE_BOUNDS)
    found = minimize_scalar(negative_log_likelihood, bounds=(low, high), method="bounded")
    return float(np.exp(found.x))


def calibrate(model: keras.Model, x_val: np.ndarray, y_val: np.ndarray) -> keras.Model:
    """`model` with a temperature fitted on the held-out images `x_val`, labels `y_val`.

    A calibrated model is re-fitted from its logits, so its old temperature is replaced.
    Raises what `logits_of` and `fit_temperature` raise.
    """
    return with_temperature(model, fit_temperature(logits_of(model, x_val), y_val))


def uncalibrated_probabilities(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities a model gave before its temperature: softmax(T * log p).

    log p differs from the calibrated logits / T only by a constant per row, which the
    softmax removes, so only the saved (calibrated) model is needed to report both.
    """
    from scipy.special import softmax

    log_p = np.log(np.maximum(np.asarray(probabilities, dtype=np.float64), _PROBABILITY_FLOOR))
    return np.asarray(softmax(temperature * log_p, axis=1))


def reliability_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> dict[str, np.ndarray]:
    """Top-1 confidence against accuracy in `bins` equal-width bins of (0, 1].

    Returns arrays of length `bins`: "edges" (length `bins` + 1), "confidence" (the mean
    top-1 probability in each bin), "accuracy" (the share right in each bin) and "count".
    Empty bins hold NaN confidence and accuracy and a count of 0. scikit-learn's
    `calibration_curve` covers one class against the rest only, hence this function.
    Raises `DataError` for probabilities and labels that do not fit each other.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels)
    _check_scores(probabilities, labels, "probabilities")
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (low, high]: a confidence of exactly 1 belongs to the last one.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(index, weights=correct, minlength=bins) / count
    return {"edges": edges, "confidence": mean_confidence, "accuracy": accuracy, "count": count}


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> float:
    """The expected calibration error: |accuracy - confidence| per bin, weighted by the
    share of images in the bin (top-1 confidence, `bins` equal-width bins). 0 is perfect.

    Raises `DataError` as `reliability_bins` does.
    """
    table = reliability_bins(probabilities, labels, bins)
    filled = table["count"] > 0
    gaps = np.abs(table["accuracy"][filled] - table["confidence"][filled])
    return float(np.sum(gaps * table["count"][filled]) / np.sum(table["count"]))


def _check_scores(scores: np.ndarray, labels: np.ndarray, what: str) -> None:
    if scores.ndim != 2 or len(scores) == 0:
        raise DataError(f"{what} must be a non-empty (N, classes) array, got shape {scores.shape}")
    if labels.shape != (len(scores),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"labels must be {len(scores)} integer class indices, one per row of the {what}, "
            f"got {labels.dtype} of shape {labels.shape}"
        )
    if labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise DataError(f"labels must lie in 0..{scores.shape[1] - 1}, one per {what} column")


def _last_dense(model: keras.Model) -> Any:
    """The model's last `Dense` layer, checked to be where its probabilities come from."""
    import keras

    denses = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    if not denses:
        raise ModelError(f"model {model.name!r}: has no Dense layer to calibrate")
    dense = denses[-1]
    tail = model.layers[model.layers.index(dense) + 1 :]
    softmax_output = not tail and dense.get_config()["activation"] == "softmax"
    calibrated_output = [type(layer) for layer in tail] == [
        keras.layers.Rescaling,
        keras.layers.Softmax,
    ] and dense.get_config()["activation"] == "linear"
    if not (softmax_output or calibrated_output):
        raise ModelError(
            f"model {model.name!r}: its output is not the softmax of its last Dense layer, "
            "so it cannot be calibrated"
        )
    return dense

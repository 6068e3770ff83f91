"""The "not a digit" head: a small network on a classifier's penultimate features, trained
on digits against non-digits (outlier exposure), and attached to the classifier so that the
saved model answers both.

The attached model follows the shared contract: its output is N x 11, columns 0..9 the
classifier's own probabilities (untouched), column 10 `digit_score` in 0..1, higher for
more digit-like images. The threshold chosen on held-out data is folded into the head's
last bias so that it sits at exactly 0.5, and every runtime and export carries it with no
extra code. Only stock layers are used (Dense, Concatenate), so the model loads with
`safe_mode` and exports to ONNX and TFLite; the head's layers are frozen, so training the
model again (fine-tuning) leaves them as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from digitlab.errors import ModelError
from digitlab.not_digit.scores import HEAD_LAYERS, last_dense

if TYPE_CHECKING:
    import keras

HIDDEN_UNITS = 64
OUTPUT_LAYER = "probabilities_and_digit_score"
NUM_DIGITS = 10


@dataclass(frozen=True)
class DigitHead:
    """A fitted head: hidden Dense (ReLU) weights and bias, output weights and bias, with the
    input standardisation already folded into the hidden layer. `logit` gives the head's
    raw score; `threshold` is the raw score at which an image stops counting as a digit."""

    hidden_kernel: np.ndarray
    hidden_bias: np.ndarray
    output_kernel: np.ndarray
    output_bias: np.ndarray
    threshold: float = 0.0

    def logit(self, features: np.ndarray) -> np.ndarray:
        """The head's raw digit score of penultimate features (higher = more digit-like)."""
        hidden = np.maximum(features @ self.hidden_kernel + self.hidden_bias, 0.0)
        return np.asarray((hidden @ self.output_kernel + self.output_bias)[:, 0])

    def with_threshold(self, threshold: float) -> DigitHead:
        """The same head with `threshold` (a raw score) as its decision point."""
        return DigitHead(
            self.hidden_kernel, self.hidden_bias, self.output_kernel, self.output_bias, threshold
        )


def fit_head(
    digit_features: np.ndarray,
    non_digit_features: np.ndarray,
    epochs: int = 12,
    seed: int = 0,
) -> DigitHead:
    """Train a head on digits (label 1) against non-digits (label 0), the two weighted
    equally whatever their counts. Features are standardised first, and the
    standardisation folded into the hidden layer's weights."""
    import keras

    features = np.concatenate([digit_features, non_digit_features]).astype(np.float32)
    labels = np.concatenate([np.ones(len(digit_features)), np.zeros(len(non_digit_features))])
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    weights = np.where(labels == 1, len(labels) / (2 * len(digit_features)), 0.0) + np.where(
        labels == 0, len(labels) / (2 * len(non_digit_features)), 0.0
    )
    keras.utils.set_random_seed(seed)
    head = keras.Sequential(
        [
            keras.Input((features.shape[1],)),
            keras.layers.Dense(HIDDEN_UNITS, activation="relu"),
            keras.layers.Dense(1),
        ]
    )
    head.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    head.fit(
        (features - mean) / scale,
        labels,
        sample_weight=weights,
        epochs=epochs,
        batch_size=256,
        shuffle=True,
        verbose=0,
    )
    (kernel, bias), (out_kernel, out_bias) = (layer.get_weights() for layer in head.layers)
    folded_kernel = kernel / scale[:, None]
    folded_bias = bias - (mean / scale) @ kernel
    return DigitHead(folded_kernel, folded_bias, out_kernel, out_bias)


def attach_head(model: keras.Model, head: DigitHead) -> keras.Model:
    """`model` (N x 10 probabilities) with the head attached: N x 11 outputs, the 11th the
    digit score, 0.5 at the head's threshold. Raises `ModelError` when the model does not
    output 10 probabilities or has a head already."""
    import keras

    if any(layer.name in HEAD_LAYERS for layer in model.layers):
        raise ModelError(f"model {model.name!r} already has a not-a-digit head")
    if len(model.outputs) != 1 or model.outputs[0].shape[-1] != NUM_DIGITS:
        raise ModelError(f"model {model.name!r} does not output {NUM_DIGITS} probabilities")
    features = last_dense(model).input
    hidden_layer = keras.layers.Dense(
        HIDDEN_UNITS, activation="relu", name=HEAD_LAYERS[0], trainable=False
    )
    score_layer = keras.layers.Dense(1, activation="sigmoid", name=HEAD_LAYERS[1], trainable=False)
    score = score_layer(hidden_layer(features))
    outputs = keras.layers.Concatenate(name=OUTPUT_LAYER)([model.outputs[0], score])
    extended = keras.Model(model.inputs, outputs, name=model.name)
    hidden_layer.set_weights([head.hidden_kernel, head.hidden_bias])
    score_layer.set_weights([head.output_kernel, head.output_bias - head.threshold])
    return extended

"""The frozen-feature head: a small network on a classifier's penultimate features, trained
on digits against non-digits (outlier exposure). `bench/not_digit.py` measures it beside the
other scores; the shipped model carries the convolutional `branch` instead, which measured
better, because features learnt to tell digits apart leave a head little to work with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HIDDEN_UNITS = 64


@dataclass(frozen=True)
class DigitHead:
    """A fitted head: hidden Dense (ReLU) weights and bias, output weights and bias, with the
    input standardisation already folded into the hidden layer. `logit` gives the head's
    raw score."""

    hidden_kernel: np.ndarray
    hidden_bias: np.ndarray
    output_kernel: np.ndarray
    output_bias: np.ndarray

    def logit(self, features: np.ndarray) -> np.ndarray:
        """The head's raw digit score of penultimate features (higher = more digit-like)."""
        hidden = np.maximum(features @ self.hidden_kernel + self.hidden_bias, 0.0)
        return np.asarray((hidden @ self.output_kernel + self.output_bias)[:, 0])


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
    weights = np.where(
        labels == 1,
        len(labels) / (2 * len(digit_features)),
        len(labels) / (2 * len(non_digit_features)),
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

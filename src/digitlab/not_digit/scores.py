"""The scores that can tell a digit from a non-digit, each higher for more digit-like images.

All of them read a classifier's penultimate features: the input of its last `Dense` layer
(for every model of the registry, calibrated or not). From those features:

    max-softmax   the top probability the model gives (the usual baseline; the model's own
                  output, `inference.digit_score.split_outputs`)
    energy        log-sum-exp of the logits (Liu et al. 2020): uses every logit, not the top one
    Mahalanobis   minus the smallest distance to a class mean under the shared covariance
                  (Lee et al. 2018), fitted on training digits
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import logsumexp

from digitlab.errors import ModelError

if TYPE_CHECKING:
    import keras


def last_dense(model: keras.Model) -> keras.layers.Dense:
    """The classifier's last `Dense` layer, whose input is the penultimate feature vector
    (the not-a-digit branch is one nested layer, never taken for it). Raises `ModelError`
    when the model has none."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dense):
            return layer
    raise ModelError(f"model {model.name!r} has no Dense layer to read features from")


def penultimate_features(
    model: keras.Model, images: np.ndarray, batch_size: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(features, logits) of N x 28 x 28 raw-pixel `images`: the last Dense layer's input
    and its pre-activation output, float32."""
    import keras

    dense = last_dense(model)
    extractor = keras.Model(model.inputs, dense.input)
    features = np.asarray(extractor.predict(images, batch_size=batch_size, verbose=0), np.float32)
    return features, logits_of(dense, features)


def logits_of(dense: keras.layers.Dense, features: np.ndarray) -> np.ndarray:
    """The last Dense layer's output before its activation (the logits)."""
    kernel, bias = (np.asarray(weight, np.float32) for weight in dense.get_weights())
    return np.asarray(features @ kernel + bias, np.float32)


def energy(logits: np.ndarray) -> np.ndarray:
    """Minus the free energy: log-sum-exp of each row of logits."""
    return np.asarray(logsumexp(logits, axis=1))


@dataclass(frozen=True)
class Mahalanobis:
    """Class means and the shared precision matrix of penultimate features."""

    means: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray) -> Mahalanobis:
        """Fit on training digits' features and labels (a small ridge keeps it invertible)."""
        classes = np.unique(labels)
        means = np.stack([features[labels == label].mean(axis=0) for label in classes])
        centred = features - means[np.searchsorted(classes, labels)]
        covariance = centred.T @ centred / len(features)
        ridge = 1e-3 * np.trace(covariance) / len(covariance)
        return cls(means, np.linalg.inv(covariance + ridge * np.eye(len(covariance))))

    def score(self, features: np.ndarray) -> np.ndarray:
        """Minus the smallest squared Mahalanobis distance to a class mean."""
        distances = [
            np.einsum("ij,jk,ik->i", features - mean, self.precision, features - mean)
            for mean in self.means
        ]
        return np.asarray(-np.min(distances, axis=0))


def threshold_for(digit_scores: list[np.ndarray], flagged_shares: list[float]) -> float:
    """The highest threshold that flags at most `flagged_shares[i]` of `digit_scores[i]`
    for every set i: the lowest of their quantiles."""
    return float(
        min(
            np.quantile(scores, share)
            for scores, share in zip(digit_scores, flagged_shares, strict=True)
        )
    )

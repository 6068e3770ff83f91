"""Fit a trained classifier's last layer again, on fixed features, to teach it a new look of
a class its features already tell apart.

Only the last `Dense` layer (penultimate features -> logits) moves, so everything computed
from the features stays exactly as it was: the not-a-digit branch, which reads them, and
every layer before. The fit is softmax cross-entropy over the given features, plus an L2 pull
towards the layer's trained weights, minimised by L-BFGS from those weights: with the pull
the layer only moves as far as the new images ask. Training the shipped `cnn` again took
38 minutes on two cores; a refit takes a minute or two.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax

from digitlab.errors import DataError

REFIT_PULL = 1e-3
"""The L2 pull towards the trained weights, against a mean cross-entropy over the images."""

REFIT_ITERATIONS = 300
"""L-BFGS iterations at most: the fit from trained weights settles well within them."""


def refit_last_layer(
    features: np.ndarray,
    labels: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray,
    pull: float = REFIT_PULL,
    sample_weight: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The (kernel, bias) of a last layer fitted to N x F `features` and their N class
    `labels`, starting from and pulled towards the trained `kernel` (F x classes) and
    `bias`; `sample_weight` (default all 1) weighs each image's cross-entropy.
    Raises `DataError` for features, labels or weights that do not fit each other."""
    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    kernel0, bias0 = np.asarray(kernel, np.float64), np.asarray(bias, np.float64)
    weights = np.ones(len(labels)) if sample_weight is None else np.asarray(sample_weight, float)
    _check(features, labels, kernel0, bias0, weights)
    weights = weights / weights.sum()
    rows = np.arange(len(labels))
    size = kernel0.size
    start = np.concatenate([kernel0.ravel(), bias0])

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        moved_kernel, moved_bias = flat[:size].reshape(kernel0.shape), flat[size:]
        log_p = log_softmax(features @ moved_kernel + moved_bias, axis=1)
        loss = -float(weights @ log_p[rows, labels])
        residual = np.exp(log_p)
        residual[rows, labels] -= 1.0
        residual *= weights[:, None]
        distance = flat - start
        gradient = np.concatenate([(features.T @ residual).ravel(), residual.sum(axis=0)])
        return loss + 0.5 * pull * float(distance @ distance), gradient + pull * distance

    found = minimize(
        loss_and_gradient,
        start,
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": REFIT_ITERATIONS},
    )
    fitted = np.asarray(found.x, np.float32)
    return fitted[:size].reshape(kernel0.shape), fitted[size:]


def _check(
    features: np.ndarray,
    labels: np.ndarray,
    kernel: np.ndarray,
    bias: np.ndarray,
    weights: np.ndarray,
) -> None:
    if features.ndim != 2 or len(features) == 0 or features.shape[1] != kernel.shape[0]:
        raise DataError(
            f"features must be N x {kernel.shape[0]} for a {kernel.shape} kernel, "
            f"got {features.shape}"
        )
    if bias.shape != (kernel.shape[1],):
        raise DataError(f"bias must hold {kernel.shape[1]} values, got shape {bias.shape}")
    if labels.shape != (len(features),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be {len(features)} integer classes, one per feature row")
    if labels.min() < 0 or labels.max() >= kernel.shape[1]:
        raise DataError(f"labels must lie in 0..{kernel.shape[1] - 1}")
    if weights.shape != labels.shape or (weights < 0).any() or weights.sum() <= 0:
        raise DataError("sample weights must be one non-negative number per image, not all 0")

"""Whether an image is a digit at all: the one place that splits a model's outputs.

A model that knows "not a digit" answers N x 11: columns 0..9 are the digit probabilities
and column 10 the `digit_score` in 0..1, higher meaning more digit-like. Its head is built
so that the threshold chosen on held-out data maps to exactly 0.5, so that threshold
travels with the model into every export. Any other model answers N x classes, and its
digit score is its top probability (the max-softmax baseline). Either way an image is a
digit when its score reaches the threshold, 0.5 unless the user chooses another.

The command line reads its default threshold from here while building `--help`, so numpy is
imported by the functions that use it, not by the module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from digitlab.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

DEFAULT_NOT_DIGIT_THRESHOLD = 0.5
"""Digit scores below this say "not a digit"; a model with a head maps its own choice here."""

DIGIT_CLASSES = 10
"""The digits 0 to 9: the probability columns of every digit model."""

NOT_DIGIT_OUTPUTS = DIGIT_CLASSES + 1
"""The output width of a model with a "not a digit" head: 10 digits, then the digit score."""


def has_not_digit_head(raw: np.ndarray) -> bool:
    """Whether N x C model outputs carry a digit score column (C is 11)."""
    import numpy as np

    return int(np.shape(raw)[-1]) == NOT_DIGIT_OUTPUTS


def class_count(output_width: int) -> int:
    """The classes a model with outputs this wide tells apart: the width, less the digit
    score column of a model that knows non-digits."""
    return DIGIT_CLASSES if output_width == NOT_DIGIT_OUTPUTS else output_width


def split_outputs(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A model's N x C outputs -> (N x classes probabilities, N digit scores), float32.

    11 columns: the first 10 are the digits' probabilities, the last the digit score. Any
    other width is all class probabilities, and each row's top one is its digit score.
    digitlab's models end in a softmax; probabilities given as logits are turned into
    probabilities first.
    """
    import numpy as np

    outputs = np.asarray(raw, dtype=np.float32)
    if has_not_digit_head(outputs):
        return _as_probabilities(outputs[:, :DIGIT_CLASSES]), np.clip(
            outputs[:, DIGIT_CLASSES], 0.0, 1.0
        )
    probabilities = _as_probabilities(outputs)
    return probabilities, np.asarray(probabilities.max(axis=1))


def is_digit(digit_scores: np.ndarray | float, threshold: float) -> np.ndarray:
    """Bool, shaped like `digit_scores`: which digit scores reach `threshold`."""
    import numpy as np

    return np.asarray(digit_scores) >= threshold


def check_threshold(threshold: float, name: str = "the not-digit threshold") -> float:
    """`threshold` as a float when it lies in 0..1; `ConfigError` naming it otherwise."""
    value = float(threshold)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must lie between 0 and 1, got {threshold}")
    return value


def _as_probabilities(outputs: np.ndarray) -> np.ndarray:
    """Rows that already are probabilities unchanged; any other rows through a softmax."""
    import numpy as np

    rows_are_probabilities = bool(
        (outputs >= 0).all() and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3)
    )
    if rows_are_probabilities:
        return outputs
    shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=1, keepdims=True), dtype=np.float32)

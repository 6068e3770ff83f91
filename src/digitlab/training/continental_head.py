"""The continental-1 head: a small network beside the classifier that tells a 1 with a flag
from a 7, and moves the classifier's probability of 7 to 1 as far as it is sure.

A classifier that learnt MNIST's bare 1s reads a 1 with a flag as 7 (docs/reading.md).
Teaching the classifier itself cost the digits it already read: refitting its last layer,
or fine-tuning its last stages on flagged 1s, read 0.2 to 2.7 points fewer of UCI's 8 x 8
digits of outside writers, whose blurred 7s, 9s and 2s then came out as 1. The head leaves
the classifier as it is and answers one question, which matters only where the classifier
leans to 7: is this a 1 with a flag? It is the not-a-digit branch's architecture
(`not_digit.branch.build_branch`: `strided` convolutions on the image beside the frozen
classifier's penultimate features), trained on 1s with flags drawn on
(`continental.flagged_ones`) and MNIST's own 1s against MNIST's 7s, both sides also in every
generic look of `not_digit.looks` and every style of `styles`, so that a blurred or coarse 7
stays a 7.

Attached, with its threshold folded into its logit's bias, the head's score s (0..1) moves
p7 * s from the probability of 7 to that of 1; the other eight digits, the ranking among
them and the sum stay exactly as they were. Only stock layers (Reshape, Cropping1D,
ZeroPadding1D, Rescaling, Multiply, Add) are used, so the model loads with `safe_mode` and
exports to ONNX and TFLite like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from digitlab.inference.digit_score import DIGIT_CLASSES
from digitlab.not_digit.branch import (
    branch_logits,
    branch_trainer,
    build_branch,
    fit_balanced,
    frozen_beside,
)
from digitlab.not_digit.scores import last_dense, penultimate_features

if TYPE_CHECKING:
    import keras

HEAD_NAME = "continental_one"
"""The head's name in a model: finding it (and freezing it when a person teaches the
model their digits) goes by this name."""

OUTPUT_LAYER = "continental_probabilities"
"""The layer that adds the head's move to the classifier's probabilities: the attached
model's output, whose first input is the classifier's own."""

ONE, SEVEN = 1, 7

THRESHOLDS = (2.0, 1.0, 0.0, -1.0, -2.0, -3.0, -4.0)
"""The logit thresholds tried, most cautious first; `choose_threshold` picks among them."""


@dataclass(frozen=True)
class HeadData:
    """What the head learns from (MNIST TRAINING digits, N x 28 x 28 uint8): `ones` its
    bare 1s, `sevens` its 7s, and, in other looks (every generic look of `not_digit.looks`,
    every style of `styles`, read back by `to_mnist`), 1s with flags (`looked_flags`) and
    7s (`looked_sevens`). Each epoch draws new flags on `ones`."""

    ones: np.ndarray
    sevens: np.ndarray
    looked_flags: np.ndarray
    looked_sevens: np.ndarray


def train_head(
    classifier: keras.Model,
    data: HeadData,
    flags: Callable[[np.ndarray, int], np.ndarray],
    epochs: int = 10,
    seed: int = 0,
) -> keras.Model:
    """A head for `classifier` (10 probabilities; frozen, feeding the head its features),
    trained on 1s (label 1: `flags(data.ones, epoch)` drawn afresh each epoch, the bare 1s
    and the looked flags) against 7s (label 0), each side weighted to half of the loss,
    every image through the project's augmentation."""
    head = build_branch(last_dense(classifier).input.shape[-1], seed, name=HEAD_NAME)
    sevens = np.concatenate([data.sevens, data.looked_sevens])
    per_epoch = 2 * len(data.ones) + len(data.looked_flags) + len(sevens)
    trainer = branch_trainer(classifier, head, per_epoch, epochs, seed)
    for epoch in range(epochs):
        ones = np.concatenate([flags(data.ones, epoch), data.ones, data.looked_flags])
        fit_balanced(trainer, ones, sevens, epoch)
    return head


def head_logits(head: keras.Model, classifier: keras.Model, images: np.ndarray) -> np.ndarray:
    """The head's logit (higher: more surely a 1 with a flag) of N x 28 x 28 images."""
    return branch_logits(head, images, penultimate_features(classifier, images)[0])


def move_sevens(probabilities: np.ndarray, logits: np.ndarray, threshold: float) -> np.ndarray:
    """What the attached head answers, in NumPy: of each row of N x 10 `probabilities`,
    p7 * sigmoid(logit - threshold) moved from 7 to 1."""
    share = 1.0 / (1.0 + np.exp(-(np.asarray(logits, np.float64) - threshold)))
    moved = np.asarray(probabilities, np.float64)[:, SEVEN] * share
    result = np.array(probabilities, np.float64)
    result[:, ONE] += moved
    result[:, SEVEN] -= moved
    return result


def choose_threshold(probabilities: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> float:
    """Of `THRESHOLDS`, the most cautious of those that read held-out digits (N x 10
    `probabilities` from the classifier, the head's `logits`, their `labels`) most
    accurately."""
    accuracies = [
        float(np.mean(move_sevens(probabilities, logits, threshold).argmax(axis=1) == labels))
        for threshold in THRESHOLDS
    ]
    return THRESHOLDS[int(np.argmax(accuracies))]


def attach_head(model: keras.Model, head: keras.Model, threshold: float) -> keras.Model:
    """`model` (N x 10 probabilities) with a frozen copy of `head` fed the image and the
    model's penultimate features, moving p7 * sigmoid(logit - `threshold`) from 7 to 1.
    Raises `ModelError` when the model does not output 10 probabilities or already has
    a head."""
    import keras

    shifted = frozen_beside(model, head, threshold, "a continental-1 head")
    probabilities = model.outputs[0]
    share = shifted([model.inputs[0], last_dense(model).input])
    column = keras.layers.Reshape((DIGIT_CLASSES, 1), name="continental_column")(probabilities)
    seven = keras.layers.Cropping1D((SEVEN, DIGIT_CLASSES - SEVEN - 1), name="continental_p7")(
        column
    )
    moved = keras.layers.Multiply(name="continental_moved")(
        [seven, keras.layers.Reshape((1, 1), name="continental_share")(share)]
    )
    gained = keras.layers.ZeroPadding1D((ONE, DIGIT_CLASSES - ONE - 1), name="continental_to_1")(
        moved
    )
    lost = keras.layers.ZeroPadding1D(
        (SEVEN, DIGIT_CLASSES - SEVEN - 1), name="continental_from_7"
    )(keras.layers.Rescaling(-1.0, name="continental_minus")(moved))
    change = keras.layers.Reshape((DIGIT_CLASSES,), name="continental_change")(
        keras.layers.Add(name="continental_moves")([gained, lost])
    )
    outputs = keras.layers.Add(name=OUTPUT_LAYER)([probabilities, change])
    return keras.Model(model.inputs, outputs, name=model.name)


def without_head(model: keras.Model) -> keras.Model:
    """The classifier of `model` (N x 10 probabilities) before its continental-1 head,
    sharing its layers: `model` itself when it has none."""
    import keras

    if not any(layer.name == HEAD_NAME for layer in model.layers):
        return model
    return keras.Model(model.inputs, model.get_layer(OUTPUT_LAYER).input[0], name=model.name)

"""The "not a digit" branch: a small convolutional network with features of its own, beside
the digit classifier, trained on digits against non-digits drawn afresh every epoch.

A head on the classifier's penultimate features (`heads`) reaches only so far: features
learnt to tell digits apart need not tell a letter from a digit. The branch reads the image
itself, so the digit classifier stays exactly as it was: the registry's `strided` network
(stride-2 convolutions, about 100k weights, fast on a CPU), its last feature map beside the
frozen classifier's penultimate features, then Dense 64 ReLU, one logit and a sigmoid.
Several branches trained alike with other seeds can be combined into one that averages
their logits (`combine_branches`); the shipped model's is the mean of three.

The attached model follows the shared contract: Input -> [classifier -> 10 probabilities]
++ [branch -> digit_score] -> Concatenate -> N x 11. The threshold chosen on held-out data
is folded into the logit's bias, so it sits at exactly 0.5 in every runtime and export.
Only stock layers are used (the branch is a nested functional model), so the model loads
with `safe_mode` and exports to ONNX and TFLite; the branch is frozen, so training the model
again (fine-tuning) leaves it as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from digitlab.errors import ModelError
from digitlab.inference.digit_score import DIGIT_CLASSES
from digitlab.not_digit.non_digits import NEEDS_SOURCE, TRAINING_KINDS, make_non_digits
from digitlab.not_digit.scores import last_dense

if TYPE_CHECKING:
    import keras

BRANCH_NAME = "not_digit"
LOGIT_LAYER = "digit_logit"
OUTPUT_LAYER = "probabilities_and_digit_score"


@dataclass(frozen=True)
class BranchData:
    """What the branch learns from: `digits` (MNIST training digits, augmented as they are
    drawn), `styled` (training digits in the styles of `styles` and the looks of `looks`,
    read back by `to_mnist`), and the sources non-digits are cut from: MNIST training digits
    for fragments, pairs and turned or mirrored digits (`labels` are the
    digits' classes), Fashion-MNIST's training split for clothes."""

    digits: np.ndarray
    styled: np.ndarray
    fashion: np.ndarray
    labels: np.ndarray


def build_branch(feature_size: int, seed: int = 0, name: str = BRANCH_NAME) -> keras.Model:
    """An untrained branch called `name`, of two inputs, raw 28 x 28 pixels and the
    classifier's `feature_size` penultimate features: `strided`'s convolutions on the
    pixels, beside the features (batch-normalised, as their scales differ), -> Dense 64
    ReLU -> one logit (`digit_logit`) -> sigmoid: the digit score, or any other yes or no
    about a digit."""
    import keras

    from digitlab.models import build_strided

    keras.utils.set_random_seed(seed)
    strided = build_strided(num_classes=2)
    features = keras.Input((feature_size,), name="classifier_features")
    scaled = keras.layers.BatchNormalization(name="features_bn")(features)
    both = keras.layers.Concatenate(name="both")([strided.get_layer("flatten").output, scaled])
    hidden = keras.layers.Dense(64, activation="relu", name="hidden")(both)
    logit = keras.layers.Dense(1, name=LOGIT_LAYER)(hidden)
    score = keras.layers.Activation("sigmoid", name="digit_score")(logit)
    return keras.Model([*strided.inputs, features], score, name=name)


def branch_logits(
    branch: keras.Model, images: np.ndarray, features: np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """The branch's raw score (its logit, higher = more digit-like) of N x 28 x 28 images
    and their classifier features."""
    import keras

    logits = keras.Model(branch.inputs, branch.get_layer(LOGIT_LAYER).output)
    outputs = logits.predict([images, features], batch_size=batch_size, verbose=0)
    return np.asarray(outputs)[:, 0]


def epoch_non_digits(data: BranchData, per_kind: int, seed: int) -> np.ndarray:
    """`per_kind` fresh non-digits of every training kind, drawn with `seed`."""
    sources = {"digits": data.digits, "fashion": data.fashion}
    return np.concatenate(
        [
            make_non_digits(
                kind,
                per_kind,
                seed,
                source=sources.get(NEEDS_SOURCE.get(kind, "")),
                labels=data.labels,
            )
            for kind in TRAINING_KINDS
        ]
    )


def train_branch(
    model: keras.Model,
    data: BranchData,
    epochs: int = 8,
    digits_per_epoch: int = 8000,
    styled_per_epoch: int = 19200,
    per_kind: int = 1000,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
) -> keras.Model:
    """A branch for classifier `model` (frozen, feeding the branch its features), trained
    on digits (label 1) against non-digits (label 0), each side weighted to half of the
    loss. Every epoch draws `digits_per_epoch` MNIST digits, `styled_per_epoch` of the
    styled ones (all of them when there are fewer), and `per_kind` NEW non-digits of every
    training kind, so the branch never sees the same scribble twice; all of them pass
    through the project's digit augmentation.
    `progress(epoch, loss)` is called after each epoch."""
    branch = build_branch(last_dense(model).input.shape[-1], seed)
    styled_per_epoch = min(styled_per_epoch, len(data.styled))
    per_epoch = digits_per_epoch + styled_per_epoch + per_kind * len(TRAINING_KINDS)
    trainer = branch_trainer(model, branch, per_epoch, epochs, seed)
    for epoch in range(epochs):
        rng = np.random.default_rng([seed, epoch])
        picks = rng.choice(len(data.digits), size=digits_per_epoch, replace=False)
        styled = rng.choice(len(data.styled), size=styled_per_epoch, replace=False)
        digits = np.concatenate([data.digits[picks], data.styled[styled]])
        others = epoch_non_digits(data, per_kind, seed=1000 * (seed + 1) + epoch)
        loss = fit_balanced(trainer, digits, others, epoch)
        if progress is not None:
            progress(epoch + 1, loss)
    return branch


BATCH_SIZE = 128


def branch_trainer(
    model: keras.Model, branch: keras.Model, per_epoch: int, epochs: int, seed: int
) -> keras.Model:
    """The model `fit` trains `branch` (from `build_branch`) in: raw pixels -> the
    project's augmentation -> the branch's logit, fed the augmented image and the features
    of `model` (frozen); compiled with a binary cross-entropy and Adam, its rate decaying
    from 0.002 over `epochs` of `per_epoch` images."""
    import keras

    from digitlab.training.augment import build_augmentation

    trunk = keras.Model(model.inputs, last_dense(model).input)
    trunk.trainable = False
    logits = keras.Model(branch.inputs, branch.get_layer(LOGIT_LAYER).output)
    pixels = keras.Input((28, 28))
    augmented = build_augmentation(seed=seed)(pixels)
    trainer = keras.Model(pixels, logits([augmented, trunk(augmented)]), name="branch_trainer")
    steps = epochs * -(-per_epoch // BATCH_SIZE)
    trainer.compile(
        optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    return trainer


def fit_balanced(
    trainer: keras.Model, positives: np.ndarray, negatives: np.ndarray, epoch: int
) -> float:
    """Epoch `epoch` (from 0) of `trainer` on `positives` (label 1) against `negatives`
    (label 0), each side weighted to half of the loss; returns the epoch's loss."""
    images = np.concatenate([positives, negatives]).astype(np.float32)
    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))].astype(np.float32)
    weights = np.where(labels == 1, 0.5 / len(positives), 0.5 / len(negatives)) * len(labels)
    history = trainer.fit(
        images,
        labels,
        sample_weight=weights,
        batch_size=BATCH_SIZE,
        epochs=epoch + 1,
        initial_epoch=epoch,
        shuffle=True,
        verbose=0,
    )
    return float(history.history["loss"][-1])


def combine_branches(branches: Sequence[keras.Model]) -> keras.Model:
    """One branch whose logit is the mean of `branches`' logits: branches trained alike with
    other seeds err on different non-digits, so together they flag more of them for the
    same digits kept. Each member stays whole, nested under the name `member_I`; the
    mean is one `Dense` layer (`digit_logit`, weights 1/N, no offset) so that
    `attach_branch` folds the threshold into it as into a single branch's.
    Raises `ModelError` for fewer than two branches."""
    import keras

    if len(branches) < 2:
        raise ModelError(f"combining branches takes two or more, got {len(branches)}")
    pixels, features = (
        keras.Input(tensor.shape[1:], name=tensor.name) for tensor in branches[0].inputs
    )
    logits = [
        keras.Model(branch.inputs, branch.get_layer(LOGIT_LAYER).output, name=f"member_{index}")(
            [pixels, features]
        )
        for index, branch in enumerate(branches)
    ]
    mean = keras.layers.Dense(1, name=LOGIT_LAYER)
    logit = mean(keras.layers.Concatenate(name="member_logits")(logits))
    mean.set_weights([np.full((len(branches), 1), 1 / len(branches), np.float32), np.zeros(1)])
    score = keras.layers.Activation("sigmoid", name="digit_score")(logit)
    return keras.Model([pixels, features], score, name=BRANCH_NAME)


def attach_branch(model: keras.Model, branch: keras.Model, threshold: float) -> keras.Model:
    """`model` (N x 10 probabilities) with a frozen copy of `branch` beside it, fed the
    image and the model's penultimate features: N x 11
    outputs, the 11th the digit score, 0.5 where the branch's logit equals `threshold`.
    Raises `ModelError` when the model does not output 10 probabilities or already has a
    branch."""
    import keras

    shifted = frozen_beside(model, branch, threshold, "a not-a-digit branch")
    outputs = keras.layers.Concatenate(name=OUTPUT_LAYER)(
        [model.outputs[0], shifted([model.inputs[0], last_dense(model).input])]
    )
    return keras.Model(model.inputs, outputs, name=model.name)


def frozen_beside(
    model: keras.Model, branch: keras.Model, threshold: float, kind: str
) -> keras.Model:
    """A frozen copy of `branch` (or of any model `build_branch` makes) to put beside
    `model`, its logit lowered by `threshold` so that its sigmoid is 0.5 where the branch's
    logit equals `threshold`. Raises `ModelError` when `model` does not output 10
    probabilities or already has a layer of the branch's name (`kind` says what it is)."""
    import keras

    if any(layer.name == branch.name for layer in model.layers):
        raise ModelError(f"model {model.name!r} already has {kind}")
    if len(model.outputs) != 1 or model.outputs[0].shape[-1] != DIGIT_CLASSES:
        raise ModelError(f"model {model.name!r} does not output {DIGIT_CLASSES} probabilities")
    shifted = keras.models.clone_model(branch)
    shifted.set_weights(branch.get_weights())
    kernel, bias = shifted.get_layer(LOGIT_LAYER).get_weights()
    shifted.get_layer(LOGIT_LAYER).set_weights([kernel, bias - threshold])
    shifted.trainable = False
    return shifted


def without_branch(model: keras.Model) -> keras.Model:
    """The digit classifier of `model` alone (N x 10 probabilities), sharing its layers:
    `model` itself when it has no not-a-digit branch."""
    import keras

    if not any(layer.name == BRANCH_NAME for layer in model.layers):
        return model
    return keras.Model(model.inputs, model.get_layer(OUTPUT_LAYER).input[0], name=model.name)

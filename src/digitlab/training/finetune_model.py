"""The Keras side of fine-tuning: which layers stay frozen, the model `fit` trains, and the
batches of each epoch (the person's digits mixed with replayed MNIST)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from digitlab.inference.digit_score import split_outputs
from digitlab.not_digit.scores import last_dense
from digitlab.training.augment import augment_images, build_augmentation
from digitlab.training.compilation import all_layers
from digitlab.training.continental_head import HEAD_NAME
from digitlab.training.person_digits import DIGIT_COLUMNS


def freeze_for_finetuning(
    model: keras.Model, probe: np.ndarray, trainable_layers: int
) -> list[keras.layers.Layer]:
    """Freeze all of `model` but its last `trainable_layers` digit layers; return the head.

    Frozen: every BatchNormalization layer, the not-a-digit head, the continental-1 head,
    and every layer with weights before the last `trainable_layers` of the digit path
    (convolutions and dense layers), so the early stages, which find strokes, stay as 60,000
    digits taught them and only the late ones learn how this person puts strokes together.
    The not-a-digit head is every layer with weights that the digit columns do not depend
    on: changing its weights leaves columns 0..9 of the outputs for `probe` (a few
    N x 28 x 28 images) exactly as they were. A 10-output model has none. Testing each layer
    this way, rather than by name or position, holds for however the head is wired in. The
    continental-1 head does move the digit columns, so it is found by its name.
    """
    layers = [layer for layer in all_layers(model) if not hasattr(layer, "layers")]
    head = [
        layer
        for nested in all_layers(model)
        if nested.name == HEAD_NAME
        for layer in all_layers(nested)
    ]
    if model.output_shape[-1] > DIGIT_COLUMNS:
        head += [layer for layer in layers if _only_beyond_digits(model, layer, probe)]
    trained = digit_layers(model, head)[-trainable_layers:] if trainable_layers > 0 else []
    # Set on every layer: a saved model may carry layers frozen, or not, by whoever built it.
    for layer in layers:
        layer.trainable = layer in trained
    return head


def digit_layers(model: keras.Model, head: list[keras.layers.Layer]) -> list[keras.layers.Layer]:
    """The layers with weights on the digit path (convolutions and dense layers, not batch
    normalisation and not `head`), in order."""
    return [
        layer
        for layer in all_layers(model)
        if layer.weights
        and not hasattr(layer, "layers")
        and layer not in head
        and not isinstance(layer, keras.layers.BatchNormalization)
    ]


def _digit_outputs(model: keras.Model, probe: np.ndarray) -> np.ndarray:
    return split_outputs(keras.ops.convert_to_numpy(model(probe, training=False)))[0]


def _only_beyond_digits(model: keras.Model, layer: keras.layers.Layer, probe: np.ndarray) -> bool:
    """Whether `layer` has weights and the digit columns ignore them."""
    variables = [variable for variable in layer.weights if variable.shape]
    if not variables or hasattr(layer, "layers"):
        return False
    pixels = probe.astype(np.float32)
    reference = _digit_outputs(model, pixels)
    rng = np.random.default_rng(0)
    saved = [keras.ops.convert_to_numpy(variable) for variable in variables]
    try:
        for variable, value in zip(variables, saved, strict=True):
            scale = float(np.abs(value).mean()) + 0.1
            variable.assign(value + rng.normal(0.0, scale, value.shape).astype(value.dtype))
        return bool(np.array_equal(_digit_outputs(model, pixels), reference))
    finally:
        for variable, value in zip(variables, saved, strict=True):
            variable.assign(value)


def training_model(inner: keras.Model) -> keras.Model:
    """The model `fit` trains: `inner` with its digit columns only.

    Whatever `inner` applies after its logits (a temperature, the softmax) stays in place.
    """
    return keras.Model(
        inner.inputs, inner.outputs[0][:, :DIGIT_COLUMNS], name=f"{inner.name}_finetuning"
    )


def frozen_copy(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    """`model`'s digit probabilities as they are now, however `model` is trained later."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())

    def digit_probabilities(images: np.ndarray) -> np.ndarray:
        return split_outputs(copy.predict(images, batch_size=1000, verbose=0))[0]

    return digit_probabilities


def nearest_images(
    model: keras.Model, person: np.ndarray, pool: np.ndarray, per_image: int
) -> np.ndarray:
    """Positions in `pool` of the `per_image` images nearest to each of `person`'s, as the
    model sees them (the features its last Dense layer reads, `last_dense`), without repeats.

    These are the other writers' digits that teaching the person's habit would pull along
    (a slashed zero sits among 8s, 6s and slanted 1s); replaying them every epoch holds the
    boundary there, where a random draw rarely lands.
    """
    from sklearn.neighbors import NearestNeighbors

    if not len(person):
        return np.zeros(0, dtype=int)
    features = keras.Model(model.inputs, last_dense(model).input)
    pool_features = features.predict(pool.astype(np.float32), batch_size=1000, verbose=0)
    person_features = features.predict(person.astype(np.float32), batch_size=1000, verbose=0)
    index = NearestNeighbors(n_neighbors=min(per_image, len(pool))).fit(pool_features)
    _, found = index.kneighbors(person_features)
    return np.unique(found)


class EpochMixer(keras.utils.PyDataset):  # type: ignore[misc]  # Keras ships no types
    """Batches of one epoch: the person's images, repeated to make up `person_share` of it,
    shuffled with `replay` of the MNIST training images `x_replay`, all augmented afresh
    every epoch. The replayed images are `neighbours` (positions in `x_replay`, from
    `nearest_images`) in every epoch, and the rest drawn afresh each epoch.

    Targets are probability vectors: one-hot for the person's labels, and for a replayed
    image what `teacher` (the model before fine-tuning) answers for the same augmented
    image. That is knowledge distillation, "learning without forgetting" (Li and Hoiem,
    2016): the model is held to all ten of its old answers on other writers' digits, near
    misses included, rather than only to their labels, so it moves only where the person's
    digits pull it.
    """

    def __init__(
        self,
        person: tuple[np.ndarray, np.ndarray],
        x_replay: np.ndarray,
        teacher: Callable[[np.ndarray], np.ndarray],
        neighbours: np.ndarray,
        replay: int,
        person_share: float,
        batch_size: int,
        seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.x_person, self.y_person = person
        self.x_replay = x_replay
        self.teacher = teacher
        self.neighbours = neighbours
        self.others = np.setdiff1d(np.arange(len(self.x_replay)), neighbours)
        self.replay = min(max(replay, len(neighbours)), len(self.x_replay))
        wanted = round(self.replay * person_share / (1.0 - person_share))
        self.copies = max(1, math.ceil(wanted / len(self.y_person)))
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.augmentation = build_augmentation(seed=seed)
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        drawn = self.rng.choice(self.others, self.replay - len(self.neighbours), replace=False)
        picks = np.concatenate([self.neighbours, drawn])
        person = augment_images(np.tile(self.x_person, (self.copies, 1, 1)), self.augmentation)
        replayed = augment_images(self.x_replay[picks], self.augmentation)
        x = np.concatenate([person, replayed])
        person_targets = np.eye(DIGIT_COLUMNS, dtype=np.float32)[
            np.tile(self.y_person, self.copies)
        ]
        y = np.concatenate([person_targets, self.teacher(replayed)])
        order = self.rng.permutation(len(y))
        self.x, self.y = x[order], y[order]

    def __len__(self) -> int:
        return math.ceil(len(self.y) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        batch = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return self.x[batch], self.y[batch]


class TrainingProgress(keras.callbacks.Callback):  # type: ignore[misc]  # Keras ships no types
    """Calls `report(epoch, within)` after every batch: the epoch (from 1) and the share
    (0..1) of all training steps done."""

    def __init__(self, report: Callable[[int, float], None]) -> None:
        super().__init__()
        self.report = report
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        epochs, steps = self.params["epochs"], self.params["steps"]
        self.report(self.epoch + 1, (self.epoch * steps + batch + 1) / (epochs * steps))

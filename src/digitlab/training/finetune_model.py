"""The Keras side of fine-tuning: which layers stay frozen, the model `fit` trains, and the
batches of each epoch (the person's digits mixed with replayed MNIST)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from digitlab.training.augment import build_augmentation
from digitlab.training.compilation import all_layers
from digitlab.training.person_digits import DIGIT_COLUMNS


def freeze_for_finetuning(model: keras.Model, probe: np.ndarray) -> list[keras.layers.Layer]:
    """Freeze `model`'s BatchNormalization layers and its not-a-digit head; return the head.

    The head is every layer with weights that the digit columns do not depend on: changing
    its weights leaves columns 0..9 of the outputs for `probe` (a few N x 28 x 28 images)
    exactly as they were. A 10-output model has none. Testing each layer this way, rather
    than by name or position, holds for however the head is wired in.
    """
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    if model.output_shape[-1] <= DIGIT_COLUMNS:
        return []
    head = [layer for layer in all_layers(model) if _only_beyond_digits(model, layer, probe)]
    for layer in head:
        layer.trainable = False
    return head


def _digit_outputs(model: keras.Model, probe: np.ndarray) -> np.ndarray:
    outputs = keras.ops.convert_to_numpy(model(probe, training=False))
    return np.asarray(outputs[:, :DIGIT_COLUMNS])


def _only_beyond_digits(model: keras.Model, layer: keras.layers.Layer, probe: np.ndarray) -> bool:
    """Whether `layer` has trainable weights and the digit columns ignore them."""
    variables = [variable for variable in layer.trainable_variables if variable.shape]
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


def training_model(inner: keras.Model, seed: int) -> keras.Model:
    """The model `fit` trains: digit augmentation, `inner`, then its digit columns only.

    Whatever `inner` applies after its logits (a temperature, the softmax) stays in place;
    the augmentation is the identity outside training.
    """
    pixels = keras.Input(shape=inner.input_shape[1:], name="pixels")
    outputs = inner(build_augmentation(seed=seed)(pixels))
    return keras.Model(pixels, outputs[:, :DIGIT_COLUMNS], name=f"{inner.name}_finetuning")


class EpochMixer(keras.utils.PyDataset):  # type: ignore[misc]  # Keras ships no types
    """Batches of one epoch: the person's images, repeated to make up `person_share` of it,
    shuffled with `replay` MNIST training images drawn afresh every epoch."""

    def __init__(
        self,
        x_person: np.ndarray,
        y_person: np.ndarray,
        x_replay: np.ndarray,
        y_replay: np.ndarray,
        replay: int,
        person_share: float,
        batch_size: int,
        seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.x_person, self.y_person = x_person, y_person
        self.x_replay, self.y_replay = x_replay, y_replay
        self.replay = min(replay, len(y_replay))
        wanted = round(self.replay * person_share / (1.0 - person_share))
        self.copies = max(1, math.ceil(wanted / len(y_person)))
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.on_epoch_end()

    def on_epoch_end(self) -> None:
        picks = self.rng.choice(len(self.y_replay), self.replay, replace=False)
        x = np.concatenate([np.tile(self.x_person, (self.copies, 1, 1)), self.x_replay[picks]])
        y = np.concatenate([np.tile(self.y_person, self.copies), self.y_replay[picks]])
        order = self.rng.permutation(len(y))
        self.x, self.y = x[order].astype(np.float32), y[order].astype(np.int32)

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

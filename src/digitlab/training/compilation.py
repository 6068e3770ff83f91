"""The model `fit` trains and how it is compiled: augmentation in front of the inference
model, the loss for the labels as given, the learning-rate schedule, and whether the step
compiles with XLA."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from digitlab.errors import ConfigError
from digitlab.training.config import TrainConfig

if TYPE_CHECKING:
    import keras


def learning_rate(
    config: TrainConfig, steps_per_epoch: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """The constant `lr`, or a cosine decay over all steps after a linear warm-up."""
    import keras

    if config.lr_schedule == "constant":
        return config.lr
    total = config.epochs * steps_per_epoch
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.lr,
        decay_steps=total - warmup,
        alpha=0.0,
        warmup_target=config.lr if warmup else None,
        warmup_steps=warmup,
    )


def loss(config: TrainConfig) -> str | keras.losses.Loss:
    """Cross-entropy on integer labels, or on one-hot targets when labels are smoothed
    (Keras's sparse cross-entropy has no label smoothing)."""
    import keras

    if config.label_smoothing:
        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    return "sparse_categorical_crossentropy"


def targets(config: TrainConfig, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The labels in the form `loss(config)` takes."""
    if config.label_smoothing:
        one_hot: np.ndarray = np.eye(num_classes, dtype="float32")[labels]
        return one_hot
    return labels


def build_training_model(inner: keras.Model, config: TrainConfig) -> keras.Model:
    """The model `fit` trains: augmentation (when on) followed by the inference model `inner`.

    The augmentation layer is the identity outside training, so validation sees real images.
    """
    import keras

    from digitlab.training.augment import build_augmentation

    pixels = keras.Input(shape=inner.input_shape[1:], name="pixels")
    x = pixels
    if config.augment:
        x = build_augmentation(seed=config.seed, **config.augmentation)(x)
    return keras.Model(pixels, inner(x), name=f"{inner.name}_training")


def uses_xla(config: TrainConfig, model: keras.Model, replicas: int = 1) -> bool:
    """Whether training `model` under `config` on `replicas` devices compiles with XLA.

    `config.jit_compile` decides when set. Auto (None): always on the JAX backend, which
    runs eagerly (far slower) without it; on TensorFlow only for models without
    convolutions, the one kind XLA sped up on a CPU (docs/results.md), and on one device
    (see `refuse_xla_across_devices`).
    """
    import keras

    if config.jit_compile is not None:
        return config.jit_compile
    if keras.backend.backend() != "tensorflow":
        return True
    if replicas > 1:
        return False
    return not any(isinstance(layer, keras.layers.Conv2D) for layer in all_layers(model))


def refuse_xla_across_devices(config: TrainConfig, replicas: int) -> None:
    """TensorFlow's XLA cannot compile a step whose variables are mirrored on several devices."""
    import keras

    if config.jit_compile and replicas > 1 and keras.backend.backend() == "tensorflow":
        raise ConfigError(
            f"jit_compile=true cannot train across {replicas} devices on TensorFlow "
            "(XLA needs every variable on one device); leave jit_compile unset"
        )


def all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of `model`, those inside nested models included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(all_layers(layer))
    return found

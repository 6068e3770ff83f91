"""The model registry: a name -> a builder of an uncompiled Keras model.

Every model takes raw pixels, shape (N, 28, 28) with values 0..255 (uint8 or float), scales
them itself (a `Rescaling` layer inside the model, so a saved model is complete) and outputs
softmax probabilities, shape (N, num_classes). Only stock Keras layers are used, so a saved
model loads with plain `keras.models.load_model(path, safe_mode=True)` in any process, and
the same code runs on the TensorFlow and the JAX backends.

    mlp     the reference: dense layers with batch normalisation and dropout
    cnn     a compact convolutional network (the default shipped model)
    resnet  a small residual network, for the best accuracy
    strided a tiny all-strided convolutional network, the `fast` preset's model
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import keras
from keras import layers

from digitlab.errors import ConfigError

IMAGE_SHAPE = (28, 28)


def _pixels_input(image_shape: Sequence[int]) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The model input (raw 0..255 pixels) and the same scaled to 0..1."""
    pixels = keras.Input(shape=tuple(image_shape), name="pixels")
    return pixels, layers.Rescaling(1.0 / 255.0, name="scale")(pixels)


def _classifier(features: keras.KerasTensor, num_classes: int) -> keras.KerasTensor:
    return layers.Dense(num_classes, activation="softmax", name="probabilities")(features)


def build_mlp(
    num_classes: int = 10,
    hidden_units: Sequence[int] = (512, 512),
    dropout: float = 0.1,
    image_shape: Sequence[int] = IMAGE_SHAPE,
) -> keras.Model:
    """The reference multi-layer perceptron.

    Each hidden block is Dense (no bias: the batch norm that follows has one) -> BatchNorm
    -> ReLU -> Dropout. Two blocks of 512 units keep the 30-epoch reference run within
    `make run`'s time budget on a 2-core CPU with a margin that wider layers did not leave,
    for about the same accuracy (docs/models.md). Dropout is light because augmentation
    already regularises: more dropout scored lower.
    """
    pixels, x = _pixels_input(image_shape)
    x = layers.Flatten(name="flatten")(x)
    for index, units in enumerate(hidden_units, start=1):
        x = layers.Dense(units, use_bias=False, name=f"dense_{index}")(x)
        x = layers.BatchNormalization(name=f"bn_{index}")(x)
        x = layers.Activation("relu", name=f"relu_{index}")(x)
        x = layers.Dropout(dropout, name=f"dropout_{index}")(x)
    return keras.Model(pixels, _classifier(x, num_classes), name="mlp")


def _conv_bn_relu(
    x: keras.KerasTensor, filters: int, name: str, strides: int = 1
) -> keras.KerasTensor:
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_cnn(
    num_classes: int = 10,
    filters: Sequence[int] = (32, 64, 128),
    dropout: float = 0.2,
    image_shape: Sequence[int] = IMAGE_SHAPE,
) -> keras.Model:
    """A compact convolutional network.

    Per stage: two 3x3 convolutions with batch norm and ReLU, then 2x2 max pooling (28 ->
    14 -> 7 -> 3 pixels); global average pooling, dropout and the softmax layer. Trained 15
    epochs, batch 128, lr 0.002, with augmentation, it is the shipped model; narrower
    filters with more dropout scored lower (docs/models.md).
    """
    pixels, x = _pixels_input(image_shape)
    x = layers.Reshape((*image_shape, 1), name="add_channel")(x)
    for stage, width in enumerate(filters, start=1):
        x = _conv_bn_relu(x, width, f"conv{stage}a")
        x = _conv_bn_relu(x, width, f"conv{stage}b")
        x = layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(pixels, _classifier(x, num_classes), name="cnn")


def _residual_block(
    x: keras.KerasTensor, filters: int, strides: int, name: str
) -> keras.KerasTensor:
    """A pre-activation residual block (He et al. 2016): BN-ReLU-conv twice, plus a shortcut."""
    shortcut = x
    x = layers.BatchNormalization(name=f"{name}_bn1")(x)
    x = layers.Activation("relu", name=f"{name}_relu1")(x)
    if strides != 1 or shortcut.shape[-1] != filters:
        # The projection takes the activated input, as in the pre-activation paper.
        shortcut = layers.Conv2D(
            filters, 1, strides=strides, use_bias=False, name=f"{name}_project"
        )(x)
    x = layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv1"
    )(x)
    x = layers.BatchNormalization(name=f"{name}_bn2")(x)
    x = layers.Activation("relu", name=f"{name}_relu2")(x)
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(x)
    return layers.Add(name=f"{name}_add")([shortcut, x])


def build_resnet(
    num_classes: int = 10,
    filters: Sequence[int] = (32, 64, 128),
    blocks_per_stage: Sequence[int] = (1, 2, 2),
    dropout: float = 0.2,
    image_shape: Sequence[int] = IMAGE_SHAPE,
) -> keras.Model:
    """A small pre-activation residual network.

    A 3x3 stem, then one stage per entry of `filters` with as many residual blocks as the
    matching entry of `blocks_per_stage` (each later stage halves the resolution: 28 -> 14
    -> 7; the full-resolution stage has one block because it costs four times as much per
    block), then BN-ReLU, global average pooling, dropout and the softmax layer.
    """
    if len(filters) != len(blocks_per_stage):
        raise ValueError("filters and blocks_per_stage need one entry per stage")
    pixels, x = _pixels_input(image_shape)
    x = layers.Reshape((*image_shape, 1), name="add_channel")(x)
    x = layers.Conv2D(filters[0], 3, padding="same", use_bias=False, name="stem")(x)
    for stage, (width, blocks) in enumerate(zip(filters, blocks_per_stage, strict=True), start=1):
        for block in range(1, blocks + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _residual_block(x, width, strides, f"stage{stage}_block{block}")
    x = layers.BatchNormalization(name="final_bn")(x)
    x = layers.Activation("relu", name="final_relu")(x)
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(pixels, _classifier(x, num_classes), name="resnet")


def build_strided(
    num_classes: int = 10,
    filters: Sequence[int] = (16, 32, 64, 128),
    bn_momentum: float = 0.9,
    image_shape: Sequence[int] = IMAGE_SHAPE,
) -> keras.Model:
    """A tiny all-strided convolutional network, built for training speed on a CPU.

    Every convolution has stride 2 (a 5x5 first, then 3x3: 28 -> 14 -> 7 -> 4 -> 2 pixels),
    each followed by batch norm and ReLU; the last feature map is flattened into the softmax
    layer. No pooling layers and few positions per layer: on a CPU, where small networks'
    time goes to per-layer overhead, it trains an order of magnitude faster than `cnn`
    (docs/models.md). Batch norm
    momentum 0.9 instead of Keras's 0.99, because a run of 400 steps needs moving
    statistics that settle within it. Widths are multiples of 16, which oneDNN runs fastest.
    """
    pixels, x = _pixels_input(image_shape)
    x = layers.Reshape((*image_shape, 1), name="add_channel")(x)
    for index, width in enumerate(filters, start=1):
        x = layers.Conv2D(
            width,
            5 if index == 1 else 3,
            strides=2,
            padding="same",
            use_bias=False,
            name=f"conv{index}",
        )(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"conv{index}_bn")(x)
        x = layers.Activation("relu", name=f"conv{index}_relu")(x)
    x = layers.Flatten(name="flatten")(x)
    return keras.Model(pixels, _classifier(x, num_classes), name="strided")


MODELS: dict[str, Callable[..., keras.Model]] = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "resnet": build_resnet,
    "strided": build_strided,
}


def list_models() -> list[str]:
    """The registered model names, in registry order."""
    return list(MODELS)


def build_model(name: str, num_classes: int = 10, **hyper: Any) -> keras.Model:
    """Build the uncompiled model registered as `name` with `num_classes` outputs.

    `hyper` are the builder's keyword arguments (for example `hidden_units=(512, 512)` for
    `mlp`). Raises `ConfigError` for an unknown name (listing the valid ones), an unknown
    hyper-parameter, or fewer than two classes.
    """
    builder = MODELS.get(name)
    if builder is None:
        raise ConfigError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    if num_classes < 2:
        raise ConfigError(f"model {name!r}: num_classes must be at least 2, got {num_classes}")
    valid = [option for option in inspect.signature(builder).parameters if option != "num_classes"]
    unknown = sorted(set(hyper) - set(valid))
    if unknown:
        raise ConfigError(
            f"model {name!r}: unknown option(s) {', '.join(unknown)}; valid: {', '.join(valid)}"
        )
    try:
        return builder(num_classes=num_classes, **hyper)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model {name!r}: invalid options {hyper} ({error})") from None

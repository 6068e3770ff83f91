"""The recipes of the small real models the suite shares (conftest.py trains each once per
session) and the tiny architecture some tests also build untrained."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from digitlab.atomic import atomic_path
from digitlab.models import build_model

MnistArrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def build_tiny_model(num_classes: int = 10) -> keras.Model:
    """A raw-pixel softmax classifier, the smallest model that honours the model contract."""
    return keras.Sequential(
        [
            keras.Input((28, 28)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def train_tiny_model(mnist: MnistArrays, path: Path) -> Path:
    """The tiny model fitted one epoch on 4,000 MNIST images (about 89% accurate), saved to
    `path`."""
    (x_train, y_train), _ = mnist
    keras.utils.set_random_seed(0)
    model = build_tiny_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(x_train[:4000], y_train[:4000], epochs=1, batch_size=32, verbose=0)
    with atomic_path(path) as staged:
        model.save(staged)
    return path


def train_small_mlp(mnist: MnistArrays, path: Path) -> Path:
    """The registry's MLP with one hidden layer of 256 units, fitted 3 epochs on 12,000
    MNIST images (about 94% accurate), saved to `path`."""
    (x_train, y_train), _ = mnist
    keras.utils.set_random_seed(0)
    model = build_model("mlp", hidden_units=(256,), dropout=0.1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train[:12000], y_train[:12000], epochs=3, batch_size=128, verbose=0)
    with atomic_path(path) as staged:
        model.save(staged)
    return path


INK_HEAD_WEIGHT = 20.0
INK_HEAD_BIAS = 9.35
"""The stand-in not-digit head's digit score is sigmoid(bias - weight x mean ink, 0..1):
about 0.98 or more for MNIST digits (mean ink at most 0.28), 0.30 for a solid square (0.51)."""


def ink_head_score(images: np.ndarray) -> np.ndarray:
    """The digit score `with_ink_head` gives N x 28 x 28 uint8 images, computed apart."""
    ink = images.reshape(len(images), -1).astype(np.float64).mean(axis=1) / 255
    return 1 / (1 + np.exp(-(INK_HEAD_BIAS - INK_HEAD_WEIGHT * ink)))


def with_ink_head(model: keras.Model) -> keras.Model:
    """`model` (10 probabilities) with a stand-in "not a digit" head: its 11th output is a
    digit score that falls as the image holds more ink (`ink_head_score`), so a filled
    shape is not a digit and MNIST digits are."""
    pixels = keras.Input((28, 28))
    head = keras.layers.Dense(1, activation="sigmoid", name="digit_score")
    score = head(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(pixels)))
    head.set_weights(
        [np.full((784, 1), -INK_HEAD_WEIGHT / 784, np.float32), np.array([INK_HEAD_BIAS])]
    )
    outputs = keras.layers.Concatenate(name="digits_and_score")([model(pixels), score])
    return keras.Model(pixels, outputs, name="with_not_digit_head")

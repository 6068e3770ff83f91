"""Digit-safe augmentation: small affine moves and elastic distortion, active only in training.

`DigitAugmentation` draws, per image, a rotation, shear, zoom and shift plus an elastic
displacement field (Simard, Steinkraus and Platt 2003: uniform random displacements
smoothed by a Gaussian of width `elastic_sigma`, scaled by `elastic_alpha`), adds them into
one sampling grid and resamples the image once with bilinear interpolation. There are no
flips and no large turns: a mirrored 2 or a 6 turned upside down is another digit.

Why not chain Keras's `RandomRotation`, `RandomZoom`, ... and `RandomElasticTransform`:
each of those resamples the image again (five interpolations blur a 28x28 digit), and the
elastic one loops over the batch in Python and draws the x and y fields from the same seed.
`keras.ops.image.map_coordinates` needs a static batch size, so the bilinear sampler is
written here in `keras.ops`, which keeps the layer usable on the JAX backend too.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from digitlab.errors import ConfigError

__all__ = ["DigitAugmentation", "build_augmentation", "augment_images"]

Tensor = Any
"""A tensor of the active Keras backend (TensorFlow, JAX or PyTorch): they share no static type."""


def _gaussian_matrix(size: int, sigma: float) -> Tensor:
    """The (size x size) matrix that blurs a vector with a normalised Gaussian, 0 beyond ends."""
    positions = ops.arange(size, dtype="float32")
    offsets = ops.expand_dims(positions, 0) - ops.expand_dims(positions, 1)
    weights = ops.exp(-0.5 * ops.square(offsets / sigma))
    # Normalise by the whole kernel's sum, as a convolution with zero padding would.
    return weights / (sigma * math.sqrt(2.0 * math.pi))


@keras.saving.register_keras_serializable(package="digitlab")
class DigitAugmentation(keras.layers.Layer):  # type: ignore[misc]  # Keras ships no types
    """Random rotation, shear, zoom, shift and elastic distortion of (N, H, W) images.

    Inputs are images with values in any range (raw 0..255 pixels in digitlab), shape
    (N, H, W); the output has the same shape and dtype float32. Pixels sampled from outside
    the image are 0 (background). With `training` false or unset the layer is the identity.

    Args:
        rotation: maximum rotation in degrees, drawn uniformly in [-rotation, rotation].
        shear: maximum shear angle in degrees.
        zoom: maximum relative zoom: the scale is drawn in [1 - zoom, 1 + zoom].
        shift: maximum shift in pixels, along each axis.
        elastic_alpha: scale of the smoothed displacement field, in pixels (0 disables it).
        elastic_sigma: width in pixels of the Gaussian that smooths the field.
        seed: seed of the layer's random stream (None: a fresh one).
    """

    def __init__(
        self,
        rotation: float = 10.0,
        shear: float = 8.0,
        zoom: float = 0.1,
        shift: float = 2.0,
        elastic_alpha: float = 24.0,
        elastic_sigma: float = 4.0,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        limits = {"rotation": (rotation, 45.0), "shear": (shear, 45.0), "zoom": (zoom, 0.5)}
        for name, (value, largest) in limits.items():
            if not 0.0 <= value <= largest:
                raise ConfigError(f"augmentation {name}={value}: must be between 0 and {largest}")
        if shift < 0 or elastic_alpha < 0 or elastic_sigma <= 0:
            raise ConfigError(
                "augmentation shift and elastic_alpha must be >= 0 and elastic_sigma > 0"
            )
        self.rotation = float(rotation)
        self.shear = float(shear)
        self.zoom = float(zoom)
        self.shift = float(shift)
        self.elastic_alpha = float(elastic_alpha)
        self.elastic_sigma = float(elastic_sigma)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = False

    def call(self, images: Tensor, training: bool | None = None) -> Tensor:
        if not training:
            return images
        images = ops.cast(images, "float32")
        batch = ops.shape(images)[0]
        height, width = images.shape[1], images.shape[2]
        source_y, source_x = self._sampling_grid(batch, height, width)
        return _bilinear_sample(images, source_y, source_x)

    def _uniform(self, batch: Tensor, limit: float) -> Tensor:
        return keras.random.uniform(
            (batch, 1, 1), minval=-limit, maxval=limit, seed=self.seed_generator
        )

    def _sampling_grid(self, batch: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """For every output pixel, the (y, x) position in the input it is sampled from."""
        angle = self._uniform(batch, math.radians(self.rotation))
        slant = ops.tan(self._uniform(batch, math.radians(self.shear)))
        scale = 1.0 + self._uniform(batch, self.zoom)
        shift_y = self._uniform(batch, self.shift)
        shift_x = self._uniform(batch, self.shift)

        # Coordinates relative to the image centre, so rotation and zoom keep the digit centred.
        rows = ops.arange(height, dtype="float32") - (height - 1) / 2.0
        cols = ops.arange(width, dtype="float32") - (width - 1) / 2.0
        y = ops.reshape(rows, (1, height, 1)) / scale
        x = ops.reshape(cols, (1, 1, width)) / scale
        x = x + slant * y
        cos, sin = ops.cos(angle), ops.sin(angle)
        source_x = cos * x - sin * y + shift_x + (width - 1) / 2.0
        source_y = sin * x + cos * y + shift_y + (height - 1) / 2.0

        if self.elastic_alpha > 0:
            field_y, field_x = self._elastic_field(batch, height, width)
            source_y = source_y + field_y
            source_x = source_x + field_x
        return source_y, source_x

    def _elastic_field(self, batch: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """(dy, dx) displacement fields, each (N, H, W): uniform noise, smoothed, times alpha."""
        noise = keras.random.uniform(
            (batch, 2, height, width), minval=-1.0, maxval=1.0, seed=self.seed_generator
        )
        # The Gaussian blur is separable, and along one axis it is a product with a banded
        # (H x H) matrix: two small matmuls run far faster than a depthwise convolution,
        # above all under XLA on a CPU.
        smooth = ops.matmul(_gaussian_matrix(height, self.elastic_sigma), noise)
        smooth = ops.matmul(smooth, _gaussian_matrix(width, self.elastic_sigma))
        smooth = smooth * self.elastic_alpha
        return smooth[:, 0], smooth[:, 1]

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = super().get_config()
        config.update(
            rotation=self.rotation,
            shear=self.shear,
            zoom=self.zoom,
            shift=self.shift,
            elastic_alpha=self.elastic_alpha,
            elastic_sigma=self.elastic_sigma,
            seed=self.seed,
        )
        return config


def _bilinear_sample(images: Tensor, source_y: Tensor, source_x: Tensor) -> Tensor:
    """Sample (N, H, W) `images` at fractional positions, 0 outside the image."""
    height, width = images.shape[1], images.shape[2]
    batch = ops.shape(images)[0]
    flat = ops.reshape(images, (batch, height * width))
    # One extra zero pixel at the end: every out-of-image corner reads it.
    flat = ops.concatenate([flat, ops.zeros((batch, 1), dtype=flat.dtype)], axis=1)
    outside = height * width

    y0 = ops.floor(source_y)
    x0 = ops.floor(source_x)
    weight_y1 = source_y - y0
    weight_x1 = source_x - x0
    y0 = ops.cast(y0, "int32")
    x0 = ops.cast(x0, "int32")

    result: Tensor = 0.0
    for dy, weight_y in ((0, 1.0 - weight_y1), (1, weight_y1)):
        for dx, weight_x in ((0, 1.0 - weight_x1), (1, weight_x1)):
            row, col = y0 + dy, x0 + dx
            inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
            index = ops.where(inside, row * width + col, outside)
            index = ops.reshape(index, (batch, height * width))
            corner = ops.take_along_axis(flat, index, axis=1)
            result = result + ops.reshape(corner, (batch, height, width)) * weight_y * weight_x
    return result


def build_augmentation(seed: int | None = None, **settings: float) -> DigitAugmentation:
    """The default digit augmentation; `settings` override `DigitAugmentation`'s arguments.

    Raises `ConfigError` for an unknown setting or a value out of its range.
    """
    known = {"rotation", "shear", "zoom", "shift", "elastic_alpha", "elastic_sigma"}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ConfigError(
            f"unknown augmentation setting(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(known))}"
        )
    return DigitAugmentation(seed=seed, name="augmentation", **settings)


def augment_images(
    images: np.ndarray, layer: DigitAugmentation | None = None, seed: int | None = None
) -> np.ndarray:
    """Return augmented copies of `images` (N x H x W, 0..255) as a float32 numpy array.

    Uses `layer` if given, else `build_augmentation(seed)`. For figures and checks; training
    applies the layer inside the training model instead.
    """
    layer = layer or build_augmentation(seed=seed)
    augmented: np.ndarray = ops.convert_to_numpy(layer(ops.cast(images, "float32"), training=True))
    return augmented

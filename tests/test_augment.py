"""Digit-safe augmentation: active only in training, small moves, no flips, reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from digitlab.errors import ConfigError
from digitlab.training.augment import augment_images, build_augmentation

NO_MOVES = {"rotation": 0.0, "shear": 0.0, "zoom": 0.0, "shift": 0.0, "elastic_alpha": 0.0}


@pytest.fixture(scope="module")
def digits(mnist):
    (x_train, y_train), _ = mnist
    return x_train[:256], y_train[:256]


def test_augmentation_is_the_identity_outside_training(digits):
    images, _ = digits
    layer = build_augmentation(seed=1)
    np.testing.assert_array_equal(np.asarray(layer(images.astype("float32"))), images)
    np.testing.assert_array_equal(
        np.asarray(layer(images.astype("float32"), training=False)), images
    )


def test_augmentation_changes_every_image_in_training(digits):
    images, _ = digits
    augmented = augment_images(images, seed=1)
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    changed = np.abs(augmented - images).reshape(len(images), -1).max(axis=1) > 20
    assert changed.all()


def test_sampler_with_no_moves_returns_the_image_exactly(digits):
    images, _ = digits
    augmented = augment_images(images, build_augmentation(seed=1, **NO_MOVES))
    np.testing.assert_allclose(augmented, images, atol=1e-3)


def test_augmentation_keeps_the_digit_whole_and_near_the_centre(digits):
    images, _ = digits
    augmented = augment_images(images, seed=2)
    ink_ratio = augmented.reshape(len(images), -1).sum(1) / images.reshape(len(images), -1).sum(1)
    # Zoom of +-10% alone changes the inked area by up to +-20%, and elastic distortion
    # squeezes or stretches strokes locally; but no digit is cut off or smeared away.
    assert ink_ratio.min() > 0.5 and ink_ratio.max() < 1.6
    assert 0.9 < np.median(ink_ratio) < 1.1
    moved = [
        np.hypot(*np.subtract(ndimage.center_of_mass(a), ndimage.center_of_mass(b)))
        for a, b in zip(augmented, images, strict=True)
    ]
    assert np.median(moved) < 2.5 and max(moved) < 6


def test_shift_alone_moves_the_digit_by_at_most_the_setting(digits):
    images, _ = digits
    layer = build_augmentation(seed=3, **{**NO_MOVES, "shift": 3.0})
    augmented = augment_images(images, layer)
    shifts = np.array(
        [
            np.subtract(ndimage.center_of_mass(b), ndimage.center_of_mass(a))
            for a, b in zip(augmented, images, strict=True)
        ]
    )
    assert np.abs(shifts).max() <= 3.0 + 0.3
    assert np.abs(shifts).max() > 2.0  # it does move


def test_augmentation_never_mirrors_a_digit(digits):
    images, _ = digits
    augmented = augment_images(images, seed=4)

    def correlation(a, b):
        return np.corrcoef(a.reshape(len(a), -1), b.reshape(len(b), -1)).diagonal(len(a)).mean()

    # An augmented digit stays far closer to its original than to the mirrored original.
    same = correlation(augmented, images)
    assert same > 0.5
    assert same > correlation(augmented, images[:, :, ::-1]) + 0.2
    assert same > correlation(augmented, images[:, ::-1, :]) + 0.2


def test_elastic_distortion_is_smooth_and_alone_moves_pixels(digits):
    images, _ = digits
    layer = build_augmentation(seed=5, **{**NO_MOVES, "elastic_alpha": 24.0})
    field_y, field_x = (np.asarray(f) for f in layer._elastic_field(64, 28, 28))
    size = np.hypot(field_y, field_x)
    assert 0.3 < size.mean() < 3.0
    # Neighbouring pixels move together: a smoothed field, not per-pixel noise.
    step = np.abs(np.diff(field_x, axis=2)).mean()
    assert step < 0.2 * np.abs(field_x).mean()
    augmented = augment_images(images, layer)
    assert np.abs(augmented - images).mean() > 1.0


def test_same_seed_gives_the_same_augmentation(digits):
    images, _ = digits
    first = augment_images(images[:32], seed=7)
    second = augment_images(images[:32], seed=7)
    third = augment_images(images[:32], seed=8)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(first, third)


def test_bad_augmentation_settings_are_config_errors():
    with pytest.raises(ConfigError, match="rotation=90"):
        build_augmentation(rotation=90)
    with pytest.raises(ConfigError, match="unknown augmentation setting.*flip"):
        build_augmentation(flip=1.0)

"""The classic feature views (OpenCV) of real MNIST digits."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.errors import ImageError
from digitlab.exploration.features import ORB_MAX_KEYPOINTS, feature_views


def _first_of_each_class(mnist) -> list[np.ndarray]:
    (x_train, y_train), _ = mnist
    return [x_train[np.flatnonzero(y_train == digit)[0]] for digit in range(10)]


def _inside(points: np.ndarray, size: int) -> bool:
    return bool(((points[:, :2] >= 0) & (points[:, :2] < size)).all())


def test_feature_views_of_a_real_digit_have_upscaled_shapes_and_keypoints(mnist):
    digit = _first_of_each_class(mnist)[0]
    views = feature_views(digit, scale=4)

    assert np.array_equal(views.image, digit)
    for image in (views.upscaled, views.blurred, views.binary, views.edges):
        assert image.shape == (112, 112) and image.dtype == np.uint8
    assert views.harris_response.shape == (112, 112)
    assert set(np.unique(views.binary)) == {0, 255}
    assert 0 < views.otsu_threshold < 255
    assert set(np.unique(views.edges)) == {0, 255}
    assert views.harris_corners.ndim == 2 and views.harris_corners.shape[1] == 2
    assert len(views.harris_corners) > 0 and _inside(views.harris_corners, 112)
    for keypoints in (views.orb_keypoints, views.sift_keypoints):
        assert keypoints.ndim == 2 and keypoints.shape[1] == 3
        assert len(keypoints) > 0 and _inside(keypoints, 112)
        assert (keypoints[:, 2] > 0).all()
    assert len(views.orb_keypoints) <= ORB_MAX_KEYPOINTS


def test_otsu_threshold_splits_ink_from_background(mnist):
    views = feature_views(_first_of_each_class(mnist)[1])
    ink = views.blurred > views.otsu_threshold
    assert np.array_equal(views.binary == 255, ink)
    # A "1" is a thin stroke: most of the image stays background.
    assert 0.02 < ink.mean() < 0.3


def test_upscaling_lets_sift_and_orb_find_more_keypoints(mnist):
    digits = _first_of_each_class(mnist)
    native = [feature_views(digit, scale=1) for digit in digits]
    upscaled = [feature_views(digit, scale=4) for digit in digits]
    assert sum(map(len, (v.sift_keypoints for v in upscaled))) > 1.5 * sum(
        map(len, (v.sift_keypoints for v in native))
    )
    assert sum(map(len, (v.orb_keypoints for v in upscaled))) > sum(
        map(len, (v.orb_keypoints for v in native))
    )


def test_blank_image_has_no_edges_corners_or_keypoints():
    views = feature_views(np.zeros((28, 28), np.uint8))
    assert not views.edges.any()
    assert len(views.harris_corners) == len(views.orb_keypoints) == len(views.sift_keypoints) == 0


@pytest.mark.parametrize(
    ("image", "kernel"),
    [
        (np.zeros((28, 28, 3), np.uint8), 5),
        (np.zeros((28, 28), np.float32), 5),
        (np.zeros((28, 28), np.uint8), 4),
    ],
)
def test_feature_views_reject_colour_float_images_and_even_kernels(image, kernel):
    with pytest.raises(ImageError):
        feature_views(image, blur_kernel=kernel)

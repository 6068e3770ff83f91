"""The classic (pre-deep-learning) feature views of one grayscale image, with OpenCV.

A 28x28 digit is too small for keypoint detectors: ORB needs a patch around each
keypoint and SIFT builds a scale pyramid, so on 28x28 they find few or no points.
Every view is therefore computed on the image upscaled by `scale` (default 4, 112x112).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from digitlab.errors import ImageError

BLUR_KERNEL = 5
CANNY_THRESHOLDS = (50, 150)
# ORB's default 31-pixel patch and border keep keypoints away from a 112x112 image's
# edges, where a digit's strokes are; a 15-pixel patch lets it reach them.
ORB_PATCH_SIZE = 15
ORB_MAX_KEYPOINTS = 50
# Harris responses below this fraction of the strongest one are flat areas or noise.
HARRIS_RELATIVE_THRESHOLD = 0.01


@dataclass(frozen=True)
class FeatureViews:
    """Each classic view of one image. Keypoints are float32 arrays in upscaled pixels.

    `harris_corners` is (n, 2): x, y. `orb_keypoints` and `sift_keypoints` are (n, 3):
    x, y and the keypoint's diameter.
    """

    image: np.ndarray
    upscaled: np.ndarray
    blurred: np.ndarray
    otsu_threshold: float
    binary: np.ndarray
    edges: np.ndarray
    harris_response: np.ndarray
    harris_corners: np.ndarray
    orb_keypoints: np.ndarray
    sift_keypoints: np.ndarray


def _keypoint_array(keypoints: Sequence[cv2.KeyPoint]) -> np.ndarray:
    rows = [(kp.pt[0], kp.pt[1], kp.size) for kp in keypoints]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 3)


def harris_corners(response: np.ndarray) -> np.ndarray:
    """The (x, y) positions of strong local maxima of a Harris response map, (n, 2) float32."""
    strong = response > HARRIS_RELATIVE_THRESHOLD * response.max()
    # A corner lights up a blob of neighbouring pixels; keep only each blob's peak.
    peaks = response == cv2.dilate(response, np.ones((3, 3), np.uint8))
    ys, xs = np.nonzero(strong & peaks)
    return np.stack([xs, ys], axis=1).astype(np.float32)


def feature_settings() -> dict[str, Any]:
    """The fixed settings of `feature_views`, for a report to quote."""
    return {
        "blur_kernel": BLUR_KERNEL,
        "canny_thresholds": list(CANNY_THRESHOLDS),
        "harris_relative_threshold": HARRIS_RELATIVE_THRESHOLD,
        "orb_patch_size": ORB_PATCH_SIZE,
        "orb_max_keypoints": ORB_MAX_KEYPOINTS,
    }


def feature_views(
    image: np.ndarray,
    scale: int = 4,
    blur_kernel: int = BLUR_KERNEL,
    canny_thresholds: tuple[int, int] = CANNY_THRESHOLDS,
) -> FeatureViews:
    """Compute the classic feature views of one grayscale uint8 image (H x W).

    The image is upscaled `scale` times (cubic interpolation), then: a Gaussian blur
    (`blur_kernel` x `blur_kernel`), a binary threshold chosen by Otsu's method on the
    blurred image, Canny edges of the blurred image, Harris corners, ORB and SIFT keypoints.
    Raises `ImageError` when `image` is not a 2-D uint8 array or `blur_kernel` is not odd.
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ImageError(
            f"feature views need a 2-D uint8 grayscale image, got {image.dtype} {image.shape}"
        )
    if blur_kernel < 1 or blur_kernel % 2 == 0:
        raise ImageError(f"blur kernel must be a positive odd size, got {blur_kernel}")
    height, width = image.shape
    upscaled = cv2.resize(image, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC)
    blurred = cv2.GaussianBlur(upscaled, (blur_kernel, blur_kernel), 0)
    otsu_threshold, binary = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    edges = cv2.Canny(blurred, *canny_thresholds)
    response = cv2.cornerHarris(blurred.astype(np.float32), blockSize=2, ksize=3, k=0.04)
    orb = cv2.ORB.create(
        nfeatures=ORB_MAX_KEYPOINTS, edgeThreshold=ORB_PATCH_SIZE, patchSize=ORB_PATCH_SIZE
    )
    # ORB shares `nfeatures` out among its pyramid levels and may return a few more.
    strongest = sorted(orb.detect(upscaled, None), key=lambda kp: kp.response, reverse=True)
    return FeatureViews(
        image=image,
        upscaled=upscaled,
        blurred=blurred,
        otsu_threshold=float(otsu_threshold),
        binary=binary,
        edges=edges,
        harris_response=response,
        harris_corners=harris_corners(response),
        orb_keypoints=_keypoint_array(strongest[:ORB_MAX_KEYPOINTS]),
        sift_keypoints=_keypoint_array(cv2.SIFT.create().detect(upscaled, None)),
    )

"""Real MNIST digits as the image files people send: PNG bytes, scans of dark ink on paper."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(pixels: np.ndarray) -> bytes:
    """Encode a uint8 gray (H x W) or RGB(A) array as PNG file bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def paper_png(digit: np.ndarray, side: int = 200) -> bytes:
    """An MNIST digit as a person's scan would look: dark ink on white paper, `side` px wide."""
    enlarged = Image.fromarray(digit).resize((side, side), Image.Resampling.BILINEAR)
    return png_bytes(255 - np.asarray(enlarged))

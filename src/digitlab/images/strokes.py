"""The width of a pen's strokes, which decides whether strokes are thickened and which
straight lines are a page's printed rules rather than writing."""

from __future__ import annotations

import numpy as np

from digitlab.images.fast_paths import eroded


def stroke_width(mask: np.ndarray) -> float:
    """Estimate the typical stroke width in pixels of a binary ink mask.

    A stroke of width w and length L covers w * L pixels and has about 2 * L edge pixels,
    so w is about twice the area over the edge count.
    """
    edge = int(np.count_nonzero(mask & ~eroded(mask)))
    return 2 * int(np.count_nonzero(mask)) / max(edge, 1)

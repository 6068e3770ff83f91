"""What every figure shares: a headless backend and an atomic PNG write."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from digitlab.atomic import atomic_path  # noqa: E402


def figure_to_png(figure: Figure, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Save `figure` as a PNG at `path` atomically, then close it."""
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)

"""What every figure shares: figures built without pyplot, and an atomic PNG write.

Figures are plain `matplotlib.figure.Figure` objects rendered by the Agg canvas they come
with, so digitlab never switches the process's matplotlib backend: a notebook that imports
it keeps its inline plots, and a server or training thread never touches a GUI toolkit.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from matplotlib import colormaps
from matplotlib.colors import Colormap
from matplotlib.figure import Figure

from digitlab.atomic import atomic_path


def subplots(
    *grid: int,
    figsize: tuple[float, float] | None = None,
    layout: Literal["constrained", "compressed", "tight"] | None = None,
    **subplot_options: Any,
) -> tuple[Figure, Any]:
    """A new figure and its axes, like `pyplot.subplots` but without pyplot's global state.

    `grid` is (rows, columns); `subplot_options` go to `Figure.subplots` (squeeze,
    width_ratios, subplot_kw, gridspec_kw, ...).
    """
    figure = Figure(figsize=figsize, layout=layout)
    return figure, figure.subplots(*grid, **subplot_options)


def colormap(name: str) -> Colormap:
    """A registered matplotlib colormap by name."""
    return colormaps[name]


def figure_to_png(figure: Figure, path: str | os.PathLike[str], dpi: int = 110) -> None:
    """Save `figure` as a PNG at `path` atomically."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")

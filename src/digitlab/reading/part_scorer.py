"""The part scorer: how likely a candidate cut out of a blob, or a piece seen alone, is
exactly one whole digit.

The digit classifier sees a candidate alone, normalised, and half of a wide 0 or a 9's
loop apart from its stem is a confident digit there. The part scorer is a small network
trained on the cut search's own candidates and on every piece the reader does not cut
(numbers composed of MNIST *training* digits, every gap kind and look;
`digitlab.training.part_scorer`), shown each candidate with the ink around it
(`part_view`). It answers 11 probabilities: the ten digits when the part is
one whole digit, and "not one whole digit" last. The reader weighs each candidate by the
chance that it is whole, and reads a part the search weighed by both networks: a part cut
through an overlap keeps a stray end of its neighbour's stroke, which the scorer, trained
on such parts, has learnt to look past. It runs on ONNX Runtime and ships inside the
package.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import numpy as np

from digitlab.errors import ModelError

PART_SCORER_FILE = "part_scorer.onnx"
NOT_WHOLE = 10
"""The class of a part that is not one whole digit (half of one, two, or a sliver)."""


class PartScorer:
    """An ONNX part scorer, run on one thread (its batches are a few dozen small views)."""

    def __init__(self, path: Path) -> None:
        from digitlab.inference.runtimes import onnx_runner

        self._run, _ = onnx_runner(path, threads=1)

    def probabilities(self, views: np.ndarray) -> np.ndarray:
        """The 11 probabilities of each part (N x 11, `NOT_WHOLE` last), for views from
        `part_views`."""
        pixels = np.rint(views * 255.0).astype(np.float32)
        return np.asarray(self._run(pixels), dtype=np.float64)


def part_scorer_path() -> Path:
    """The shipped part scorer's file; raises `ModelError` when it is missing."""
    path = Path(str(resources.files("digitlab") / "pretrained" / PART_SCORER_FILE))
    if not path.is_file():
        raise ModelError(f"{path}: the shipped part scorer is missing; reinstall digitlab")
    return path


@functools.cache
def shipped_part_scorer() -> PartScorer:
    """The shipped part scorer, loaded on first use and kept."""
    return PartScorer(part_scorer_path())

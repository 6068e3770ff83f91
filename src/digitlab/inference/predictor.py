"""Predicting digits: one `Predictor` over Keras, SavedModel, ONNX Runtime or TFLite.

Every model digitlab writes takes raw pixels (N x 28 x 28 float32, 0..255) and returns
class probabilities, whatever runtime holds it, so one interface covers them all; a model
that knows "not a digit" adds its digit score as an 11th column (`digit_score.py` splits
them). The model is loaded once; single images go straight to the runtime (the web
server's hot path) and many images go in batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from digitlab.errors import ImageError, ModelError
from digitlab.images import to_mnist
from digitlab.inference.digit_score import (
    DEFAULT_NOT_DIGIT_THRESHOLD,
    check_threshold,
    has_not_digit_head,
    is_digit,
    split_outputs,
)
from digitlab.inference.runtimes import IMAGE_SHAPE, Runner, error_reason, keras_runner, load_runner

if TYPE_CHECKING:
    from digitlab.reading import NumberReading

Read = TypeVar("Read")


def _top_k(probabilities: np.ndarray, k: int) -> list[tuple[int, float]]:
    order = np.argsort(-probabilities, kind="stable")[: max(1, k)]
    return [(int(digit), float(probabilities[digit])) for digit in order]


@dataclass(frozen=True)
class Predictions:
    """What a model says about N images.

    `digits` (N,) int64 is the most likely class of each image, `probabilities` (N, C)
    float32 the model's probability for every class, `digit_scores` (N,) float32 how
    digit-like each image is (0..1) and `is_digit` (N,) bool whether that reached the
    threshold. An image that is not a digit keeps its best guess in `digits`.
    """

    digits: np.ndarray
    probabilities: np.ndarray
    digit_scores: np.ndarray
    is_digit: np.ndarray

    @classmethod
    def from_outputs(
        cls, outputs: np.ndarray, not_digit_threshold: float = DEFAULT_NOT_DIGIT_THRESHOLD
    ) -> Predictions:
        """Build from a model's N x C outputs (`split_outputs`: N x 11 carries digit scores)."""
        probabilities, digit_scores = split_outputs(outputs)
        return cls(
            probabilities.argmax(axis=1).astype(np.int64),
            probabilities,
            digit_scores,
            is_digit(digit_scores, not_digit_threshold),
        )

    def __len__(self) -> int:
        return len(self.digits)

    @property
    def confidences(self) -> np.ndarray:
        """(N,) float32: the probability of each predicted digit."""
        return np.asarray(self.probabilities.max(axis=1))

    def top_k(self, k: int = 3) -> list[list[tuple[int, float]]]:
        """For each image, the `k` most likely (digit, probability) pairs, most likely first."""
        return [_top_k(row, k) for row in self.probabilities]


@dataclass(frozen=True)
class FilePrediction:
    """A file that was read and predicted: its digit (the best guess, even when it is not
    a digit), confidence, probabilities, digit score and decision, and the 28x28 uint8
    image the model saw."""

    path: Path
    digit: int
    confidence: float
    probabilities: np.ndarray
    image: np.ndarray
    digit_score: float
    is_digit: bool

    def top_k(self, k: int = 3) -> list[tuple[int, float]]:
        """The `k` most likely (digit, probability) pairs, most likely first."""
        return _top_k(self.probabilities, k)


@dataclass(frozen=True)
class FileReading:
    """A file whose number was read (`digitlab.read_number`)."""

    path: Path
    reading: NumberReading


@dataclass(frozen=True)
class FileFailure:
    """A file that could not be predicted, and why (one sentence naming the file)."""

    path: Path
    reason: str


class Predictor:
    """A loaded model that predicts digits from 28x28 images or from image files.

    Build one with `Predictor.load(path)`. `name` says which model and runtime it is (for
    display), `runtime` names the runtime alone, `num_classes` the classes it tells apart,
    `has_not_digit_head` whether the model computes its own digit score (else the top
    probability is the score), `not_digit_threshold` the digit score below which an
    image is "not a digit", and `source` the model file it runs (None for a model built
    in memory). Raises `ConfigError` for a threshold outside 0..1.
    """

    def __init__(
        self,
        runner: Runner,
        name: str,
        runtime: str,
        batch_size: int = 1000,
        not_digit_threshold: float = DEFAULT_NOT_DIGIT_THRESHOLD,
        source: Path | None = None,
    ) -> None:
        self._runner = runner
        self.name = name
        self.runtime = runtime
        self.source = source
        self.batch_size = batch_size
        self.not_digit_threshold = check_threshold(not_digit_threshold)
        # One blank image through the model: learns the class count and warms the runtime,
        # so the first real request is as fast as the rest.
        blank = self._run(np.zeros((1, *IMAGE_SHAPE), np.float32))
        self.has_not_digit_head = has_not_digit_head(blank)
        self.num_classes = int(split_outputs(blank)[0].shape[1])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        not_digit_threshold: float = DEFAULT_NOT_DIGIT_THRESHOLD,
    ) -> Predictor:
        """Load a model: a `.keras` file, a SavedModel folder, an `.onnx` or a `.tflite` file.

        `path=None` loads the model shipped with digitlab. The shipped model (by default or
        by its path) runs from its ONNX copy when ONNX Runtime is installed: the same model
        (tests check their probabilities agree), answering without TensorFlow, which takes
        seconds to import. A user's `.keras` file always runs in Keras: a `.onnx` beside it
        may come from another model, so pass the `.onnx` path to run that. `threads` caps
        the runtime's threads (ONNX Runtime, TFLite); None lets the runtime choose.
        `not_digit_threshold` as for the class. Raises `ConfigError` for a threshold
        outside 0..1 (before loading anything), `ModelError` naming the path when it is
        missing, of an unknown kind or cannot be loaded, and naming the shapes when it does
        not take N x 28 x 28 images to N x classes outputs.
        """
        threshold = check_threshold(not_digit_threshold)
        loaded = load_runner(None if path is None else Path(path), threads)
        name = f"{loaded.path.name} ({loaded.runtime})"
        return cls(
            loaded.runner, name, loaded.runtime, not_digit_threshold=threshold, source=loaded.path
        )

    @classmethod
    def from_keras(cls, model: object, name: str = "Keras model") -> Predictor:
        """Wrap an in-memory Keras model."""
        return cls(keras_runner(model), name, "Keras")

    def predict(self, images: np.ndarray) -> Predictions:
        """Predict 28x28 images: uint8 (or float 0..255) N x 28 x 28, or a single 28 x 28.

        Raises `ModelError` when the array does not have that shape.
        """
        return Predictions.from_outputs(self.outputs(images), self.not_digit_threshold)

    def outputs(self, images: np.ndarray) -> np.ndarray:
        """The model's own N x C outputs for `images` (as `predict` takes them): for a
        caller that passes them on whole, such as the server's batcher; `split_outputs`
        reads them. Raises `ModelError` when the array is not N x 28 x 28 or 28 x 28.
        """
        pixels = np.asarray(images)
        if pixels.ndim == 2:
            pixels = pixels[np.newaxis]
        if pixels.ndim != 3 or pixels.shape[1:] != IMAGE_SHAPE:
            raise ModelError(
                f"{self.name}: expected images of shape N x 28 x 28 or 28 x 28, got {pixels.shape}"
            )
        pixels = pixels.astype(np.float32, copy=False)
        if len(pixels) <= self.batch_size:
            return self._run(pixels)
        batches = [
            self._run(pixels[start : start + self.batch_size])
            for start in range(0, len(pixels), self.batch_size)
        ]
        return np.concatenate(batches)

    def predict_files(
        self, paths: Iterable[str | os.PathLike[str]]
    ) -> list[FilePrediction | FileFailure]:
        """Predict each image file (through `to_mnist`), in order, in batches.

        A file that cannot be used becomes a `FileFailure` with its reason; it never stops
        the others.
        """
        files = [Path(path) for path in paths]
        results: list[FilePrediction | FileFailure | None] = [None] * len(files)
        images, positions = [], []
        for position, path in enumerate(files):
            image = _read_or_fail(path, to_mnist)
            if isinstance(image, FileFailure):
                results[position] = image
            else:
                images.append(image)
                positions.append(position)
        if images:
            predictions = self.predict(np.stack(images))
            confidences = predictions.confidences
            for row, position in enumerate(positions):
                results[position] = FilePrediction(
                    path=files[position],
                    digit=int(predictions.digits[row]),
                    confidence=float(confidences[row]),
                    probabilities=predictions.probabilities[row],
                    image=images[row],
                    digit_score=float(predictions.digit_scores[row]),
                    is_digit=bool(predictions.is_digit[row]),
                )
        return [result for result in results if result is not None]

    def read_files(
        self, paths: Iterable[str | os.PathLike[str]]
    ) -> list[FileReading | FileFailure]:
        """Read the number in each image file (`digitlab.read_number`), in order.

        A file that cannot be used becomes a `FileFailure` with its reason, as in
        `predict_files`; it never stops the others.
        """
        from digitlab.reading import read_number

        results: list[FileReading | FileFailure] = []
        for path in map(Path, paths):
            reading = _read_or_fail(path, lambda file: read_number(file, self))
            results.append(
                reading if isinstance(reading, FileFailure) else FileReading(path, reading)
            )
        return results

    def _run(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self._runner(pixels), dtype=np.float32)


def _read_or_fail(path: Path, read: Callable[[Path], Read]) -> Read | FileFailure:
    """`read(path)`, or a `FileFailure` saying why it failed: an `ImageError`'s sentence,
    or for anything else the error's type and first line (one odd file must not stop the
    others)."""
    try:
        return read(path)
    except ImageError as error:
        return FileFailure(path, str(error))
    except Exception as error:
        reason = f"{path}: cannot be read ({type(error).__name__}: {error_reason(error)})"
        return FileFailure(path, reason)


def collect_files(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand folders (recursively, sorted, hidden entries skipped) into their files.

    Paths that are not folders are kept as given, missing ones included, and so are
    folders that cannot be listed, so that the caller reports them (reading one fails
    with its reason) rather than silently dropping them.
    """
    files: list[Path] = []

    def keep_unlisted(error: OSError) -> None:
        files.append(Path(error.filename))

    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        for folder, subfolders, names in os.walk(path, onerror=keep_unlisted):
            subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
            files.extend(Path(folder) / name for name in sorted(names) if not name.startswith("."))
    return files

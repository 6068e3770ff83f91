"""Evaluating a trained model: accuracy, loss, calibration, the classification report and its
figures.

Labels and predictions always come from one pass over the same batches: each batch of
images is predicted and its labels are kept beside its probabilities in the same loop
iteration. The system digitlab replaces reported 10% accuracy because it gathered labels
and predictions in two passes over a pipeline that shuffled each pass differently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitlab.atomic import atomic_paths
from digitlab.errors import DataError, ModelError
from digitlab.inference.calibration import temperature_of
from digitlab.inference.digit_score import class_count, split_outputs
from digitlab.inference.modelfile import load_keras_model

if TYPE_CHECKING:
    import keras

    from digitlab.plots.evaluation import ReliabilityPanel

DEFAULT_BATCH_SIZE = 1024
"""Large batches: prediction is one matrix product per batch, so fewer calls is faster."""

LOSS_EPSILON = 1e-7
"""Probabilities are clipped to this before the log, as Keras's cross-entropy does."""

MISCLASSIFIED_LIMIT = 25
"""How many of the most confidently wrong images `misclassified.png` shows."""

REPORT_FILES = (
    "report.txt",
    "metrics.json",
    "confusion_matrix.png",
    "misclassified.png",
    "reliability.png",
)
"""The files `write_evaluation` writes into its folder (and only these)."""


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """Everything one evaluation computed; arrays are in the order the images were evaluated.

    `labels[i]`, `predictions[i]`, `probabilities[i]` and `images[i]` all describe the same
    image. `report` is scikit-learn's `classification_report(..., output_dict=True)` and
    `report_text` its printed form; `confusion[i, j]` counts images of class i predicted as j.
    `files` maps each written file's name to its path (empty when nothing was written).
    `temperature` is the one baked into the model (1.0 for a model without one): the
    probabilities are the calibrated ones, and `uncalibrated_probabilities` those before it.
    """

    accuracy: float
    loss: float
    class_names: list[str]
    labels: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)
    probabilities: np.ndarray = field(repr=False)
    images: np.ndarray = field(repr=False)
    report_text: str = field(repr=False)
    report: dict[str, Any] = field(repr=False)
    confusion: np.ndarray = field(repr=False)
    model_path: str | None = None
    dataset_name: str | None = None
    temperature: float = 1.0
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def confidence(self) -> np.ndarray:
        """The probability of the predicted class, per image."""
        return np.asarray(self.probabilities.max(axis=1))

    @property
    def uncalibrated_probabilities(self) -> np.ndarray:
        """The probabilities the model gave before its temperature (the same when T = 1)."""
        from digitlab.inference.calibration import uncalibrated_probabilities

        if self.temperature == 1.0:
            return self.probabilities
        return uncalibrated_probabilities(self.probabilities, self.temperature)

    @property
    def ece(self) -> float:
        """The expected calibration error of the model's probabilities (15 bins)."""
        from digitlab.inference.calibration import expected_calibration_error

        return expected_calibration_error(self.probabilities, self.labels)

    @property
    def ece_uncalibrated(self) -> float:
        """The expected calibration error before the model's temperature (15 bins)."""
        from digitlab.inference.calibration import expected_calibration_error

        return expected_calibration_error(self.uncalibrated_probabilities, self.labels)

    def most_confident_errors(self, limit: int = MISCLASSIFIED_LIMIT) -> np.ndarray:
        """Indices of up to `limit` misclassified images, most confident prediction first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        order = np.argsort(-self.confidence[wrong], kind="stable")
        return wrong[order[:limit]]

    def to_metrics(self) -> dict[str, Any]:
        """The JSON-ready metrics: what `metrics.json` holds."""

        def scores(entry: dict[str, float]) -> dict[str, float | int]:
            return {
                "precision": entry["precision"],
                "recall": entry["recall"],
                "f1": entry["f1-score"],
                "support": int(entry["support"]),
            }

        return {
            "model": self.model_path,
            "dataset": self.dataset_name,
            "num_images": self.num_images,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "ece": self.ece,
            "ece_uncalibrated": self.ece_uncalibrated,
            "temperature": self.temperature,
            "class_names": list(self.class_names),
            "per_class": {name: scores(self.report[name]) for name in self.class_names},
            "macro_avg": scores(self.report["macro avg"]),
            "weighted_avg": scores(self.report["weighted avg"]),
            "confusion_matrix": self.confusion.tolist(),
        }

    def summary_text(self) -> str:
        """Model, dataset, accuracy, loss and the classification report: what `report.txt` holds."""
        lines = [
            f"model:    {self.model_path or '(in memory)'}",
            f"dataset:  {self.dataset_name or '(arrays)'} ({self.num_images} images)",
            f"accuracy: {self.accuracy:.4f}",
            f"loss:     {self.loss:.4f}",
            f"ECE:      {self.ece:.4f} (before calibration {self.ece_uncalibrated:.4f}, "
            f"temperature {self.temperature:.4f}; 15 bins)",
            "",
            self.report_text.rstrip(),
        ]
        return "\n".join(lines) + "\n"


def evaluate(
    model: keras.Model | str | os.PathLike[str],
    x: np.ndarray | Iterable[tuple[Any, Any]],
    y: np.ndarray | None = None,
    class_names: list[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dataset_name: str | None = None,
) -> EvaluationResult:
    """Evaluate `model` on images `x` with true labels `y`, in one prediction pass.

    `model` is a Keras model or the path of a `.keras` file; it takes raw pixels and returns
    class probabilities. `x` is an array of images (N x 28 x 28, 0..255) and `y` their integer
    labels; or `y` is None and `x` is any iterable of `(images, labels)` batches, such as a
    shuffling `tf.data.Dataset`, read exactly once. `class_names` default to "0", "1", ...
    With `out`, the files in `REPORT_FILES` are written there atomically.

    Raises `ModelError` when the model file cannot be loaded or its output size differs from
    the number of classes, and `DataError` when images or labels are malformed or a label is
    outside the model's classes.
    """
    model_path = None
    if not _is_keras_model(model):
        model_path = str(model)
        model = load_keras_model(model)
    return _evaluate_loaded(model, model_path, x, y, class_names, out, batch_size, dataset_name)


def write_evaluation(result: EvaluationResult, out: str | os.PathLike[str]) -> dict[str, Path]:
    """Write `report.txt`, `metrics.json`, `confusion_matrix.png`, `misclassified.png` and
    `reliability.png` (the reliability diagram before and after calibration).

    The files are written into `out` (created if needed) together: all of them replace
    what was there, or, when one cannot be written, none does. Other files there are left
    alone. Returns a mapping from file name to path.
    """
    from digitlab.plots.evaluation import (
        plot_confusion_matrix,
        plot_misclassified,
        plot_reliability_diagram,
    )

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a folder; choose another output folder")
    paths = {name: out / name for name in REPORT_FILES}
    with atomic_paths(list(paths.values())) as temporaries:
        writing = dict(zip(paths, temporaries, strict=True))
        writing["report.txt"].write_text(result.summary_text(), encoding="utf-8")
        metrics = json.dumps(result.to_metrics(), indent=2) + "\n"
        writing["metrics.json"].write_text(metrics, encoding="utf-8")
        title = f"{result.dataset_name or 'test set'}: accuracy {result.accuracy:.2%}"
        plot_confusion_matrix(
            result.confusion, result.class_names, writing["confusion_matrix.png"], title=title
        )
        worst = result.most_confident_errors()
        plot_misclassified(
            result.images[worst],
            [result.class_names[label] for label in result.labels[worst]],
            [result.class_names[label] for label in result.predictions[worst]],
            result.confidence[worst],
            writing["misclassified.png"],
        )
        plot_reliability_diagram(_reliability_panels(result), writing["reliability.png"])
    return paths


def _reliability_panels(result: EvaluationResult) -> list[ReliabilityPanel]:
    from digitlab.inference.calibration import reliability_bins
    from digitlab.plots.evaluation import ReliabilityPanel

    views = (
        (
            f"before calibration: ECE {result.ece_uncalibrated:.2%}",
            result.uncalibrated_probabilities,
        ),
        (
            f"after (temperature {result.temperature:.3f}): ECE {result.ece:.2%}",
            result.probabilities,
        ),
    )
    return [
        ReliabilityPanel(title=title, **reliability_bins(probabilities, result.labels))
        for title, probabilities in views
    ]


def evaluate_model_file(
    model_path: str | os.PathLike[str],
    dataset: str = "mnist",
    out: str | os.PathLike[str] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    cache_dir: str | os.PathLike[str] | None = None,
) -> EvaluationResult:
    """Evaluate the model file at `model_path` on the test split of `dataset`.

    `dataset` is "mnist", "fashion-mnist" or a path that `digitlab.load_dataset` reads.
    With `out`, the report files are written there. Raises `ModelError` for a missing,
    corrupt or mismatched model and what `load_dataset` raises for a bad dataset.
    """
    from digitlab.data.sources import load_dataset

    # The model first: a wrong path should fail at once, not after the dataset loads.
    model = load_keras_model(model_path)
    data = load_dataset(dataset, cache_dir=cache_dir)
    return _evaluate_loaded(
        model,
        str(model_path),
        data.x_test,
        data.y_test,
        list(data.class_names),
        out,
        batch_size,
        data.name,
    )


def _evaluate_loaded(
    model: keras.Model,
    model_path: str | None,
    x: np.ndarray | Iterable[tuple[Any, Any]],
    y: np.ndarray | None,
    class_names: list[str] | None,
    out: str | os.PathLike[str] | None,
    batch_size: int,
    dataset_name: str | None,
) -> EvaluationResult:
    model_label = model_path or f"model {model.name!r}"
    num_classes = _output_size(model, model_label)
    if class_names is None:
        class_names = [str(index) for index in range(num_classes)]
    if len(class_names) != num_classes:
        raise ModelError(
            f"{model_label}: the model predicts {num_classes} classes but the dataset has "
            f"{len(class_names)} ({', '.join(map(str, class_names))})"
        )
    if y is None:
        batches: Iterable[tuple[Any, Any]] = x
    else:
        images = np.asarray(x)
        if images.dtype == object or images.ndim < 2:
            raise DataError(
                "x is not an array of images; for a dataset of (images, labels) batches "
                "pass y=None so the labels come from the same batches"
            )
        batches = _array_batches(images, np.asarray(y), batch_size)
    images, labels, probabilities = _predict_in_one_pass(model, batches, model_label)
    _check_labels(labels, num_classes, model_label)

    result = _score(images, labels, probabilities, list(map(str, class_names)))
    result = replace(
        result,
        model_path=model_path,
        dataset_name=dataset_name,
        temperature=temperature_of(model),
    )
    if out is not None:
        result = replace(result, files=write_evaluation(result, out))
    return result


def _is_keras_model(model: object) -> bool:
    return hasattr(model, "predict_on_batch") and hasattr(model, "output_shape")


def _output_size(model: keras.Model, model_label: str) -> int:
    shape = model.output_shape
    if not (isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[-1], int)):
        raise ModelError(
            f"{model_label}: expected one output of class probabilities (N x classes), "
            f"got shape {shape}"
        )
    return class_count(shape[-1])


def _array_batches(
    x: np.ndarray, y: np.ndarray, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    if batch_size < 1:
        raise DataError(f"batch size must be at least 1, got {batch_size}")
    if len(x) != len(y):
        raise DataError(f"{len(x)} images but {len(y)} labels")
    for start in range(0, len(x), batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def _predict_in_one_pass(
    model: keras.Model, batches: Iterable[tuple[Any, Any]], model_label: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict each batch and keep its images and labels with its probabilities."""
    input_shape = tuple(model.input_shape[1:])
    images, labels, probabilities = [], [], []
    for batch in batches:
        try:
            batch_images, batch_labels = batch
        except (TypeError, ValueError):
            raise DataError(
                "each batch must be a pair (images, labels); pass y for plain arrays"
            ) from None
        batch_images, batch_labels = np.asarray(batch_images), np.asarray(batch_labels)
        _check_batch(batch_images, batch_labels, input_shape, model_label)
        images.append(batch_images)
        labels.append(batch_labels)
        # A model that knows non-digits adds a digit score column: scored on its digits.
        probabilities.append(split_outputs(model.predict_on_batch(batch_images))[0])
    if not labels or sum(len(batch) for batch in labels) == 0:
        raise DataError("no images to evaluate")
    return np.concatenate(images), np.concatenate(labels), np.concatenate(probabilities)


def _check_batch(
    images: np.ndarray, labels: np.ndarray, input_shape: tuple[int | None, ...], model_label: str
) -> None:
    image_shape = images.shape[1:]
    fits = len(image_shape) == len(input_shape) and all(
        want is None or want == have for want, have in zip(input_shape, image_shape, strict=True)
    )
    if not fits:
        raise DataError(
            f"images of shape {image_shape} do not fit {model_label}, which takes {input_shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"labels must be a 1-D array of integer class indices, got {labels.dtype} "
            f"of shape {labels.shape}"
        )
    if len(labels) != len(images):
        raise DataError(f"a batch has {len(images)} images but {len(labels)} labels")


def _check_labels(labels: np.ndarray, num_classes: int, model_label: str) -> None:
    outside = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if outside.size:
        raise DataError(
            f"label {int(labels[outside[0]])} is outside the {num_classes} classes of {model_label}"
        )


def _score(
    images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, class_names: list[str]
) -> EvaluationResult:
    from sklearn.metrics import classification_report, confusion_matrix

    predictions = probabilities.argmax(axis=1)
    true_probability = probabilities[np.arange(len(labels)), labels]
    class_indices = list(range(len(class_names)))
    report_args = {
        "labels": class_indices,
        "target_names": class_names,
        "digits": 4,
        "zero_division": 0,
    }
    return EvaluationResult(
        accuracy=float(np.mean(predictions == labels)),
        loss=float(-np.mean(np.log(np.clip(true_probability, LOSS_EPSILON, 1.0)))),
        class_names=class_names,
        labels=labels,
        predictions=predictions,
        probabilities=probabilities,
        images=images,
        report_text=classification_report(labels, predictions, **report_args),
        report=classification_report(labels, predictions, output_dict=True, **report_args),
        confusion=confusion_matrix(labels, predictions, labels=class_indices),
    )

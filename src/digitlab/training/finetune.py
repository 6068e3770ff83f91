"""Fine-tuning a trained model on one person's digits without forgetting everyone else's.

Some hands are misread systematically (slashed zeros, flagged 1s, crossed 7s); no amount
of MNIST fixes one person's habit. `finetune` starts from a trained `.keras` model and
trains it briefly on the person's digits (`person_digits`), each epoch mixed with replayed
MNIST training images so that the other writers' digits stay learned:

- the person's images are repeated to make up `PERSON_SHARE` of each epoch, since a few
  dozen images would otherwise be lost among thousands of replayed ones;
- the replayed images are the `NEIGHBOURS` nearest each of the person's digits the model
  misreads (what teaching that habit would pull along), and a fresh draw each epoch; they
  are taught the model's own answers on them (distillation), not only their labels;
- digit-safe augmentation (`augment`, never flips) of every image, so a handful of
  samples teach a habit rather than those exact images;
- only the last `TRAINABLE_LAYERS` layers with weights train, and every
  BatchNormalization layer is frozen (in Keras 3 a frozen BatchNormalization runs in
  inference mode): the early stages find strokes, which a habit does not need changed,
  and the statistics learned on 60,000 images are not replaced by one person's few;
- the loss is on the 10 digit columns only; a model that also outputs a "not a digit"
  score (an 11th column) keeps the layers that only that column depends on frozen.

docs/personalize.md shows how these were chosen, measured by bench/personalize.py.

The result is a normal run folder (`run_folder`): config.json, history.csv, curves.png,
summary.json with the accuracies before and after, model.keras and its checked ONNX copy.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from digitlab.atomic import atomic_write_text
from digitlab.errors import ConfigError, ModelError
from digitlab.training.run_folder import RunFolder

if TYPE_CHECKING:
    import keras
    import numpy as np

    from digitlab.training.person_digits import PersonDigits

# numpy, the image readers and Keras are imported inside the functions, so that the
# command line can read this module's defaults without loading them.

DEFAULT_EPOCHS = 5
DEFAULT_REPLAY = 2000
"""MNIST training images replayed in each epoch, drawn afresh every epoch."""
PERSON_SHARE = 1 / 3
"""The share of each epoch's images that are the person's (repeated as needed)."""
LEARNING_RATE = 2e-4
BATCH_SIZE = 64
NEIGHBOURS = 20
"""MNIST training images nearest to each of the person's digits that the model misreads,
replayed in every epoch."""
NEIGHBOURS_OF_READ = 5
"""... and nearest to each of them when it misreads none."""
NEIGHBOUR_POOL = 10_000
"""MNIST training images the nearest are looked for among."""
TRAINABLE_LAYERS = 3
"""Layers with weights, counted from the output, that fine-tuning trains (see
`freeze_for_finetuning`); the shipped cnn's last convolution block and its classifier."""
HELD_OUT_FRACTION = 0.2
"""The share of each label's images kept back to score on, never trained on."""

# How the whole job's progress (0..1) is shared between its stages.
_STAGE_SPANS = {
    "reading": (0.0, 0.05),
    "scoring": (0.05, 0.15),
    "training": (0.15, 0.8),
    "rescoring": (0.8, 0.9),
    "exporting": (0.9, 1.0),
    "done": (1.0, 1.0),
}


@dataclass(frozen=True)
class FinetuneProgress:
    """Where a fine-tune is: its `stage` (reading, scoring, training, rescoring, exporting,
    done), the training epoch (0 before training) of `epochs`, and `fraction` (0..1) of the
    whole job done."""

    stage: str
    epoch: int
    epochs: int
    fraction: float


@dataclass(frozen=True)
class FinetuneScores:
    """Accuracy on the held-out part of the person's digits (None when none was held out)
    and on the 10,000 MNIST test images."""

    person: float | None
    mnist: float


@dataclass(frozen=True)
class FinetuneResult:
    """What a fine-tune produced (every path inside `run_dir`) and the scores before and after."""

    run_dir: Path
    model_path: Path
    onnx_path: Path
    before: FinetuneScores
    after: FinetuneScores
    seconds: float


Progress = Callable[[FinetuneProgress], None]


def finetune(
    model: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    epochs: int = DEFAULT_EPOCHS,
    replay: int = DEFAULT_REPLAY,
    seed: int = 0,
    progress: Progress | None = None,
    held_out_fraction: float = HELD_OUT_FRACTION,
    learning_rate: float = LEARNING_RATE,
    verbose: int = 0,
) -> FinetuneResult:
    """Fine-tune the `.keras` model `model` on the person's digits in `data`, into run folder `out`.

    `data` is a class-folder tree `DATA_DIR/<label>/<image>` (labels 0-9, any image size or
    look, read through `to_mnist`). `held_out_fraction` of each label's images is kept back
    and scored before and after. Each of the `epochs` mixes the rest (oversampled) with
    `replay` MNIST training images, at `learning_rate`. `progress`, when given, is called
    as the job advances; `verbose` is Keras's `fit` verbosity (1 shows a progress bar).

    Raises `ConfigError` for bad settings or an `out` that exists and is not empty (a run is
    never overwritten), `DataError` or `ImageError` naming the folder or file for unusable
    data, and `ModelError` for a model that cannot be loaded or does not output 10 digit
    probabilities (and optionally a "not a digit" score).
    """
    from digitlab.data.sources import load_mnist
    from digitlab.inference.modelfile import load_keras_model
    from digitlab.training.person_digits import read_person_digits, split_person_digits

    started = time.perf_counter()
    folder = RunFolder(Path(out))
    _check_settings(folder, epochs, replay)
    report = _Reporter(progress, epochs)
    report("reading")
    x, y = read_person_digits(data)
    person = split_person_digits(x, y, held_out_fraction, seed)
    inner = load_keras_model(model)
    _check_outputs(inner, Path(model))
    (x_mnist, _), (x_test, y_test) = load_mnist()
    settings = {
        "model": str(model),
        "data": str(data),
        "epochs": epochs,
        "replay": replay,
        "seed": seed,
        "held_out_fraction": held_out_fraction,
        "learning_rate": learning_rate,
        "batch_size": BATCH_SIZE,
        "person_share": PERSON_SHARE,
        "trainable_layers": TRAINABLE_LAYERS,
        "neighbours_per_misread_image": NEIGHBOURS,
        "replay_targets": "the starting model's probabilities (distillation)",
        "person_images": {"train": len(person.y_train), "held_out": len(person.y_held)},
    }
    with folder.writing():
        folder.prepare({**settings, "versions": _versions()})
        try:
            report("scoring")
            before = _scores(inner, person, x_test, y_test)
            training_started = time.perf_counter()
            history = _train(inner, person, x_mnist, settings, report, verbose)
            settings["train_seconds"] = round(time.perf_counter() - training_started, 2)
            report("rescoring")
            after = _scores(inner, person, x_test, y_test)
            report("exporting")
            _write_run(folder, inner, history, settings, before, after, started)
        except BaseException:
            # Everything in the folder is this run's (it was new or empty): a failed or
            # interrupted fine-tune leaves it free to use again.
            folder.discard_unstarted()
            raise
    report("done")
    return FinetuneResult(
        run_dir=folder.path,
        model_path=folder.model,
        onnx_path=folder.onnx,
        before=before,
        after=after,
        seconds=time.perf_counter() - started,
    )


def _check_settings(folder: RunFolder, epochs: int, replay: int) -> None:
    if epochs < 1:
        raise ConfigError(f"epochs={epochs}: fine-tuning needs at least 1 epoch")
    if replay < 0:
        raise ConfigError(f"replay={replay}: must be 0 or more MNIST images per epoch")
    path = folder.path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(f"{path}: already exists and is not empty; choose a new run folder")


def _check_outputs(model: keras.Model, path: Path) -> None:
    from digitlab.training.person_digits import DIGIT_COLUMNS

    shape = tuple(model.output_shape)
    if len(shape) != 2 or shape[1] not in (DIGIT_COLUMNS, DIGIT_COLUMNS + 1):
        raise ModelError(
            f"{path}: outputs {shape}; fine-tuning needs 10 digit probabilities "
            "(and optionally a not-a-digit score)"
        )


def _versions() -> dict[str, str]:
    from digitlab.training.loop import versions

    return versions()


class _Reporter:
    """Calls `progress` with each stage, and with the fraction done inside training."""

    def __init__(self, progress: Progress | None, epochs: int) -> None:
        self.progress = progress
        self.epochs = epochs

    def __call__(self, stage: str, epoch: int = 0, within: float = 0.0) -> None:
        if self.progress is None:
            return
        start, end = _STAGE_SPANS[stage]
        fraction = start + (end - start) * min(max(within, 0.0), 1.0)
        self.progress(FinetuneProgress(stage, epoch, self.epochs, round(fraction, 4)))


def _digit_accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    import numpy as np

    from digitlab.inference.digit_score import split_outputs

    outputs = model.predict(x.astype(np.float32), batch_size=1000, verbose=0)
    probabilities, _ = split_outputs(outputs)
    return float(np.mean(probabilities.argmax(axis=1) == y))


def _scores(
    model: keras.Model, person: PersonDigits, x_test: np.ndarray, y_test: np.ndarray
) -> FinetuneScores:
    held = _digit_accuracy(model, person.x_held, person.y_held) if len(person.y_held) else None
    return FinetuneScores(person=held, mnist=_digit_accuracy(model, x_test, y_test))


def _train(
    inner: keras.Model,
    person: PersonDigits,
    x_mnist: np.ndarray,
    settings: dict[str, Any],
    report: _Reporter,
    verbose: int,
) -> list[dict[str, float]]:
    """Fine-tune `inner` in place; return one history row per epoch."""
    import keras
    import numpy as np

    from digitlab.training.finetune_model import (
        EpochMixer,
        TrainingProgress,
        freeze_for_finetuning,
        frozen_copy,
        nearest_images,
        training_model,
    )
    from digitlab.training.person_digits import DIGIT_COLUMNS
    from digitlab.training.progress import step_progress_bar

    seed, epochs = settings["seed"], settings["epochs"]
    keras.utils.set_random_seed(seed)
    freeze_for_finetuning(inner, person.x_train[:64], TRAINABLE_LAYERS)
    model = training_model(inner)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings["learning_rate"]),
        loss="categorical_crossentropy",
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    teacher = frozen_copy(inner)
    answers = np.argmax(teacher(person.x_train), axis=1)
    anchors, per_anchor = replay_anchors(person.x_train, person.y_train, answers)
    pool = np.random.default_rng(seed).choice(len(x_mnist), NEIGHBOUR_POOL, replace=False)
    neighbours = pool[nearest_images(inner, anchors, x_mnist[pool], per_anchor)]
    batches = EpochMixer(
        (person.x_train, person.y_train),
        x_mnist,
        teacher,
        neighbours,
        settings["replay"],
        PERSON_SHARE,
        BATCH_SIZE,
        seed,
    )
    validation = (
        (person.x_held.astype(np.float32), np.eye(DIGIT_COLUMNS, dtype=np.float32)[person.y_held])
        if len(person.y_held)
        else None
    )
    callbacks = [TrainingProgress(lambda epoch, within: report("training", epoch, within))]
    history = model.fit(
        batches,
        epochs=epochs,
        validation_data=validation,
        verbose=verbose,
        callbacks=[step_progress_bar(), *callbacks] if verbose else callbacks,
    )
    return [
        {
            "epoch": epoch + 1,
            "loss": history.history["loss"][epoch],
            "accuracy": history.history["accuracy"][epoch],
            "val_loss": history.history.get("val_loss", [math.nan] * epochs)[epoch],
            "val_accuracy": history.history.get("val_accuracy", [math.nan] * epochs)[epoch],
            "learning_rate": settings["learning_rate"],
        }
        for epoch in range(epochs)
    ]


def replay_anchors(
    images: np.ndarray, labels: np.ndarray, answers: np.ndarray
) -> tuple[np.ndarray, int]:
    """The person's digits whose nearest MNIST images are replayed in every epoch, and how
    many per digit: those the model misreads (`answers` != `labels`), `NEIGHBOURS` each;
    when it misreads none, all of them, `NEIGHBOURS_OF_READ` each, because teaching a hand
    the model already reads still moves the boundaries near it (MNIST lost 0.16 points
    without them on the bench's ordinary writer)."""
    misread = images[answers != labels]
    if len(misread):
        return misread, NEIGHBOURS
    return images, NEIGHBOURS_OF_READ


def _write_run(
    folder: RunFolder,
    inner: keras.Model,
    history: list[dict[str, float]],
    settings: dict[str, Any],
    before: FinetuneScores,
    after: FinetuneScores,
    started: float,
) -> None:
    from digitlab.inference.export import export_model
    from digitlab.plots.training import plot_training_curves
    from digitlab.training.person_digits import DIGIT_LABELS
    from digitlab.training.recorder import save_model

    folder.write_history(history)
    plot_training_curves(
        history, folder.curves, title=f"{inner.name} fine-tuned on a person's digits"
    )
    save_model(inner, folder.model)
    export_model(folder.model, "onnx", folder.onnx)
    summary = {
        "model": inner.name,
        "finetuned_from": settings["model"],
        "params": inner.count_params(),
        "epochs_completed": settings["epochs"],
        "epochs": settings["epochs"],
        "train_seconds": settings["train_seconds"],
        "seconds": round(time.perf_counter() - started, 2),
        "best_val_accuracy": after.person,
        "best_epoch": settings["epochs"],
        "dataset": settings["data"],
        "class_names": list(DIGIT_LABELS),
        "num_classes": len(DIGIT_LABELS),
        "person_images": settings["person_images"],
        "before": asdict(before),
        "after": asdict(after),
    }
    atomic_write_text(folder.summary, json.dumps(summary, indent=2) + "\n")

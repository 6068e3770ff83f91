"""Training runs: data split, model, Keras `fit`, and a run folder that survives a kill -9.

A run folder holds:

    config.json        every setting, the seed and the library versions
    history.csv        epoch, loss, accuracy, val_loss, val_accuracy, learning_rate
    summary.json       model, parameters, epochs, seconds, best validation accuracy, classes
    curves.png         loss and accuracy, training against validation
    augmentation.png   original digits beside augmented copies (when augmentation is on)
    tensorboard/       Keras's TensorBoard logs
    checkpoints/       last.keras and best.keras (inference models), and the resume state
    model.keras        the best model by validation accuracy

The model trained is a wrapper, augmentation layers followed by the inference model; only
the inference model is saved as `.keras`, so it loads with plain Keras, without digitlab.

Resuming: after every epoch the wrapper's weights with the optimizer state are written to a
new file, then `checkpoints/state.json` (the epoch count and the history) is replaced
atomically to point at it. That replacement is the commit: a run killed at any moment
resumes from the last committed epoch, and every other file is rewritten from that state.
Keras's `BackupAndRestore` and `CSVLogger` are not used because their two files (weights,
epoch; history rows) are written separately and non-atomically, so a kill between them
leaves a history row or weights one epoch ahead of the recorded epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitlab.atomic import atomic_path, atomic_write_text
from digitlab.errors import ConfigError, DataError
from digitlab.training.config import TrainConfig, config_from_json
from digitlab.training.devices import prepare_training

if TYPE_CHECKING:
    import keras

    from digitlab.data.sources import Dataset
    from digitlab.training.devices import Placement
    from digitlab.training.processes import ProcessShare

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
STATE_FILE = "state.json"


@dataclass
class RunResult:
    """What a finished run produced. Every path is inside `run_dir`."""

    run_dir: Path
    model_path: Path
    best_val_accuracy: float
    best_epoch: int
    epochs_completed: int
    train_seconds: float
    history: list[dict[str, float]] = field(repr=False)
    weights_sha256: str = ""
    """Checksum of the final (last epoch) weights: equal on every process of a distributed run."""


@dataclass
class _RunState:
    """The committed progress of a run, as stored in checkpoints/state.json."""

    epochs_completed: int = 0
    train_state: str | None = None
    best_val_accuracy: float = -1.0
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def default_run_dir(config: TrainConfig, root: str | os.PathLike[str] = "runs") -> Path:
    """`runs/<model>-<YYYYmmdd-HHMMSS>`: where a run goes when no folder is given."""
    return Path(root) / f"{config.model}-{datetime.now():%Y%m%d-%H%M%S}"


def versions() -> dict[str, str]:
    """The versions that matter to reproduce a run."""
    import keras

    import digitlab

    # Keras imports TensorFlow for its TensorFlow backend; another backend may run without it.
    tensorflow = sys.modules.get("tensorflow")
    return {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "keras_backend": keras.backend.backend(),
        "tensorflow": getattr(tensorflow, "__version__", "not loaded"),
        "numpy": np.__version__,
        "digitlab": digitlab.__version__,
    }


def split_train_validation(
    x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified split of the training set into (x_train, y_train, x_val, y_val).

    With `limit`, first a stratified subset of `limit` images is drawn. Both draws use
    `seed`, so the same settings always give the same split (a resumed run relies on it).
    Raises `DataError` when a class has too few images to be split.
    """
    from sklearn.model_selection import train_test_split

    try:
        if limit is not None and limit < len(y):
            x, _, y, _ = train_test_split(x, y, train_size=limit, stratify=y, random_state=seed)
        x_train, x_val, y_train, y_val = train_test_split(
            x, y, test_size=val_fraction, stratify=y, random_state=seed
        )
    except ValueError as error:
        raise DataError(
            f"cannot split {len(y)} training images (limit={limit}, "
            f"val_fraction={val_fraction}) by class: {error}"
        ) from None
    return x_train, y_train, x_val, y_val


def _learning_rate(config: TrainConfig, steps_per_epoch: int):
    import keras

    if config.lr_schedule == "constant":
        return config.lr
    total = config.epochs * steps_per_epoch
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else config.lr,
        decay_steps=total - warmup,
        alpha=0.0,
        warmup_target=config.lr if warmup else None,
        warmup_steps=warmup,
    )


def _loss(config: TrainConfig):
    """Cross-entropy on integer labels, or on one-hot targets when labels are smoothed
    (Keras's sparse cross-entropy has no label smoothing)."""
    import keras

    if config.label_smoothing:
        return keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
    return "sparse_categorical_crossentropy"


def _targets(config: TrainConfig, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """The labels in the form `_loss(config)` takes."""
    if config.label_smoothing:
        return np.eye(num_classes, dtype="float32")[labels]
    return labels


def build_training_model(inner: keras.Model, config: TrainConfig) -> keras.Model:
    """The model `fit` trains: augmentation (when on) followed by the inference model `inner`.

    The augmentation layer is the identity outside training, so validation sees real images.
    """
    import keras

    from digitlab.training.augment import build_augmentation

    pixels = keras.Input(shape=inner.input_shape[1:], name="pixels")
    x = pixels
    if config.augment:
        x = build_augmentation(seed=config.seed, **config.augmentation)(x)
    return keras.Model(pixels, inner(x), name=f"{inner.name}_training")


def uses_xla(config: TrainConfig, model: keras.Model, replicas: int = 1) -> bool:
    """Whether training `model` under `config` on `replicas` devices compiles with XLA.

    `config.jit_compile` decides when set. Auto (None): always on the JAX backend, which
    runs eagerly (far slower) without it; on TensorFlow only for models without
    convolutions, the one kind XLA sped up on a CPU (docs/results.md), and on one device
    (see `_refuse_xla_across_devices`).
    """
    import keras

    if config.jit_compile is not None:
        return config.jit_compile
    if keras.backend.backend() != "tensorflow":
        return True
    if replicas > 1:
        return False
    return not any(isinstance(layer, keras.layers.Conv2D) for layer in _all_layers(model))


def _refuse_xla_across_devices(config: TrainConfig, replicas: int) -> None:
    """TensorFlow's XLA cannot compile a step whose variables are mirrored on several devices."""
    import keras

    if config.jit_compile and replicas > 1 and keras.backend.backend() == "tensorflow":
        raise ConfigError(
            f"jit_compile=true cannot train across {replicas} devices on TensorFlow "
            "(XLA needs every variable on one device); leave jit_compile unset"
        )


def _all_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The layers of `model`, those inside nested models included."""
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found.extend(_all_layers(layer))
    return found


def _history_csv(history: list[dict[str, float]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def _save_model(model: keras.Model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save(tmp)


def _make_recorder(run_dir: Path, inner: keras.Model, state: _RunState):
    """A Keras callback that commits the run's state after every epoch (see module doc)."""
    import keras

    checkpoints = run_dir / "checkpoints"

    class RunRecorder(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            row = {"epoch": epoch + 1, "learning_rate": learning_rate}
            row.update({name: float(logs[name]) for name in HISTORY_COLUMNS[1:5]})
            improved = row["val_accuracy"] > state.best_val_accuracy or (
                row["val_accuracy"] == state.best_val_accuracy
                and row["val_loss"] < state.best_val_loss
            )
            previous = state.train_state
            state.train_state = f"train-state-epoch{epoch + 1}.weights.h5"
            with atomic_path(checkpoints / state.train_state) as tmp:
                self.model.save_weights(tmp)
            state.epochs_completed = epoch + 1
            state.history.append(row)
            state.train_seconds += time.perf_counter() - self.started
            if improved:
                state.best_val_accuracy = row["val_accuracy"]
                state.best_val_loss = row["val_loss"]
                state.best_epoch = epoch + 1
            _write_state(run_dir, state)
            _write_derived(run_dir, inner, state)
            if previous and previous != state.train_state:
                (checkpoints / previous).unlink(missing_ok=True)

    return RunRecorder()


def _write_state(run_dir: Path, state: _RunState) -> None:
    atomic_write_text(
        run_dir / "checkpoints" / STATE_FILE, json.dumps(state.__dict__, indent=1) + "\n"
    )


def _write_derived(run_dir: Path, inner: keras.Model, state: _RunState) -> None:
    """Files that follow from the committed state: last/best checkpoints and history.csv.

    `inner` must hold the weights of epoch `state.epochs_completed`.
    """
    atomic_write_text(run_dir / "history.csv", _history_csv(state.history))
    _save_model(inner, run_dir / "checkpoints" / "last.keras")
    if state.best_epoch == state.epochs_completed:
        _save_model(inner, run_dir / "checkpoints" / "best.keras")


def _read_state(run_dir: Path) -> _RunState:
    path = run_dir / "checkpoints" / STATE_FILE
    if not path.exists():
        return _RunState()
    try:
        return _RunState(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as error:
        raise ConfigError(f"{path}: unreadable resume state ({error})") from None


def _prepare_run_dir(run_dir: Path) -> None:
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise ConfigError(
            f"{run_dir}: run folder exists and is not empty; "
            "choose a new folder, or continue that run with --resume"
        )
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)


def _write_config(run_dir: Path, config: TrainConfig) -> None:
    settings = config.to_dict()
    settings["versions"] = versions()
    atomic_write_text(run_dir / "config.json", json.dumps(settings, indent=2) + "\n")


def _write_augmentation_figure(run_dir: Path, x: np.ndarray, y: np.ndarray, config: TrainConfig):
    from digitlab.plots.training import plot_augmentation_grid
    from digitlab.training.augment import augment_images, build_augmentation

    # One example of each of the first eight classes, each with six augmented copies.
    picks = [int(np.flatnonzero(y == label)[0]) for label in np.unique(y)[:8]]
    originals = x[picks]
    layer = build_augmentation(seed=config.seed, **config.augmentation)
    copies = 6
    augmented = augment_images(np.repeat(originals, copies, axis=0), layer)
    augmented = augmented.reshape(len(picks), copies, *originals.shape[1:])
    plot_augmentation_grid(originals, augmented, run_dir / "augmentation.png")


def _finish(
    run_dir: Path,
    config: TrainConfig,
    dataset: Dataset,
    inner: keras.Model,
    state: _RunState,
    placement: Placement,
) -> RunResult:
    from digitlab.plots.training import plot_training_curves
    from digitlab.training.processes import weights_checksum

    best = run_dir / "checkpoints" / "best.keras"
    with atomic_path(run_dir / "model.keras") as tmp:
        shutil.copyfile(best, tmp)
    plot_training_curves(
        state.history, run_dir / "curves.png", title=f"{config.model} on {dataset.name}"
    )
    summary = {
        "model": config.model,
        "params": inner.count_params(),
        "epochs_completed": state.epochs_completed,
        "epochs": config.epochs,
        "train_seconds": round(state.train_seconds, 2),
        "best_val_accuracy": state.best_val_accuracy,
        "best_epoch": state.best_epoch,
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
        "num_classes": dataset.num_classes,
        "xla": uses_xla(config, inner, placement.replicas),
        # The high-water mark of this process (the one that finished the run), in MiB.
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **placement.summary(),
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return RunResult(
        run_dir=run_dir,
        model_path=run_dir / "model.keras",
        best_val_accuracy=state.best_val_accuracy,
        best_epoch=state.best_epoch,
        epochs_completed=state.epochs_completed,
        train_seconds=state.train_seconds,
        history=state.history,
        weights_sha256=weights_checksum(inner),
    )


def train(
    config: TrainConfig | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    verbose: int | str = "auto",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> RunResult:
    """Train a model and write a run folder; return what it produced.

    Args:
        config: the settings (default `TrainConfig()`, the reference `mlp` run). With
            `resume`, leave it out: the run's own config.json is used.
        out: the run folder to create (default `runs/<model>-<time>`); it must not exist
            or be empty.
        resume: a run folder to continue from its last completed epoch, with its
            optimizer state; a finished run is only re-finalised.
        verbose: Keras's `fit` verbosity (0 silent, 1 progress bar, 2 one line per epoch).
        callbacks: more Keras callbacks for `fit`, after digitlab's own (which record the run).

    Under a Keras `DataParallel` distribution on JAX (see `digitlab.distributed`) each
    process trains on its own shard with `batch_size / processes` images per step; only
    process 0 writes the run folder.

    Raises `ConfigError` for bad settings, a non-empty `out`, a `resume` folder that is
    not a run or a `config` that differs from it; `DataError` for data that cannot be
    loaded or split.
    """
    from digitlab.training.processes import current_process, scratch_run_dir

    process = current_process()
    if resume is not None:
        run_dir = Path(resume)
        saved = config_from_json(run_dir / "config.json")
        if config is not None and config != saved:
            raise ConfigError(
                f"{run_dir}: --resume continues the run with its own settings "
                "(config.json); do not pass different ones"
            )
        config = saved
        state = _read_state(run_dir)
    else:
        config = config or TrainConfig()
        run_dir = Path(out) if out is not None else default_run_dir(config)
        state = _RunState()
    # Threads and logical devices are fixed when TensorFlow starts, so this comes before
    # anything runs; and before a new folder is made, so a missing GPU leaves none behind.
    placement = prepare_training(config)
    _refuse_xla_across_devices(config, placement.replicas)
    if resume is None and process.is_writer:
        _prepare_run_dir(run_dir)
    # The other processes of a distributed run make the same Keras calls as process 0 (saving
    # a model can be a collective operation) but write into a scratch folder.
    with scratch_run_dir(process, run_dir) as write_dir:
        result = _train_and_record(
            config,
            state,
            process,
            placement,
            run_dir,
            write_dir,
            resume is None,
            verbose,
            callbacks,
        )
    return dataclasses.replace(result, run_dir=run_dir, model_path=run_dir / "model.keras")


def _train_and_record(
    config: TrainConfig,
    state: _RunState,
    process: ProcessShare,
    placement: Placement,
    run_dir: Path,
    write_dir: Path,
    new_run: bool,
    verbose: int | str,
    callbacks: Sequence[keras.callbacks.Callback],
) -> RunResult:
    """Train from `state` (committed in `run_dir`), recording the run into `write_dir`."""
    import keras

    from digitlab.data.sources import load_dataset
    from digitlab.models import build_model
    from digitlab.training.processes import process_local
    from digitlab.training.progress import step_progress_bar

    dataset = load_dataset(config.dataset)
    x_train, y_train, x_val, y_val = split_train_validation(
        dataset.x_train, dataset.y_train, config.val_fraction, config.seed, config.limit
    )
    x_train, y_train = placement.trim(*process.shard(x_train, y_train))
    x_val, y_val = placement.trim(*process.shard(x_val, y_val))
    batch_size = process.local_batch_size(config.batch_size)
    # A resumed run draws fresh shuffles and augmentations, not a replay of its first epochs.
    keras.utils.set_random_seed(config.seed + state.epochs_completed)
    model_options = {**config.model_options, "image_shape": dataset.x_train.shape[1:]}
    steps_per_epoch = -(-len(y_train) // batch_size)
    # Variables made in the strategy's scope are mirrored on each of its devices.
    with placement.scope():
        inner = build_model(config.model, num_classes=dataset.num_classes, **model_options)
        model = build_training_model(inner, config)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=_learning_rate(config, steps_per_epoch)),
            loss=_loss(config),
            metrics=["accuracy"],
            # More steps per execution than an epoch has confuses Keras's progress bar.
            steps_per_execution=placement.steps_per_execution(
                min(config.steps_per_execution, steps_per_epoch)
            ),
            jit_compile=uses_xla(config, inner, placement.replicas),
        )

    if new_run:
        _write_config(write_dir, config)
    if config.augment and not (write_dir / "augmentation.png").exists():
        with process_local():
            _write_augmentation_figure(write_dir, x_train, y_train, config)
    if state.train_state is not None:
        with placement.scope():
            model.optimizer.build(model.trainable_variables)
            model.load_weights(run_dir / "checkpoints" / state.train_state)
        # The state file may have been committed just before a kill: redo what follows it.
        _write_derived(write_dir, inner, state)

    if state.epochs_completed < config.epochs:
        model.fit(
            x_train,
            _targets(config, y_train, dataset.num_classes),
            batch_size=batch_size,
            epochs=config.epochs,
            initial_epoch=state.epochs_completed,
            validation_data=(x_val, _targets(config, y_val, dataset.num_classes)),
            shuffle=True,
            verbose=verbose,
            callbacks=[
                step_progress_bar(),
                _make_recorder(write_dir, inner, state),
                keras.callbacks.TensorBoard(
                    log_dir=str(write_dir / "tensorboard"), write_graph=False
                ),
                *callbacks,
            ],
        )
    return _finish(write_dir, config, dataset, inner, state, placement)

"""Training runs: data split, model, Keras `fit`, and a run folder that survives a kill -9.

The run folder's files and its per-epoch commit are described in `run_folder`, which owns
them; the callback that makes the commit is in `recorder`.

The model trained is a wrapper, augmentation layers followed by the inference model; only
the inference model is saved as `.keras`, so it loads with plain Keras, without digitlab.
The run's `model.keras` is the best epoch's, with a temperature fitted on the validation
split baked in, so its probabilities are calibrated in every runtime and export.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitlab.atomic import atomic_path, atomic_write_text
from digitlab.errors import ConfigError, DataError, DigitlabError
from digitlab.training import compilation
from digitlab.training.config import TrainConfig
from digitlab.training.devices import prepare_training
from digitlab.training.run_folder import RunFolder, RunState

if TYPE_CHECKING:
    import keras

    from digitlab.data.sources import Dataset
    from digitlab.training.devices import Placement
    from digitlab.training.processes import ProcessShare


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


def _write_augmentation_figure(
    path: Path, x: np.ndarray, y: np.ndarray, config: TrainConfig
) -> None:
    from digitlab.plots.training import plot_augmentation_grid
    from digitlab.training.augment import augment_images, build_augmentation

    # One example of each of the first eight classes, each with six augmented copies.
    picks = [int(np.flatnonzero(y == label)[0]) for label in np.unique(y)[:8]]
    originals = x[picks]
    layer = build_augmentation(seed=config.seed, **config.augmentation)
    copies = 6
    augmented = augment_images(np.repeat(originals, copies, axis=0), layer)
    augmented = augmented.reshape(len(picks), copies, *originals.shape[1:])
    plot_augmentation_grid(originals, augmented, path)


def _finish(
    folder: RunFolder,
    config: TrainConfig,
    dataset: Dataset,
    inner: keras.Model,
    state: RunState,
    placement: Placement,
    validation: tuple[np.ndarray, np.ndarray],
) -> RunResult:
    from digitlab.plots.training import plot_training_curves
    from digitlab.training.processes import weights_checksum

    temperature = _save_calibrated_model(folder, *validation)
    plot_training_curves(state.history, folder.curves, title=f"{config.model} on {dataset.name}")
    summary = {
        "model": config.model,
        "params": inner.count_params(),
        "epochs_completed": state.epochs_completed,
        "epochs": config.epochs,
        "train_seconds": round(state.train_seconds, 2),
        "best_val_accuracy": state.best_val_accuracy,
        "best_epoch": state.best_epoch,
        "temperature": temperature,
        "dataset": dataset.name,
        "class_names": list(dataset.class_names),
        "num_classes": dataset.num_classes,
        "xla": compilation.uses_xla(config, inner, placement.replicas),
        # The high-water mark of this process (the one that finished the run), in MiB.
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **placement.summary(),
    }
    atomic_write_text(folder.summary, json.dumps(summary, indent=2) + "\n")
    return RunResult(
        run_dir=folder.path,
        model_path=folder.model,
        best_val_accuracy=state.best_val_accuracy,
        best_epoch=state.best_epoch,
        epochs_completed=state.epochs_completed,
        train_seconds=state.train_seconds,
        history=state.history,
        weights_sha256=weights_checksum(inner),
    )


def _save_calibrated_model(folder: RunFolder, x_val: np.ndarray, y_val: np.ndarray) -> float:
    """Save the best checkpoint as the run's model with a temperature fitted on the whole
    validation split (`digitlab.inference.calibration`); return that temperature.

    Every process of a distributed run fits the same temperature on the same images, on its
    own: under the distribution its predictions would enter collectives.
    """
    from digitlab.inference.calibration import calibrate, temperature_of
    from digitlab.inference.modelfile import load_keras_model
    from digitlab.training.processes import process_local

    with process_local():
        model = calibrate(load_keras_model(folder.best_checkpoint), x_val, y_val)
        with atomic_path(folder.model) as tmp:
            model.save(tmp)
    return temperature_of(model)


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

    A run stopped before its first epoch resumes from epoch 0; resuming removes what a
    killed run left behind (`RunFolder.leftovers`).

    Raises `ConfigError` for bad settings, a non-empty `out`, a `resume` folder that is
    not a run or a `config` that differs from it; `DataError` for data that cannot be
    loaded or split; `TrainingDivergedError` when the loss stops being a number (the run
    folder keeps the last epoch before it).
    """
    from digitlab.training.interrupts import StopOnCtrlC
    from digitlab.training.processes import current_process, scratch_run_dir

    process = current_process()
    if resume is not None:
        folder = RunFolder(Path(resume))
        saved = folder.read_config()
        if config is not None and config != saved:
            raise ConfigError(
                f"{folder.path}: --resume continues the run with its own settings "
                "(config.json); do not pass different ones"
            )
        config = saved
        state = folder.read_state()
    else:
        config = config or TrainConfig()
        folder = RunFolder(Path(out) if out is not None else default_run_dir(config))
        state = RunState()
    # Threads and logical devices are fixed when TensorFlow starts, so this comes before
    # anything runs; and before a new folder is made, so a missing GPU leaves none behind.
    placement = prepare_training(config)
    compilation.refuse_xla_across_devices(config, placement.replicas)
    # From before the folder is made: a Ctrl-C lost while the data loads stops the first batch.
    ctrl_c = StopOnCtrlC()
    with (
        ctrl_c.catching_ctrl_c(),
        folder.writing() if process.is_writer else contextlib.nullcontext(),
    ):
        if process.is_writer:
            if resume is None:
                folder.prepare({**config.to_dict(), "versions": versions()})
            else:
                # Read again now that no other writer can commit an epoch meanwhile.
                state = folder.read_state()
                folder.remove_leftovers(state, config.epochs)
        try:
            # The other processes of a distributed run make the same Keras calls as process
            # 0 (saving a model can be a collective operation) but write into a scratch folder.
            with scratch_run_dir(process, folder.path) as write_dir:
                result = _train_and_record(
                    config,
                    state,
                    process,
                    placement,
                    folder,
                    RunFolder(write_dir),
                    verbose,
                    [*callbacks, ctrl_c],
                )
        except DigitlabError:
            # Settings that fail before the first epoch (a missing dataset, bad model
            # options) would fail a resume the same way: leave the folder free to reuse.
            if resume is None and process.is_writer:
                folder.discard_unstarted()
            raise
    return dataclasses.replace(result, run_dir=folder.path, model_path=folder.model)


def _train_and_record(
    config: TrainConfig,
    state: RunState,
    process: ProcessShare,
    placement: Placement,
    folder: RunFolder,
    write_to: RunFolder,
    verbose: int | str,
    callbacks: Sequence[keras.callbacks.Callback],
) -> RunResult:
    """Train from `state` (committed in `folder`), recording the run into `write_to`."""
    import keras

    from digitlab.data.sources import load_dataset
    from digitlab.models import build_model
    from digitlab.training.processes import process_local
    from digitlab.training.progress import step_progress_bar
    from digitlab.training.recorder import RunRecorder, write_derived

    dataset = load_dataset(config.dataset)
    x_train, y_train, x_val, y_val = split_train_validation(
        dataset.x_train, dataset.y_train, config.val_fraction, config.seed, config.limit
    )
    # The temperature is fitted on the whole validation split, not this process's shard.
    validation = (x_val, y_val)
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
        model = compilation.build_training_model(inner, config)
        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=compilation.learning_rate(config, steps_per_epoch)
            ),
            loss=compilation.loss(config),
            metrics=["accuracy"],
            # More steps per execution than an epoch has confuses Keras's progress bar.
            steps_per_execution=placement.steps_per_execution(
                min(config.steps_per_execution, steps_per_epoch)
            ),
            jit_compile=compilation.uses_xla(config, inner, placement.replicas),
        )

    if config.augment and not write_to.augmentation.exists():
        with process_local():
            _write_augmentation_figure(write_to.augmentation, x_train, y_train, config)
    if state.train_state is not None:
        weights = folder.checkpoints / state.train_state
        with placement.scope():
            model.optimizer.build(model.trainable_variables)
            try:
                model.load_weights(weights)
            except (OSError, ValueError) as error:  # missing, truncated or not this model's
                reason = str(error).strip().splitlines()[0] if str(error).strip() else "unreadable"
                raise ConfigError(
                    f"{weights}: cannot resume from these weights ({reason})"
                ) from None
        # The state file may have been committed just before a kill: redo what follows it.
        write_derived(write_to, inner, state)

    recorder = RunRecorder(write_to, inner, state)
    if state.epochs_completed < config.epochs:
        model.fit(
            x_train,
            compilation.targets(config, y_train, dataset.num_classes),
            batch_size=batch_size,
            epochs=config.epochs,
            initial_epoch=state.epochs_completed,
            validation_data=(x_val, compilation.targets(config, y_val, dataset.num_classes)),
            shuffle=True,
            verbose=verbose,
            callbacks=[
                step_progress_bar(),
                keras.callbacks.TerminateOnNaN(),
                recorder,
                keras.callbacks.TensorBoard(log_dir=str(write_to.tensorboard), write_graph=False),
                *callbacks,
            ],
        )
    recorder.raise_if_diverged(folder.path)
    return _finish(write_to, config, dataset, inner, state, placement, validation)

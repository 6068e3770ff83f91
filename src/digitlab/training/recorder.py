"""The Keras callback that records a run: the per-epoch commit into its run folder.

Keras's `BackupAndRestore` and `CSVLogger` are not used because their two files (weights,
epoch; history rows) are written separately and non-atomically, so a kill between them
leaves a history row or weights one epoch ahead of the recorded epoch. See `run_folder` for
the commit this callback makes instead.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import keras

from digitlab.atomic import atomic_path
from digitlab.errors import TrainingDivergedError
from digitlab.training.run_folder import HISTORY_COLUMNS, RunFolder, RunState, train_state_name


def save_model(model: keras.Model, path: Path) -> None:
    """Save `model` as a `.keras` file at `path`, atomically."""
    with atomic_path(path) as tmp:
        model.save(tmp)


def write_derived(folder: RunFolder, inner: keras.Model, state: RunState) -> None:
    """Files that follow from the committed state: history.csv, last and best checkpoints.

    `inner` must hold the weights of epoch `state.epochs_completed`.
    """
    folder.write_history(state.history)
    save_model(inner, folder.last_checkpoint)
    if state.best_epoch == state.epochs_completed:
        save_model(inner, folder.best_checkpoint)


# Keras ships no type hints, so its base class is `Any` to mypy.
class RunRecorder(keras.callbacks.Callback):  # type: ignore[misc]
    """Commits the run's state into `folder` after every epoch whose losses are numbers.

    An epoch whose training or validation loss is NaN or infinite is not committed: the
    recorder stops `fit` and `raise_if_diverged` reports it, so the folder keeps the last
    good epoch. (`keras.callbacks.TerminateOnNaN` ends the epoch at the first bad batch.)
    """

    def __init__(self, folder: RunFolder, inner: keras.Model, state: RunState) -> None:
        super().__init__()
        self.folder = folder
        self.inner = inner
        self.state = state
        self.diverged: dict[str, float] | None = None
        self._started = 0.0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        row = {"epoch": epoch + 1, "learning_rate": learning_rate}
        row.update({name: float(logs.get(name, math.nan)) for name in HISTORY_COLUMNS[1:5]})
        if not all(math.isfinite(row[name]) for name in ("loss", "val_loss")):
            self.diverged = row
            self.model.stop_training = True
            return
        self._commit(row)

    def _commit(self, row: dict[str, float]) -> None:
        state = self.state
        improved = row["val_accuracy"] > state.best_val_accuracy or (
            row["val_accuracy"] == state.best_val_accuracy and row["val_loss"] < state.best_val_loss
        )
        epoch = int(row["epoch"])
        previous = state.train_state
        state.train_state = train_state_name(epoch)
        with atomic_path(self.folder.checkpoints / state.train_state) as tmp:
            self.model.save_weights(tmp)
        state.epochs_completed = epoch
        state.history.append(row)
        state.train_seconds += time.perf_counter() - self._started
        if improved:
            state.best_val_accuracy = row["val_accuracy"]
            state.best_val_loss = row["val_loss"]
            state.best_epoch = epoch
        self.folder.commit_state(state)
        write_derived(self.folder, self.inner, state)
        if previous and previous != state.train_state:
            (self.folder.checkpoints / previous).unlink(missing_ok=True)

    def raise_if_diverged(self, run_dir: Path) -> None:
        """Raise `TrainingDivergedError` when an epoch's loss was not a number."""
        if self.diverged is None:
            return
        row = self.diverged
        kept = (
            f"it keeps epoch {self.state.epochs_completed}"
            if self.state.epochs_completed
            else "no epoch was kept"
        )
        raise TrainingDivergedError(
            f"{run_dir}: training diverged in epoch {int(row['epoch'])} (loss {row['loss']}, "
            f"val_loss {row['val_loss']}); {kept}. Lower lr or check the settings and data"
        )

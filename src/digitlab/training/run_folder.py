"""The run folder: the one owner of its format, for `train` that writes it and every reader.

A run folder holds:

    config.json        every setting, the seed and the library versions; written first
    history.csv        epoch, loss, accuracy, val_loss, val_accuracy, learning_rate
    summary.json       model, parameters, epochs, seconds, best validation accuracy, classes
    curves.png         loss and accuracy, training against validation
    augmentation.png   original digits beside augmented copies (when augmentation is on)
    tensorboard/       Keras's TensorBoard logs
    checkpoints/       last.keras and best.keras (inference models), and the resume state
    model.keras        the best model by validation accuracy
    model.onnx         its ONNX copy (fine-tuning runs, `digitlab finetune`)
    distributed.json   every process's final weight checksum (distributed runs only)

The commit: after every epoch the training model's weights with the optimizer state go to a
new `checkpoints/train-state-epochN.weights.h5`, then `checkpoints/state.json` (the epoch
count and the history) is replaced atomically to point at it. A run killed at any moment
resumes from the last committed epoch; every other file is rewritten from that state.

config.json is written before anything else, so a folder holding it is a run that
`train(resume=...)` continues: from epoch 0 when no epoch was committed yet.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from digitlab.atomic import atomic_write_text, stale_temporaries
from digitlab.errors import ConfigError, DataError
from digitlab.training.config import TrainConfig, config_from_json

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
SUMMARY_FILE = "summary.json"
CURVES_FILE = "curves.png"
AUGMENTATION_FILE = "augmentation.png"
MODEL_FILE = "model.keras"
ONNX_FILE = "model.onnx"
DISTRIBUTED_FILE = "distributed.json"
TENSORBOARD_FOLDER = "tensorboard"
CHECKPOINTS_FOLDER = "checkpoints"
LAST_CHECKPOINT_FILE = "last.keras"
BEST_CHECKPOINT_FILE = "best.keras"
STATE_FILE = "state.json"

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
"""The columns of history.csv, in order: one row per completed epoch."""


@dataclass
class RunState:
    """The committed progress of a run, as stored in checkpoints/state.json."""

    epochs_completed: int = 0
    train_state: str | None = None
    """The file name, in checkpoints/, of the committed weights and optimizer state."""
    best_val_accuracy: float = -1.0
    best_val_loss: float = float("inf")
    best_epoch: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)


def train_state_name(epoch: int) -> str:
    """The name of the weights-and-optimizer file committed after `epoch`."""
    return f"train-state-epoch{epoch}.weights.h5"


@dataclass(frozen=True)
class RunFolder:
    """A run folder at `path`: where each of its files goes, and how they are read and
    committed."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def history(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def curves(self) -> Path:
        return self.path / CURVES_FILE

    @property
    def augmentation(self) -> Path:
        return self.path / AUGMENTATION_FILE

    @property
    def model(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def onnx(self) -> Path:
        return self.path / ONNX_FILE

    @property
    def distributed(self) -> Path:
        return self.path / DISTRIBUTED_FILE

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_FOLDER

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS_FOLDER

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT_FILE

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / BEST_CHECKPOINT_FILE

    @property
    def state(self) -> Path:
        return self.checkpoints / STATE_FILE

    def holds_run(self) -> bool:
        """Whether this folder is a run that `train(resume=...)` can continue or finish."""
        return self.config.is_file()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold this folder for one writer: the block runs while no other process writes it.

        The folder is made if it does not exist. Raises `ConfigError` when another process
        holds it (a run still training, or a second `train` given the same folder).
        """
        self.path.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(
                    f"{self.path}: another process is training this run; "
                    "wait for it to end or stop it first"
                ) from None
            yield
        finally:
            os.close(handle)

    def discard_unstarted(self) -> None:
        """Empty a run that failed before committing an epoch, so that the same folder can
        be used again; a run with a committed epoch is left as it is. Call it only on a
        folder that `prepare` accepted (new or empty), whose files are all the run's own."""
        if self.state.exists():
            return
        for child in self.path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()

    def prepare(self, settings: Mapping[str, Any]) -> None:
        """Start a new run here: check the folder is new or empty, write config.json
        (`settings`), then make checkpoints/.

        Raises `ConfigError` when the folder already holds a run (to be continued with
        --resume) or anything else.
        """
        if self.path.exists():
            if self.holds_run():
                raise ConfigError(
                    f"{self.path}: holds a run already; continue it with "
                    f"--resume {self.path}, or choose a new folder"
                )
            if not self.path.is_dir() or any(self.path.iterdir()):
                raise ConfigError(
                    f"{self.path}: run folder exists and is not empty; choose a new or empty folder"
                )
        atomic_write_text(self.config, json.dumps(dict(settings), indent=2) + "\n")
        self.checkpoints.mkdir(exist_ok=True)

    def read_state(self) -> RunState:
        """The committed state; a fresh one when no epoch was committed yet.

        Raises `ConfigError` naming checkpoints/state.json when it cannot be read.
        """
        if not self.state.exists():
            return RunState()
        try:
            return RunState(**json.loads(self.state.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError) as error:
            raise ConfigError(f"{self.state}: unreadable resume state ({error})") from None

    def commit_state(self, state: RunState) -> None:
        """Replace checkpoints/state.json with `state` in one atomic step: the commit."""
        atomic_write_text(self.state, json.dumps(asdict(state), indent=1) + "\n")

    def write_history(self, history: Sequence[Mapping[str, float]]) -> None:
        """Write history.csv, one row per epoch in `HISTORY_COLUMNS` order, atomically."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.history, buffer.getvalue())

    def read_config(self) -> TrainConfig:
        """The run's settings. Raises `ConfigError` naming config.json."""
        return config_from_json(self.config)

    def read_settings(self) -> dict[str, Any] | None:
        """config.json as written (versions included), or None when there is none.

        Raises `DataError` naming the file when it is not a JSON object.
        """
        return read_json_object(self.config) if self.config.is_file() else None

    def read_summary(self, required: Sequence[str] = ()) -> dict[str, Any]:
        """summary.json, which a run gets when it finishes.

        Raises `DataError` naming the folder when there is none, or the file when it is
        not a JSON object or lacks one of the `required` keys.
        """
        if not self.summary.is_file():
            raise DataError(
                f"{self.path}: not a run folder (no {SUMMARY_FILE}; `digitlab train` writes one)"
            )
        summary = read_json_object(self.summary)
        missing = [key for key in required if key not in summary]
        if missing:
            raise DataError(f"{self.summary}: missing {', '.join(missing)}")
        return summary

    def read_history(self, columns: Sequence[str] = HISTORY_COLUMNS) -> dict[str, list[float]]:
        """The values of `columns` per epoch, in the file's order.

        Raises `DataError` naming the folder when there is no history.csv, or the file
        when a column is missing or holds something other than a number.
        """
        if not self.history.is_file():
            raise DataError(f"{self.path}: not a run folder (no {HISTORY_FILE})")
        try:
            with open(self.history, newline="", encoding="utf-8") as handle:
                records = list(csv.DictReader(handle))
        except (UnicodeDecodeError, csv.Error) as error:
            raise DataError(f"{self.history}: not a readable CSV file ({error})") from None
        if not records or any(column not in records[0] for column in columns):
            raise DataError(f"{self.history}: expected a header with {' and '.join(columns)}")
        values: dict[str, list[float]] = {}
        for column in columns:
            try:
                values[column] = [float(record[column]) for record in records]
            except (TypeError, ValueError):
                raise DataError(f"{self.history}: a {column} value is not a number") from None
        return values

    def leftovers(self, state: RunState, epochs: int) -> list[Path]:
        """What a killed run left here that no committed state points at.

        Temporary files of the run's own atomic writes, and train-state files (and their
        temporaries) of epochs 1..`epochs` other than `state`'s committed one. Nothing
        else: a file the run did not write is never listed.
        """
        return sorted(self._leftovers(state, epochs))

    def remove_leftovers(self, state: RunState, epochs: int) -> list[Path]:
        """Delete `leftovers(state, epochs)`; return what was deleted.

        Call it only while holding the folder (`writing`), as `train(resume=...)` does.
        """
        removed = self.leftovers(state, epochs)
        for path in removed:
            path.unlink(missing_ok=True)
        return removed

    def _leftovers(self, state: RunState, epochs: int) -> Iterator[Path]:
        own_files = (
            self.config,
            self.history,
            self.summary,
            self.curves,
            self.augmentation,
            self.model,
            self.distributed,
            self.last_checkpoint,
            self.best_checkpoint,
            self.state,
        )
        for path in own_files:
            yield from stale_temporaries(path)
        for epoch in range(1, epochs + 1):
            train_state = self.checkpoints / train_state_name(epoch)
            yield from stale_temporaries(train_state)
            if train_state.name != state.train_state and train_state.is_file():
                yield train_state


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON file holding one object, as a dict.

    Raises `DataError` naming the file when it cannot be read or holds something else.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object")
    return value

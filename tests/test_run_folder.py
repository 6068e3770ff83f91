"""The run folder's format: starting a run, the committed state, readers, and a killed run's
leftovers, on real files (the leftovers made by real processes killed mid-write)."""

from __future__ import annotations

import json

import pytest

from digitlab.atomic import stale_temporaries
from digitlab.cli.train import _resume_hint
from digitlab.errors import ConfigError, DataError
from digitlab.training.config import TrainConfig
from digitlab.training.run_folder import HISTORY_COLUMNS, RunFolder, RunState, train_state_name
from killed_writer import leave_temporary


def test_stale_temporaries_are_those_a_killed_writer_left_for_that_target(tmp_path):
    best = tmp_path / "best.keras"
    left = leave_temporary(best)
    assert left.name.startswith(".best.tmp-") and left.name.endswith(".keras")
    assert not best.exists()
    state = tmp_path / "train-state-epoch8.weights.h5"
    left_state = leave_temporary(state)
    # Other files, and the temporaries of other targets, are not this target's leftovers.
    for name in ("best.keras.bak", ".bestx.tmp-abcdefgh.keras", ".best.tmp-abcdefgh.h5"):
        (tmp_path / name).write_text("not a leftover of best.keras")
    assert stale_temporaries(best) == [left]
    assert stale_temporaries(state) == [left_state]
    assert stale_temporaries(tmp_path / "last.keras") == []


def test_prepare_writes_config_first_and_makes_checkpoints(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.prepare({"model": "mlp", "epochs": 2})
    assert json.loads(folder.config.read_text()) == {"model": "mlp", "epochs": 2}
    assert folder.checkpoints.is_dir() and folder.holds_run()
    assert folder.read_state() == RunState()
    assert sorted(p.name for p in folder.path.iterdir()) == ["checkpoints", "config.json"]


def test_prepare_sends_a_folder_holding_a_run_to_resume(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.prepare(TrainConfig(epochs=2).to_dict())
    written = folder.config.read_bytes()
    with pytest.raises(
        ConfigError, match=f"holds a run already; continue it with --resume {folder.path}"
    ):
        folder.prepare(TrainConfig(epochs=5).to_dict())
    assert folder.config.read_bytes() == written
    assert folder.read_config() == TrainConfig(epochs=2)


def test_prepare_refuses_other_files_without_suggesting_resume(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty") as refused:
        RunFolder(tmp_path).prepare({"model": "mlp"})
    assert "--resume" not in str(refused.value)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_resume_hint_only_when_resume_would_work(tmp_path):
    folder = RunFolder(tmp_path / "run")
    assert "--resume" not in _resume_hint(folder.path, "digitlab train")
    folder.path.mkdir()
    (folder.path / "notes.txt").write_text("mine")
    assert "nothing to resume" in _resume_hint(folder.path, "digitlab train")
    (folder.path / "notes.txt").unlink()
    folder.prepare(TrainConfig(epochs=1).to_dict())
    assert _resume_hint(folder.path, "digitlab train").endswith(
        f"digitlab train --resume {folder.path}"
    )


def test_committed_state_reads_back_and_history_has_the_columns(tmp_path):
    folder = RunFolder(tmp_path)
    row = {"epoch": 1, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.4}
    row |= {"val_accuracy": 0.875, "learning_rate": 0.001}
    state = RunState(epochs_completed=1, train_state=train_state_name(1), history=[row])
    folder.commit_state(state)
    assert folder.read_state() == state
    folder.write_history(state.history)
    assert folder.history.read_text().splitlines()[0] == ",".join(HISTORY_COLUMNS)
    assert folder.read_history(("val_accuracy", "epoch")) == {
        "val_accuracy": [0.875],
        "epoch": [1.0],
    }
    folder.state.write_text('{"epochs_completed": 1, "surprise": 2}')
    with pytest.raises(ConfigError, match="state.json: unreadable resume state"):
        folder.read_state()


def test_readers_name_the_file_they_cannot_read(tmp_path):
    folder = RunFolder(tmp_path)
    with pytest.raises(DataError, match="not a run folder \\(no summary.json"):
        folder.read_summary()
    folder.summary.write_text("[1, 2]")
    with pytest.raises(DataError, match="summary.json: expected a JSON object"):
        folder.read_summary()
    folder.summary.write_text('{"model": "mlp"}')
    with pytest.raises(DataError, match="summary.json: missing params, epochs"):
        folder.read_summary(required=("model", "params", "epochs"))
    assert folder.read_settings() is None
    folder.history.write_text("epoch,val_loss\n1,low\n")
    with pytest.raises(DataError, match="history.csv: a val_loss value is not a number"):
        folder.read_history(("val_loss",))
    folder.history.write_bytes(b"epoch,val_loss\n1,\xff\n")
    with pytest.raises(DataError, match="history.csv: not a readable CSV file"):
        folder.read_history(("val_loss",))


def test_remove_leftovers_deletes_only_what_the_killed_run_left(tmp_path):
    folder = RunFolder(tmp_path)
    folder.prepare({"model": "mlp"})
    state = RunState(epochs_completed=2, train_state=train_state_name(2))
    committed = folder.checkpoints / train_state_name(2)
    orphans = [folder.checkpoints / train_state_name(epoch) for epoch in (1, 8)]
    for path in [committed, *orphans, folder.best_checkpoint]:
        path.write_bytes(b"weights")
    temporaries = [
        leave_temporary(target)
        for target in (
            folder.best_checkpoint,
            folder.augmentation,
            folder.curves,
            folder.checkpoints / train_state_name(3),
        )
    ]
    user_files = [tmp_path / "notes.txt", tmp_path / ".notes.tmp-abcdefgh.txt"]
    user_files.append(folder.checkpoints / "train-state-epoch8.weights.h5.bak")
    user_files.append(folder.tensorboard / "events.out.tfevents.1")
    for path in user_files:
        path.parent.mkdir(exist_ok=True)
        path.write_text("keep")

    removed = folder.remove_leftovers(state, epochs=10)

    assert sorted(removed) == sorted([*orphans, *temporaries])
    assert not any(path.exists() for path in removed)
    assert committed.is_file() and folder.best_checkpoint.is_file() and folder.config.is_file()
    assert all(path.read_text() == "keep" for path in user_files)
    assert folder.remove_leftovers(state, epochs=10) == []


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path):
    folder = RunFolder(tmp_path / "run")
    with (
        folder.writing(),
        pytest.raises(ConfigError, match="another process is training this run"),
        RunFolder(tmp_path / "run").writing(),
    ):
        pass
    with RunFolder(tmp_path / "run").writing():
        pass  # free again once the first writer is done


def test_a_run_that_fails_before_its_first_epoch_leaves_its_folder_free(tmp_path):
    from digitlab.training.loop import train

    run = tmp_path / "run"
    config = TrainConfig(dataset=str(tmp_path / "no-such-dataset"), epochs=1)
    with pytest.raises(DataError, match="no-such-dataset"):
        train(config, out=run, verbose=0)
    assert run.is_dir() and list(run.iterdir()) == []
    RunFolder(run).prepare(TrainConfig().to_dict())

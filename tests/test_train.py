"""Training runs: config precedence, the run folder, the CLI, and resuming after kill -9."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.errors import ConfigError, TrainingDivergedError
from digitlab.inference.modelfile import load_keras_model
from digitlab.models import build_model
from digitlab.training.compilation import uses_xla
from digitlab.training.config import TrainConfig, make_config, parse_override
from digitlab.training.interrupts import StopOnCtrlC
from digitlab.training.loop import split_train_validation, train
from digitlab.training.run_folder import HISTORY_COLUMNS, RunFolder, train_state_name
from killed_writer import leave_temporary

SUMMARY_KEYS = {
    "model",
    "params",
    "epochs_completed",
    "epochs",
    "train_seconds",
    "best_val_accuracy",
    "temperature",
    "best_epoch",
    "dataset",
    "class_names",
    "num_classes",
    "peak_memory_mb",
    "replicas",
    "device",
    "cores",
    "threads",
    "xla",
}
# A small, fast model for runs whose point is the run folder, not the accuracy.
SMALL_MLP = {"model_options": {"hidden_units": [64]}}


def read_history(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_config_file_then_flags_override_the_defaults(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(
        'model = "cnn"\nepochs = 5\nlr = 0.002\n[model_options]\nfilters = [8, 16, 32]\n'
        "[augmentation]\nrotation = 5\n"
    )
    config = make_config(path, {"epochs": 7, "augmentation.shift": 1.5})
    assert config == TrainConfig(
        model="cnn",
        epochs=7,
        lr=0.002,
        model_options={"filters": [8, 16, 32]},
        augmentation={"rotation": 5, "shift": 1.5},
    )
    assert make_config() == TrainConfig()


def test_config_file_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = 5\nbatchsize = 32\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: unknown key 'batchsize'.*batch_size"):
        make_config(path)
    path.write_text('epochs = "ten"\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: epochs must be an integer, got 'ten'"):
        make_config(path)
    path.write_text("epochs = [\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: not a valid TOML config file"):
        make_config(path)
    with pytest.raises(ConfigError, match="command line: val_fraction must be between 0 and 1"):
        make_config(overrides={"val_fraction": 1.5})
    with pytest.raises(ConfigError, match="no such config file"):
        make_config(tmp_path / "missing.toml")


def test_overrides_parse_toml_values_or_plain_strings():
    assert parse_override("model_options.hidden_units=[512, 256]") == (
        "model_options.hidden_units",
        [512, 256],
    )
    assert parse_override("lr=3e-4") == ("lr", 3e-4)
    assert parse_override("lr_schedule=constant") == ("lr_schedule", "constant")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("epochs")


@pytest.mark.parametrize(
    ("setting", "model", "expected"),
    [
        (None, "mlp", True),
        (None, "cnn", False),
        (None, "strided", False),
        (False, "mlp", False),
        (True, "cnn", True),
    ],
)
def test_xla_is_chosen_by_model_kind_unless_set(setting, model, expected):
    config = make_config(overrides={"jit_compile": setting, "model": model})
    assert uses_xla(config, build_model(model)) is expected


def test_jit_compile_setting_reads_true_false_or_unset(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text("jit_compile = false\n")
    assert make_config(path).jit_compile is False
    assert make_config(overrides=dict([parse_override("jit_compile=true")])).jit_compile is True
    assert TrainConfig().jit_compile is None
    with pytest.raises(ConfigError, match="jit_compile must be true or false"):
        make_config(overrides={"jit_compile": "sometimes"})


def test_validation_split_is_stratified_reproducible_and_limited(mnist):
    (x_train, y_train), _ = mnist
    x_fit, y_fit, x_val, y_val = split_train_validation(x_train, y_train, 0.1, seed=3, limit=6000)
    assert len(y_fit) + len(y_val) == 6000 and len(y_val) == 600
    overall = np.bincount(y_train, minlength=10) / len(y_train)
    assert np.abs(np.bincount(y_val, minlength=10) - 600 * overall).max() <= 1.0
    again = split_train_validation(x_train, y_train, 0.1, seed=3, limit=6000)
    np.testing.assert_array_equal(again[3], y_val)
    np.testing.assert_array_equal(again[2], x_val)


@pytest.mark.slow
def test_train_writes_a_complete_run_folder(tmp_path):
    config = _small_config(epochs=2, augment=True)
    import keras

    class EpochLog(keras.callbacks.Callback):
        ended: list[int] = []

        def on_epoch_end(self, epoch, logs=None):
            self.ended.append(epoch)

    result = train(config, out=tmp_path / "run", verbose=0, callbacks=[EpochLog()])
    run_dir = result.run_dir
    assert EpochLog.ended == [0, 1]
    for name in (
        "config.json",
        "history.csv",
        "summary.json",
        "curves.png",
        "augmentation.png",
        "model.keras",
        "checkpoints/last.keras",
        "checkpoints/best.keras",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))

    history = read_history(run_dir)
    assert list(history[0]) == list(HISTORY_COLUMNS)
    assert [int(row["epoch"]) for row in history] == [1, 2]

    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) == SUMMARY_KEYS
    assert summary["epochs_completed"] == summary["epochs"] == 2
    assert summary["class_names"] == [str(digit) for digit in range(10)]
    best = max(history, key=lambda row: float(row["val_accuracy"]))
    assert summary["best_val_accuracy"] == pytest.approx(float(best["val_accuracy"]))
    assert summary["best_val_accuracy"] == result.best_val_accuracy
    assert summary["xla"] is True  # auto: a model without convolutions

    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["seed"] == 0 and saved["limit"] == 600
    assert {"python", "keras", "tensorflow", "numpy", "digitlab"} <= set(saved["versions"])

    model = load_keras_model(run_dir / "model.keras")
    assert model.count_params() == summary["params"]
    assert not any("augment" in layer.name for layer in model.layers)


@pytest.mark.slow
def test_progress_bar_never_counts_past_the_epochs_steps(tmp_path, capfd):
    # 540 training images in batches of 32 make 17 steps; run 4 at a time, Keras's own bar
    # counted them as 4, 8, 12, 16, 20 of 17.
    config = _small_config(epochs=1, steps_per_execution=4)
    train(config, out=tmp_path / "run", verbose=1)
    counts = [
        (int(done), int(total))
        for done, total in re.findall(r"(\d+)/(\d+)", capfd.readouterr().out)
    ]
    assert (17, 17) in counts
    assert all(done <= total == 17 for done, total in counts), counts


def test_train_refuses_a_non_empty_run_folder(tmp_path):
    keep = tmp_path / "notes.txt"
    keep.write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty") as refused:
        train(TrainConfig(epochs=1), out=tmp_path)
    # --resume would fail on a folder that holds no run: the message must not offer it.
    assert "--resume" not in str(refused.value)
    assert keep.read_text() == "mine"


def _small_config(epochs: int, **extra: object) -> TrainConfig:
    """600 images, batch 32, no augmentation, the small MLP: a run of a few seconds.
    `extra` overrides any setting (e.g. `augment=True`)."""
    overrides = {"limit": 600, "epochs": epochs, "batch_size": 32, "augment": False, **extra}
    return make_config(overrides={**overrides, **_dotted(SMALL_MLP)})


def _dotted(settings: dict) -> dict:
    return {
        f"{table}.{key}": value
        for table, entries in settings.items()
        for key, value in entries.items()
    }


def test_cli_reports_a_bad_flag_in_one_line(tmp_path):
    result = CliRunner().invoke(app, ["train", "--model", "vgg", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [
        "Error: command line: model 'vgg' is unknown; valid models: mlp, cnn, resnet, strided"
    ]
    assert not (tmp_path / "r").exists()


def test_cli_resume_refuses_new_settings(tmp_path):
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path), "--epochs", "3"])
    assert result.exit_code == 1
    assert "--resume continues the run with its own settings" in result.output


def test_cli_models_lists_names_with_parameter_counts():
    from digitlab.models import build_model

    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0
    lines = result.output.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["mlp", "cnn", "resnet", "strided"]
    for line in lines:
        name, count = line.split()[:2]
        assert int(count.replace(",", "")) == build_model(name).count_params()


def _wait_for_epoch(process: subprocess.Popen, state_file: Path, epoch: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if state_file.exists() and json.loads(state_file.read_text())["epochs_completed"] >= epoch:
            return
        assert process.poll() is None, "training ended before it could be killed"
        time.sleep(0.05)
    raise AssertionError(f"no epoch {epoch} within the time limit")


@pytest.mark.slow
def test_run_killed_with_sigkill_resumes_and_completes(tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "digitlab", "train"]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(
        [
            *command,
            "--limit",
            "3000",
            "--epochs",
            "3",
            "--batch-size",
            "16",
            "--set",
            "model_options.hidden_units=[256]",
            "--out",
            str(run_dir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    try:
        _wait_for_epoch(process, run_dir / "checkpoints" / "state.json", 1)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    # The kill may land anywhere after the commit of epoch 1, even before history.csv is
    # rewritten: the committed state is what the run resumes from.
    state = json.loads((run_dir / "checkpoints" / "state.json").read_text())
    before = state["history"]
    assert 1 <= len(before) < 3
    assert not (run_dir / "summary.json").exists()

    resumed = subprocess.run(
        [*command, "--resume", str(run_dir)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.strip().splitlines()[-1].startswith("Best validation accuracy")
    assert f"run folder: {run_dir}" in resumed.stdout

    history = read_history(run_dir)
    assert [int(row["epoch"]) for row in history] == [1, 2, 3]
    for row, committed in zip(history, before, strict=False):
        assert {key: float(value) for key, value in row.items()} == committed
    # The cosine schedule reaches exactly zero at the last step only if the optimizer's
    # step count was restored: proof that the optimizer state came back.
    assert float(history[-1]["learning_rate"]) == pytest.approx(0.0, abs=1e-9)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs_completed"] == 3
    assert len(list((run_dir / "checkpoints").glob("train-state-*.weights.h5"))) == 1
    assert load_keras_model(run_dir / "model.keras").count_params() == summary["params"]


def test_a_ctrl_c_that_python_swallowed_still_stops_training_at_the_next_batch():
    callback = StopOnCtrlC()
    with callback.catching_ctrl_c():
        with contextlib.suppress(KeyboardInterrupt):  # as a garbage-collector callback would
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        with pytest.raises(KeyboardInterrupt):
            callback.on_train_batch_end(0)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    callback.pressed.clear()
    callback.on_train_batch_end(1)


@pytest.mark.slow
def test_run_interrupted_before_its_first_epoch_resumes_from_epoch_zero(tmp_path):
    run_dir = tmp_path / "run"
    # An epoch long enough (hundreds of steps) that the interrupt lands in it on a busy machine.
    settings = ["--limit", "20000", "--epochs", "1", "--batch-size", "32", "--no-augment"]
    settings += ["--set", "model_options.hidden_units=[64]"]
    stderr_path = tmp_path / "stderr.txt"
    with open(stderr_path, "w") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "digitlab", "train", *settings, "--out", str(run_dir)],
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "config.json").exists():
            assert process.poll() is None, "training ended before it could be interrupted"
            assert time.monotonic() < deadline, "no config.json within the time limit"
            time.sleep(0.01)
        # One press is enough, even when it lands in a garbage-collector callback that
        # swallows the interrupt (training.interrupts). A second during the exit kills it.
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()
    stderr = stderr_path.read_text()
    # 130 is what a shell shows for a program stopped by Ctrl-C, whether it exits with 130
    # or dies of the signal. Two full-suite runs (of more than a dozen) ended by the
    # signal after printing the hint, with no traceback; never reproduced in isolation.
    assert process.returncode in (130, -signal.SIGINT), stderr[-2000:]
    assert not (run_dir / "checkpoints" / "state.json").exists()
    hint = stderr.strip().splitlines()[-1]
    assert hint.endswith(f"digitlab train --resume {run_dir}"), stderr[-2000:]

    refused = CliRunner().invoke(app, ["train", *settings, "--out", str(run_dir)])
    assert refused.exit_code == 1
    assert f"holds a run already; continue it with --resume {run_dir}" in refused.output

    result = train(resume=run_dir, verbose=0)
    assert result.epochs_completed == 1
    assert [int(row["epoch"]) for row in read_history(run_dir)] == [1]
    assert (run_dir / "model.keras").is_file()


@pytest.mark.slow
def test_nan_loss_stops_the_run_keeping_the_last_good_epoch(tmp_path):
    config = _small_config(epochs=2)
    import keras

    class PoisonSecondEpoch(keras.callbacks.Callback):
        """Turns every weight into NaN in the second epoch, as lr = inf does."""

        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1:
                for variable in self.model.trainable_variables:
                    variable.assign(keras.ops.full(variable.shape, float("nan")))

    run_dir = tmp_path / "run"
    with pytest.raises(TrainingDivergedError, match=r"diverged in epoch 2 \(.*nan.*keeps epoch 1"):
        train(config, out=run_dir, verbose=0, callbacks=[PoisonSecondEpoch()])
    folder = RunFolder(run_dir)
    assert folder.read_state().epochs_completed == 1
    assert [int(row["epoch"]) for row in read_history(run_dir)] == [1]
    assert not folder.summary.exists() and not folder.model.exists()

    result = train(resume=run_dir, verbose=0)
    assert result.epochs_completed == 2
    assert all(np.isfinite(row["loss"]) for row in result.history)

    # Resuming clears what a kill -9 leaves, and nothing else.
    leftovers = [folder.checkpoints / train_state_name(1)]
    leftovers[0].write_bytes(b"")
    leftovers += [leave_temporary(path) for path in (folder.best_checkpoint, folder.curves)]
    notes = run_dir / "notes.txt"
    notes.write_text("mine")
    train(resume=run_dir, verbose=0)
    assert not any(path.exists() for path in leftovers)
    assert notes.read_text() == "mine"
    assert [p.name for p in folder.checkpoints.glob("train-state-*")] == [train_state_name(2)]


def test_resume_from_truncated_weights_names_the_file(tmp_path):
    config = _small_config(epochs=1)
    run_dir = tmp_path / "run"
    train(config, out=run_dir, verbose=0)
    weights = run_dir / "checkpoints" / RunFolder(run_dir).read_state().train_state
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ConfigError, match=rf"{weights}: cannot resume from these weights"):
        train(resume=run_dir, verbose=0)

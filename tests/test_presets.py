"""Training presets: what they set, how settings stack on them, and a real short `fast` run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.errors import ConfigError
from digitlab.inference.calibration import temperature_of, uncalibrated_probabilities
from digitlab.inference.modelfile import load_keras_model
from digitlab.training.config import TrainConfig, make_config
from digitlab.training.presets import PRESETS


def test_fast_preset_sets_its_model_schedule_and_smoothing():
    config = make_config(preset="fast")
    assert config.preset == "fast"
    assert (config.model, config.epochs, config.batch_size) == ("strided", 2, 256)
    assert config.label_smoothing == pytest.approx(0.1)
    assert config.augment is False
    # Everything the preset does not name keeps the default.
    assert config.val_fraction == TrainConfig().val_fraction


def test_config_file_and_flags_override_a_preset(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "fast"\nbatch_size = 128\n')
    config = make_config(toml, {"epochs": 1})
    assert config.preset == "fast" and config.model == "strided"
    assert (config.batch_size, config.epochs) == (128, 1)
    assert make_config(preset="fast", overrides={"model": "cnn"}).model == "cnn"


def test_unknown_preset_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'turbo'; valid presets: fast"):
        make_config(preset="turbo")
    result = CliRunner().invoke(app, ["train", "--preset", "turbo", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: unknown preset 'turbo'; valid presets: {', '.join(PRESETS)}"
    ]
    assert not (tmp_path / "r").exists()


def test_unknown_preset_in_a_config_file_names_the_file(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('preset = "turbo"\n')
    with pytest.raises(ConfigError, match=r"run\.toml: unknown preset 'turbo'"):
        make_config(toml)


def test_label_smoothing_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="label_smoothing must be in"):
        make_config(overrides={"label_smoothing": 1.5})


@pytest.mark.slow
def test_fast_preset_trains_the_strided_model_with_smoothed_labels(tmp_path, mnist):
    out = tmp_path / "fast"
    result = CliRunner().invoke(
        app, ["train", "--preset", "fast", "--limit", "4000", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["preset"] == "fast" and saved["label_smoothing"] == pytest.approx(0.1)
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 2

    model = load_keras_model(out / "model.keras")
    assert model.name == "strided"
    (_, _), (x_test, y_test) = mnist
    probabilities = model.predict(x_test[:2000], verbose=0)
    assert np.mean(probabilities.argmax(axis=1) == y_test[:2000]) > 0.9
    # Smoothed targets (0.91 for the true class) keep the trained model from near-certain
    # answers; the temperature fitted after training then sharpens them again.
    trained = uncalibrated_probabilities(probabilities, temperature_of(model))
    assert np.median(trained.max(axis=1)) < 0.97

"""The training configuration: strict types, finite numbers, sane sizes, one-line errors, and
`digitlab train --help` showing the defaults the model holds."""

from __future__ import annotations

import inspect
import re

import pytest
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.errors import ConfigError
from digitlab.training.augment import DigitAugmentation
from digitlab.training.config import AugmentationSettings, TrainConfig, make_config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 2.5}, "epochs must be an integer, got 2.5"),
        ({"batch_size": True}, "batch_size must be an integer, got True"),
        ({"augment": 1}, "augment must be true or false, got 1"),
        ({"lr": "fast"}, "lr must be a number, got 'fast'"),
        ({"dataset": 3}, "dataset must be a string, got 3"),
        ({"model_options": [1]}, r"model_options must be a table, got \[1\]"),
        ({"lr_schedule": "linear"}, "lr_schedule 'linear' is unknown; valid: constant, cosine"),
        ({"model": "vgg"}, "model 'vgg' is unknown; valid models: mlp"),
    ],
)
def test_settings_are_strictly_typed(overrides, message):
    with pytest.raises(ConfigError, match=f"^command line: {message}"):
        make_config(overrides=overrides)


def test_a_number_setting_takes_an_integer_as_a_float():
    config = make_config(overrides={"lr": 1, "augmentation.rotation": 5})
    assert isinstance(config.lr, float) and config.lr == 1.0
    assert config.augmentation == {"rotation": 5.0}


def test_every_problem_is_reported_in_one_line_naming_the_source(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('epochs = 0\nlr = -1\nval_fraction = 1.5\n[augmentation]\nzoom = "big"\n')
    with pytest.raises(ConfigError) as raised:
        make_config(path)
    assert str(raised.value) == (
        f"{path}: epochs must be at least 1, got 0; lr must be positive, got -1; "
        "val_fraction must be between 0 and 1, got 1.5; "
        "augmentation.zoom must be a number, got 'big'"
    )


def test_building_a_config_directly_raises_a_config_error():
    with pytest.raises(ConfigError, match="^TrainConfig: threads must be at least 1, got 0$"):
        TrainConfig(threads=0)


def test_a_config_is_immutable():
    config = TrainConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.epochs = 3  # type: ignore[misc]
    assert config.model_copy(update={"epochs": 3}).epochs == 3


def test_augmentation_keys_are_those_of_the_layer():
    parameters = set(inspect.signature(DigitAugmentation.__init__).parameters)
    assert set(AugmentationSettings.__annotations__) == parameters - {"self", "seed", "kwargs"}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("warmup_epochs=nan", "warmup_epochs must be a finite number, got nan"),
        ("warmup_epochs=inf", "warmup_epochs must be a finite number, got inf"),
        ("lr=inf", "lr must be a finite number, got inf"),
        ("augmentation.shift=nan", "augmentation.shift must be a finite number, got nan"),
        ("augmentation.rotation=ten", "augmentation.rotation must be a number, got 'ten'"),
        ("augmentation.rotation=90", "augmentation.rotation must be at most 45"),
        ("augmentation.elastic_sigma=0", "augmentation.elastic_sigma must be at least 0.5"),
        ("augmentation.tilt=3", "unknown key 'augmentation.tilt'; valid keys: rotation, shear"),
        ("threads=100000", "threads must be at most 1024, got 100000"),
        ("device=cpu:100000", "device 'cpu:100000' splits the CPU into 100000 devices; at most 64"),
        ("device=/cpu:0,/cpu:99", "device '/cpu:0,/cpu:99' splits the CPU into 100 devices"),
        ("batch_size=100000000", "batch_size must be at most 65536, got 100000000"),
        ("epochs=1000000", "epochs must be at most 10000, got 1000000"),
        ("limit=10000000000", "limit must be at most 100000000, got 10000000000"),
        ("seed=-1", "seed must be at least 0, got -1"),
    ],
)
def test_train_refuses_non_finite_numbers_and_absurd_sizes_in_one_line(tmp_path, setting, message):
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--set", setting, "--out", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: command line: {message}"), lines
    assert not out.exists()


def _option_help(output: str, flag: str) -> str:
    """The help of option `flag` in `--help` output: its line and those that continue it."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if f" {flag} " in line)
    block = [lines[start]]
    for line in lines[start + 1 :]:
        if re.search(r"│ +--", line) or not line.startswith("│"):
            break
        block.append(line)
    return " ".join(" ".join(line.strip("│ ").split()) for line in block)


def test_train_help_shows_every_setting_with_its_default_from_the_config():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    unset = {"limit": "all", "threads": "all cores", "device": "auto"}
    settings = ["model", "epochs", "batch_size", "augment", "lr", "val_fraction", "seed"]
    for name in [*settings, "dataset", "limit", "threads", "device"]:
        field = TrainConfig.model_fields[name]
        shown = unset.get(name, "on" if field.default is True else str(field.default))
        text = _option_help(result.output, "--" + name.replace("_", "-"))
        assert field.description is not None and field.description in text, text
        assert text.endswith(f"[default: ({shown})]"), text

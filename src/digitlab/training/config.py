"""The training configuration: one dataclass, filled from defaults, a TOML file, then flags.

    config = make_config(Path("train.toml"), {"epochs": 5, "model_options.dropout": 0.2})

A TOML file sets the same keys as the dataclass fields, with the tables `[model_options]`
(keyword arguments of the model builder, e.g. `hidden_units = [512, 512]`) and
`[augmentation]` (e.g. `rotation = 10.0`). Overrides use the same names, with a dot for a
table entry. Anything unknown or out of range raises `ConfigError` naming where it came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from digitlab.errors import ConfigError
from digitlab.training.devices import parse_device

LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Every setting of a training run. The defaults are the reference `mlp` run."""

    model: str = "mlp"
    """Registered model name (see `digitlab.models.list_models()`)."""
    epochs: int = 30
    batch_size: int = 64
    augment: bool = True
    """Digit-safe augmentation (affine + elastic) of the training images."""
    lr: float = 2e-3
    """Adam learning rate (the peak of the schedule)."""
    lr_schedule: str = "cosine"
    """`constant`, or `cosine`: linear warm-up, then cosine decay to zero at the last step."""
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    """Share of each target's probability spread evenly over all classes (0: none)."""
    val_fraction: float = 0.1
    """Share of the training set held out for validation, stratified by class."""
    seed: int = 0
    dataset: str = "mnist"
    """`mnist`, `fashion-mnist`, or a path to an IDX folder or a class-folder tree."""
    limit: int | None = None
    """Train on a stratified subset of this many training images (before the split)."""
    steps_per_execution: int = 32
    """Training steps run per call into the compiled graph: fewer Python round trips."""
    jit_compile: bool | None = None
    """Compile the training step with XLA; None (auto): on for models without convolutions
    and always on the JAX backend. On this CPU XLA made the reference mlp's step 1.65x
    faster but convolutional models 1.5-2x slower (docs/results.md)."""
    threads: int | None = None
    """TensorFlow's intra-op and inter-op thread counts (None: every core the process may use,
    or TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS where set). See `training.devices`."""
    device: str | None = None
    """auto (None), cpu, gpu, cpu:N (the CPU split in N, mirrored) or devices like /gpu:0,/gpu:1."""
    preset: str | None = None
    """The preset these settings started from (see `digitlab.training.presets`), for the record."""
    model_options: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the model builder."""
    augmentation: dict[str, float] = field(default_factory=dict)
    """Overrides of `DigitAugmentation`'s settings (rotation, shear, zoom, shift, elastic_*)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


_TABLES = ("model_options", "augmentation")


def _field_types() -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(TrainConfig)}


def _coerce(key: str, value: Any, source: str) -> Any:
    """Check `value` against the type of field `key`; return it in that type."""
    kind = _field_types()[key]

    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{source}: {key} must be {expected}, got {value!r}")

    if kind in ("bool", "bool | None"):
        if value is None and kind == "bool | None":
            return None
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind in ("int", "int | None"):
        if value is None and kind == "int | None":
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if kind in ("str", "str | None"):
        if value is None and kind == "str | None":
            return None
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if not isinstance(value, Mapping):
        raise bad("a table")
    return dict(value)


def _check_ranges(config: TrainConfig, source: str) -> None:
    from digitlab.models import MODELS

    problems = []
    if config.model not in MODELS:
        problems.append(f"model {config.model!r} is unknown; valid models: {', '.join(MODELS)}")
    for key in ("epochs", "batch_size", "steps_per_execution"):
        if getattr(config, key) < 1:
            problems.append(f"{key} must be at least 1, got {getattr(config, key)}")
    if not config.lr > 0:
        problems.append(f"lr must be positive, got {config.lr}")
    if config.lr_schedule not in LR_SCHEDULES:
        problems.append(
            f"lr_schedule {config.lr_schedule!r} is unknown; valid: {', '.join(LR_SCHEDULES)}"
        )
    if not 0 <= config.label_smoothing < 1:
        problems.append(f"label_smoothing must be in [0, 1), got {config.label_smoothing}")
    if config.warmup_epochs < 0:
        problems.append(f"warmup_epochs must be >= 0, got {config.warmup_epochs}")
    if not 0 < config.val_fraction < 1:
        problems.append(f"val_fraction must be between 0 and 1, got {config.val_fraction}")
    if config.limit is not None and config.limit < 2:
        problems.append(f"limit must be at least 2, got {config.limit}")
    if config.threads is not None and config.threads < 1:
        problems.append(f"threads must be at least 1, got {config.threads}")
    try:
        parse_device(config.device)
    except ConfigError as error:
        problems.append(str(error))
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


def apply_settings(config: TrainConfig, settings: Mapping[str, Any], source: str) -> TrainConfig:
    """Return a copy of `config` with `settings` applied and checked.

    `settings` maps field names (or `table.key` for `model_options` and `augmentation`)
    to values. `source` names where they came from, for the error message. Raises
    `ConfigError` for an unknown key, a value of the wrong type or out of range.
    """
    fields = _field_types()
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        table, _, entry = key.partition(".")
        if entry:
            if table not in _TABLES:
                raise ConfigError(f"{source}: unknown key {key!r}; only {_TABLES} take a dot")
            merged = dict(changes.get(table, getattr(config, table)))
            merged[entry] = value
            changes[table] = merged
        elif key in fields:
            changes[key] = _coerce(key, value, source)
        else:
            raise ConfigError(f"{source}: unknown key {key!r}; valid keys: {', '.join(fields)}")
    updated = dataclasses.replace(config, **changes)
    _check_ranges(updated, source)
    return updated


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a TOML config file. Raises `ConfigError` if unreadable or invalid."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: not a valid TOML config file ({error})") from None


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `KEY=VALUE` override; VALUE is read as TOML (`[512, 512]`, `0.2`, `true`),
    or taken as a plain string when it is not valid TOML. Raises `ConfigError` without `=`."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r}: expected KEY=VALUE")
    try:
        value = tomllib.loads(f"value = {raw.strip()}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.strip(), value


def make_config(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: TrainConfig | None = None,
    preset: str | None = None,
) -> TrainConfig:
    """Build a `TrainConfig`: `base` (default: the defaults), then the preset, then the TOML
    file, then overrides.

    `preset` names one of `training.presets.PRESETS`; without it, a `preset` key in the TOML
    file chooses one. Raises `ConfigError` naming the file or "command line" and the
    offending key.
    """
    from digitlab.training.presets import preset_settings

    config = base or TrainConfig()
    settings = _flatten(read_toml(config_file)) if config_file is not None else {}
    # The preset argument wins over the file's `preset` key.
    file_preset = settings.pop("preset", None)
    if preset is None and file_preset is not None:
        try:
            config = apply_settings(config, preset_settings(file_preset), "preset")
        except ConfigError as error:
            raise ConfigError(f"{config_file}: {error}") from None
    elif preset is not None:
        config = apply_settings(config, preset_settings(preset), "preset")
    if settings:
        config = apply_settings(config, settings, str(config_file))
    if overrides:
        config = apply_settings(config, overrides, "command line")
    return config


def _flatten(settings: Mapping[str, Any]) -> dict[str, Any]:
    """TOML tables `[model_options]` and `[augmentation]` become dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if key in _TABLES and isinstance(value, Mapping):
            flat.update({f"{key}.{entry}": item for entry, item in value.items()})
        else:
            flat[key] = value
    return flat


def config_from_json(path: str | os.PathLike[str]) -> TrainConfig:
    """Read the `TrainConfig` a run wrote to its `config.json` (ignoring the versions).

    Raises `ConfigError` if the file is missing, not JSON, or holds invalid settings.
    """
    path = Path(path)
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; is this a digitlab run folder?") from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path}: unreadable run config ({error})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: unreadable run config (not a JSON object)")
    names = set(_field_types())
    return apply_settings(
        TrainConfig(), _flatten({k: v for k, v in saved.items() if k in names}), str(path)
    )

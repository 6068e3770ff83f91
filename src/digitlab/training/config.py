"""The training configuration: one validated pydantic model, filled from defaults, a preset,
a TOML file, then flags.

    config = make_config(Path("train.toml"), {"epochs": 5, "model_options.dropout": 0.2})

A TOML file sets the same keys as the model's fields, with the tables `[model_options]`
(keyword arguments of the model builder, e.g. `hidden_units = [512, 512]`) and
`[augmentation]` (e.g. `rotation = 10.0`). Overrides use the same names, with a dot for a
table entry. Anything unknown, of the wrong type, not finite or out of range raises one
`ConfigError` naming where it came from; the field descriptions are also the help of
`digitlab train`'s options.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict

from digitlab.errors import ConfigError
from digitlab.training.devices import parse_device

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

# Strict: an integer setting refuses 2.5 and true, a switch refuses 1, a string refuses 3;
# a number setting takes an integer. No setting is NaN or infinite: such a value trains to a
# loss of nan, or spins, rather than failing.
_STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

MAX_THREADS = 1024
"""Threads per TensorFlow pool: above the largest servers' hardware threads (a few hundred),
far below the count whose stacks exhaust memory. A fixed bound rather than this machine's
cores, so a config file or a run's config.json reads the same on every machine."""
MAX_LOGICAL_CPUS = 64
"""Logical CPU devices of `cpu:N` or `/cpu:K`: the split exists to try mirrored training,
and each device costs TensorFlow start-up time; a huge N stalls with no output."""


@with_config(_STRICT)
class AugmentationSettings(TypedDict, total=False):
    """Overrides of `DigitAugmentation`'s settings (training/augment.py), each optional.

    The ranges are those the layer enforces (rotation, shear, zoom), and for the others the
    values beyond which a 28 x 28 digit no longer stays a digit: a shift past half the image
    moves it out of the frame, a smoothing width under half a pixel or a displacement scale
    above 100 pixels scrambles its strokes, a width beyond the image makes the field a shift.
    """

    rotation: Annotated[float, Field(ge=0, le=45)]
    shear: Annotated[float, Field(ge=0, le=45)]
    zoom: Annotated[float, Field(ge=0, le=0.5)]
    shift: Annotated[float, Field(ge=0, le=14)]
    elastic_alpha: Annotated[float, Field(ge=0, le=100)]
    elastic_sigma: Annotated[float, Field(ge=0.5, le=28)]


class TrainConfig(BaseModel):
    """Every setting of a training run. The defaults are the reference `mlp` run.

    Immutable: `config.model_copy(update=...)` or `apply_settings` make a changed copy.
    Constructing one with a bad value raises `ConfigError`.
    """

    # The validators are built on first use: `digitlab --help` only reads the fields.
    model_config = ConfigDict(**_STRICT, frozen=True, defer_build=True)

    model: str = Field(
        default="mlp", description="Registered model name: mlp, cnn, resnet or strided"
    )
    epochs: int = Field(default=30, ge=1, le=10_000, description="Epochs to train")
    batch_size: int = Field(
        default=64,
        ge=1,
        # Above every training set digitlab reads (MNIST: 60,000): one step per epoch.
        le=65_536,
        description="Images per step, over all devices and processes",
    )
    augment: bool = Field(
        default=True, description="Digit-safe augmentation: rotation, shift, zoom, shear, elastic"
    )
    lr: float = Field(
        default=2e-3, gt=0, description="Adam learning rate, the peak of the schedule"
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="cosine",
        description="constant, or cosine: linear warm-up, then cosine decay to zero at the "
        "last step",
    )
    warmup_epochs: float = Field(
        default=1.0, ge=0, description="Epochs of linear warm-up of the cosine schedule"
    )
    label_smoothing: float = Field(
        default=0.0,
        description="Share of each target's probability spread evenly over all classes "
        "(0: none), below 1",
    )
    val_fraction: float = Field(
        default=0.1, description="Share of the training set held out for validation, stratified"
    )
    seed: int = Field(
        default=0,
        ge=0,
        # The range of the seeds NumPy and scikit-learn's splits take.
        le=2**32 - 1,
        description="Random seed of the split, the weights and the augmentation",
    )
    dataset: str = Field(
        default="mnist",
        description="mnist, fashion-mnist, or PATH to an IDX folder or a class-folder tree",
    )
    limit: int | None = Field(
        default=None,
        ge=2,
        # A hundred million images: 78 GB of pixels, beyond any set this loads in memory.
        le=100_000_000,
        description="Train on a stratified subset of N training images (before the split)",
    )
    steps_per_execution: int = Field(
        default=32,
        ge=1,
        description="Training steps run per call into the compiled graph: fewer Python round trips",
    )
    jit_compile: bool | None = Field(
        default=None,
        description="Compile the training step with XLA; unset (auto): on for models "
        "without convolutions and always on the JAX backend, where it pays off "
        "(docs/results.md)",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        le=MAX_THREADS,
        description="TensorFlow threads per pool (intra-op and inter-op); without it, "
        "TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS where set, else every core this "
        "process may use",
    )
    device: str | None = Field(
        default=None,
        description="auto (every GPU when there are several), cpu, gpu, cpu:N (split the "
        "CPU into N devices and mirror over them, to try multi-device training), or "
        "TensorFlow devices to mirror over, e.g. /gpu:0,/gpu:1",
    )
    preset: str | None = Field(
        default=None,
        description="The preset these settings started from (training/presets.py), for the record",
    )
    model_options: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the model builder"
    )
    augmentation: AugmentationSettings = Field(
        default_factory=lambda: AugmentationSettings(),
        description="Overrides of DigitAugmentation's settings (rotation, shear, zoom, "
        "shift, elastic_alpha, elastic_sigma)",
    )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (tuples become lists)."""
        return self.model_dump(mode="json")

    @field_validator("model")
    @classmethod
    def _registered_model(cls, name: str) -> str:
        from digitlab.models import MODELS

        if name not in MODELS:
            raise ValueError(f"model {name!r} is unknown; valid models: {', '.join(MODELS)}")
        return name

    @field_validator("label_smoothing")
    @classmethod
    def _smoothing_below_one(cls, share: float) -> float:
        if not 0 <= share < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {share}")
        return share

    @field_validator("val_fraction")
    @classmethod
    def _fraction_inside(cls, fraction: float) -> float:
        if not 0 < fraction < 1:
            raise ValueError(f"val_fraction must be between 0 and 1, got {fraction}")
        return fraction

    @field_validator("device")
    @classmethod
    def _known_device(cls, spec: str | None) -> str | None:
        try:
            request = parse_device(spec)
        except ConfigError as error:
            raise ValueError(str(error)) from None
        if request.logical_cpus > MAX_LOGICAL_CPUS:
            raise ValueError(
                f"device {spec!r} splits the CPU into {request.logical_cpus} devices; "
                f"at most {MAX_LOGICAL_CPUS}"
            )
        return spec

    @model_validator(mode="wrap")
    @classmethod
    def _one_line_errors(
        cls, data: Any, handler: ModelWrapValidatorHandler[TrainConfig], info: ValidationInfo
    ) -> TrainConfig:
        """Turn pydantic's report into one `ConfigError` naming the source: the validation
        context when `apply_settings` gives one, else the class name."""
        try:
            return handler(data)
        except ValidationError as error:
            source = info.context if isinstance(info.context, str) else cls.__name__
            problems = "; ".join(_describe(detail) for detail in error.errors())
            raise ConfigError(f"{source}: {problems}") from None


_TABLES = ("model_options", "augmentation")
_EXPECTED = {
    "int_type": "an integer",
    "bool_type": "true or false",
    "float_type": "a number",
    "finite_number": "a finite number",
    "string_type": "a string",
    "dict_type": "a table",
}
"""What a value of the wrong type should have been, by pydantic error type."""
_BOUNDS = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "below"}


def _describe(error: ErrorDetails) -> str:
    """One short phrase for one pydantic error: the dotted key, what it must be, the value."""
    key = ".".join(str(part) for part in error["loc"])
    kind, value, context = error["type"], error["input"], error.get("ctx", {})
    if kind == "value_error":
        # The validators' own messages name the key.
        return str(context["error"])
    if kind == "extra_forbidden":
        valid = AugmentationSettings.__annotations__ if "." in key else TrainConfig.model_fields
        return f"unknown key {key!r}; valid keys: {', '.join(valid)}"
    if kind == "literal_error":
        choices = get_args(TrainConfig.model_fields[key].annotation)
        return f"{key} {value!r} is unknown; valid: {', '.join(choices)}"
    if kind in _EXPECTED:
        return f"{key} must be {_EXPECTED[kind]}, got {value!r}"
    bound = next((name for name in _BOUNDS if name in context), None)
    if bound is not None:
        limit = context[bound]
        expected = "positive" if (bound, limit) == ("gt", 0) else f"{_BOUNDS[bound]} {limit}"
        return f"{key} must be {expected}, got {value!r}"
    return f"{key}: {error['msg']}, got {value!r}"


def apply_settings(config: TrainConfig, settings: Mapping[str, Any], source: str) -> TrainConfig:
    """Return a copy of `config` with `settings` applied and checked.

    `settings` maps field names (or `table.key` for `model_options` and `augmentation`)
    to values. `source` names where they came from, for the error message. Raises one
    `ConfigError` for every unknown key and every value of the wrong type or out of range.
    """
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        table, _, entry = key.partition(".")
        if not entry:
            changes[key] = value
            continue
        if table not in _TABLES:
            raise ConfigError(f"{source}: unknown key {key!r}; only {_TABLES} take a dot")
        current = changes.get(table, getattr(config, table))
        # A table replaced by a non-table earlier in `settings` is reported by validation.
        if isinstance(current, Mapping):
            changes[table] = {**current, entry: value}
    return TrainConfig.model_validate({**config.model_dump(), **changes}, context=source)


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
    names = set(TrainConfig.model_fields)
    return apply_settings(
        TrainConfig(), _flatten({k: v for k, v in saved.items() if k in names}), str(path)
    )

"""Ensembles: several trained models' probabilities averaged in one self-contained Keras model.

The ensemble takes the same raw pixels as its members and returns the mean of their softmax
probabilities. Members that know "not a digit" (11 outputs: 10 probabilities, then the digit
score, `digit_score.py`) average their digit scores too, each already scaled so that its own
threshold is 0.5; a member without that score cannot join them. With test-time
augmentation (TTA) every member also sees the image shifted by one pixel up, down, left and
right, and the mean runs over every (member, view) pair.

Only stock Keras layers are used (Reshape, ZeroPadding2D, Cropping2D, Average; the members
are nested functional models named member_1..member_n), so the saved file loads with plain
`keras.models.load_model(path, safe_mode=True)` without digitlab, exports to SavedModel, ONNX
and TFLite, and gives the same output on every call: the views are fixed shifts, not random.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from digitlab.atomic import atomic_path
from digitlab.errors import ConfigError, DataError, ModelError
from digitlab.inference.digit_score import NOT_DIGIT_OUTPUTS
from digitlab.tables import text_table
from digitlab.training.run_folder import MODEL_FILE, SUMMARY_FILE, RunFolder

if TYPE_CHECKING:
    import keras

TTA_SHIFTS: dict[str, tuple[int, int]] = {
    "up": (-1, 0),
    "down": (1, 0),
    "left": (0, -1),
    "right": (0, 1),
}
"""The test-time views besides the original: name -> (rows, columns) the image moves by."""


@dataclass(frozen=True)
class EnsembleMember:
    """One member as loaded: its model file, its own model name and its classes if known."""

    path: Path
    model_name: str
    class_names: tuple[str, ...] | None


@dataclass(frozen=True)
class EnsembleResult:
    """What `ensemble_runs` wrote: the file, its members (in order), views and parameters."""

    out: Path
    members: tuple[EnsembleMember, ...]
    views: tuple[str, ...]
    params: int
    size_bytes: int

    def summary_text(self) -> str:
        """A few lines for people: members and their files, views, parameters, output."""
        members = text_table(
            [
                [f"member_{number}", member.model_name, member.path]
                for number, member in enumerate(self.members, start=1)
            ]
        )
        lines = [f"ensemble of {len(self.members)} models, averaging their probabilities"]
        lines += [f"  {line}" for line in members.splitlines()]
        lines.append(f"views per member: {len(self.views)} ({', '.join(self.views)})")
        lines.append(f"parameters: {self.params:,}")
        lines.append(f"wrote {self.out} ({self.size_bytes / 1e6:.2f} MB)")
        return "\n".join(lines) + "\n"


def view_names(tta: bool) -> tuple[str, ...]:
    """The views each member sees: the original, plus the shifted ones with `tta`."""
    return ("original", *TTA_SHIFTS) if tta else ("original",)


def build_ensemble(
    members: Sequence[keras.Model], tta: bool = False, name: str = "ensemble"
) -> keras.Model:
    """One Keras model averaging the probabilities of `members` (over shifted views with `tta`).

    Every member must be a functional or Sequential model with one input and one output of
    shape (N, classes), all with the same input shape and number of classes; the members are
    not changed (the ensemble shares their weights). With `tta` the input must be images,
    H x W or H x W x C. Raises `ModelError` for fewer than two members, the same model given
    twice, or members that do not fit together.
    """
    labels = [f"member {number} (model {model.name!r})" for number, model in enumerate(members, 1)]
    input_shape, _ = _check_members(members, labels)
    import keras
    from keras import layers

    pixels = keras.Input(shape=input_shape, name="pixels")
    views = _views(pixels, input_shape, labels[0]) if tta else [pixels]
    wrapped = [
        # A new functional model over the member's own layers: a unique name, no copy.
        keras.Model(model.inputs[0], model.outputs[0], name=f"member_{number}")
        for number, model in enumerate(members, start=1)
    ]
    outputs = [member(view) for member in wrapped for view in views]
    probabilities = layers.Average(name="probabilities")(outputs)
    return keras.Model(pixels, probabilities, name=name)


def _check_members(
    members: Sequence[keras.Model], labels: Sequence[str]
) -> tuple[tuple[int, ...], int]:
    """The members' common input shape and class count; `ModelError` naming a misfit."""
    if len(members) < 2:
        raise ModelError(f"an ensemble needs at least 2 models, got {len(members)}")
    if len({id(model) for model in members}) < len(members):
        raise ModelError("the same model object is given twice; an ensemble needs distinct models")
    shapes = [_signature(model, label) for model, label in zip(members, labels, strict=True)]
    (input_shape, num_classes), first = shapes[0], labels[0]
    for (shape, classes), label in zip(shapes[1:], labels[1:], strict=True):
        if shape != input_shape:
            raise ModelError(f"{label}: takes input {shape} but {first} takes {input_shape}")
        if NOT_DIGIT_OUTPUTS in (classes, num_classes) and classes != num_classes:
            knows, lacks = (label, first) if classes == NOT_DIGIT_OUTPUTS else (first, label)
            raise ModelError(
                f"{knows}: adds a not-a-digit score to its 10 digits but {lacks} does not; "
                "ensemble models that all have one, or none"
            )
        if classes != num_classes:
            raise ModelError(
                f"{label}: predicts {classes} classes but {first} predicts {num_classes}"
            )
    return input_shape, num_classes


def _signature(model: keras.Model, label: str) -> tuple[tuple[int, ...], int]:
    """(input shape without the batch axis, number of classes) of a one-in, one-out model."""
    try:
        input_shape, output_shape = model.input_shape, model.output_shape
    except (AttributeError, ValueError):
        raise ModelError(
            f"{label}: has no fixed input; ensembles take functional or Sequential Keras models"
        ) from None
    one_input = isinstance(input_shape, tuple) and all(
        isinstance(size, int | None) for size in input_shape
    )
    one_output = (
        isinstance(output_shape, tuple)
        and len(output_shape) == 2
        and isinstance(output_shape[-1], int)
    )
    if not (one_input and one_output):
        raise ModelError(
            f"{label}: expected one input and one output of class probabilities (N x classes), "
            f"got input {input_shape} and output {output_shape}"
        )
    return tuple(input_shape[1:]), output_shape[-1]


def _views(
    pixels: keras.KerasTensor, input_shape: tuple[int, ...], label: str
) -> list[keras.KerasTensor]:
    """The original input and its copies shifted by `TTA_SHIFTS`, zeros filling the gap.

    Zero is the background of raw MNIST-style pixels, so a shifted digit looks like one
    written a pixel off-centre. Padding by one pixel and cropping a 28 x 28 window at an
    offset is the shift; a channel axis is added for the 2-D layers and removed after.
    """
    from keras import layers

    if len(input_shape) not in (2, 3) or None in input_shape:
        raise ModelError(
            f"{label}: test-time shifts need images of a fixed size (H x W or H x W x C), "
            f"but the model takes {input_shape}"
        )
    height, width = input_shape[:2]
    channels = input_shape[2] if len(input_shape) == 3 else 1
    with_channel = layers.Reshape((height, width, channels), name="add_channel")(pixels)
    padded = layers.ZeroPadding2D(padding=1, name="pad")(with_channel)
    views = [pixels]
    for view, (rows, columns) in TTA_SHIFTS.items():
        cropping = ((1 - rows, 1 + rows), (1 - columns, 1 + columns))
        shifted = layers.Cropping2D(cropping, name=f"crop_{view}")(padded)
        views.append(layers.Reshape(input_shape, name=f"view_{view}")(shifted))
    return views


def ensemble_runs(
    run_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    tta: bool = False,
    force: bool = False,
) -> EnsembleResult:
    """Average the models of several runs into one `.keras` file at `out`.

    Each entry of `run_dirs` is a digitlab run folder (its `model.keras` is used, and its
    `summary.json`'s class names when present) or a `.keras` file (class names are read from
    a `summary.json` beside it when there is one). The models are loaded in safe mode; `out`
    is written atomically and replaced only with `force`. Returns what was written.

    Raises `ConfigError` for an `out` that exists (without `force`), does not end in
    `.keras` or is one of the members, and for a path given twice; `ModelError` for a
    missing or unloadable model, fewer than two models, or models whose input shape, class
    count or class names differ.
    """
    from digitlab.inference.modelfile import load_keras_model

    out = Path(out)
    paths = [_member_model_path(Path(run_dir)) for run_dir in run_dirs]
    _check_out(out, paths, force)
    if len(paths) < 2:
        raise ModelError(f"an ensemble needs at least 2 models, got {len(paths)}")
    models = [load_keras_model(path) for path in paths]
    members = tuple(
        EnsembleMember(path, model.name, _class_names(path))
        for path, model in zip(paths, models, strict=True)
    )
    _check_members(models, [str(path) for path in paths])
    _check_class_names(members)
    ensemble = build_ensemble(models, tta=tta, name=f"ensemble_of_{len(models)}")
    with atomic_path(out) as tmp:
        ensemble.save(tmp)
    return EnsembleResult(
        out=out,
        members=members,
        views=view_names(tta),
        params=ensemble.count_params(),
        size_bytes=out.stat().st_size,
    )


def _member_model_path(path: Path) -> Path:
    """The model file of a run folder, or the `.keras` file itself."""
    if path.is_dir():
        model_path = path / MODEL_FILE
        if not model_path.is_file():
            raise ModelError(
                f"{path}: no {MODEL_FILE} in this folder; expected a finished "
                "digitlab run folder or a .keras file"
            )
        return model_path
    if not path.exists():
        raise ModelError(f"{path}: no such run folder or model file")
    return path


def _check_out(out: Path, paths: Sequence[Path], force: bool) -> None:
    if out.suffix != ".keras":
        raise ConfigError(f"{out}: the ensemble's file name must end in .keras")
    resolved = [path.resolve() for path in paths]
    for index, path in enumerate(resolved):
        if path in resolved[:index]:
            raise ConfigError(f"{paths[index]}: given twice; each model joins the ensemble once")
    if out.resolve() in resolved:
        raise ConfigError(f"{out}: is one of the ensemble's members; choose another --out")
    if (out.exists() or out.is_symlink()) and not force:
        raise ConfigError(f"{out}: already exists; use --force (force=True) to replace it")


def _class_names(model_path: Path) -> tuple[str, ...] | None:
    """The class names in the `summary.json` beside a model file, or None if there is none."""
    folder = RunFolder(model_path.parent)
    if not folder.summary.is_file():
        return None
    try:
        names = folder.read_summary().get("class_names")
    except DataError as error:
        raise ModelError(str(error)) from None
    return None if names is None else tuple(map(str, names))


def _check_class_names(members: Sequence[EnsembleMember]) -> None:
    named = [member for member in members if member.class_names is not None]
    for member in named[1:]:
        if member.class_names != named[0].class_names:
            raise ModelError(
                f"{member.path.parent / SUMMARY_FILE}: class names "
                f"{', '.join(member.class_names or ())} differ from "
                f"{', '.join(named[0].class_names or ())} of {named[0].path}"
            )

"""Exporting a Keras model to SavedModel, ONNX or TFLite, each checked against Keras.

An export that gives different answers from the model it came from is worse than none, so
every export is loaded back with its own runtime (TensorFlow, ONNX Runtime, the TFLite
interpreter) and must agree with Keras on 1,000 MNIST test images: the same top-1 digit
for every image and probabilities within 1e-4. Only then does it take the output's place.
An int8 ONNX export (`quantize=True`, see `digitlab.inference.quantize`) must instead agree on the
top-1 digit of at least 99.5% of those images. Exported models take the same input as the
Keras model: raw pixels, N x 28 x 28 float32.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitlab.errors import ExportError
from digitlab.inference.predictor import Predictions, Predictor
from digitlab.inference.runtimes import error_reason

EXPORT_FORMATS = {"savedmodel": "tf_saved_model", "onnx": "onnx", "tflite": "litert"}
"""digitlab's format names -> Keras's `Model.export` format names."""

FILE_SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite"}
"""Formats written as one file, and the suffix their path must have (SavedModel is a folder)."""

SAVED_MODEL_ENTRIES = {"saved_model.pb", "variables", "assets", "fingerprint.pb"}
"""What a SavedModel folder written by export holds; `force` replaces no folder holding more."""

PARITY_IMAGES = 1000
PARITY_TOLERANCE = 1e-4
QUANTIZED_AGREEMENT = 0.995
"""Share of the parity images on which an int8 export must give Keras's top-1 digit."""


@dataclass(frozen=True)
class ExportReport:
    """How an export went: where it is and how closely it matches the Keras model."""

    model_path: Path
    format: str
    out: Path
    runtime: str
    images: int
    top1_matches: int
    max_abs_difference: float
    tolerance: float | None
    """The limit on |dp|; None for an int8 export, which is held to `required_top1`."""
    size_bytes: int
    required_top1: int
    """How many top-1 digits must match: all of them, except for an int8 export."""

    @property
    def passed(self) -> bool:
        """True when enough top-1 digits match and probabilities are within the tolerance."""
        close = self.tolerance is None or self.max_abs_difference <= self.tolerance
        return self.top1_matches >= self.required_top1 and close

    def summary(self) -> str:
        """One line: the check's figures and its verdict."""
        verdict = "OK" if self.passed else "FAILED"
        limit = (
            f"limit {self.tolerance:.0e}"
            if self.tolerance is not None
            else f"int8; at least {self.required_top1} top-1 matches required"
        )
        return (
            f"{self.format} checked with {self.runtime} on {self.images:,} MNIST test images: "
            f"top-1 agrees on {self.top1_matches}/{self.images}, "
            f"max |dp| = {self.max_abs_difference:.1e} ({limit}): {verdict}"
        )


def export_model(
    model_path: str | os.PathLike[str],
    format: str,
    out: str | os.PathLike[str],
    force: bool = False,
    quantize: bool = False,
) -> ExportReport:
    """Export a `.keras` model to `format` ("savedmodel", "onnx" or "tflite") at `out`.

    With `quantize`, an ONNX export is quantized to int8 (`digitlab.inference.quantize`), calibrated
    on MNIST training images, and checked for top-1 agreement instead of close probabilities.

    The export is written beside `out` under a temporary name, checked against the Keras
    model (see the module docstring), and only then moved to `out`. An existing `out` is
    replaced only with `force=True`, and only when it is what an export writes: a file of
    the format's suffix, or a folder holding nothing but a SavedModel's entries
    (`SAVED_MODEL_ENTRIES`), never the model being exported or a folder holding it.
    Returns the check's `ExportReport`. Raises `ExportError` for an unknown format, a
    wrong suffix, an existing `out` (without `force`, or not an export), a failed write
    or a failed check; then nothing digitlab wrote is left behind. Raises `ModelError`
    when the model cannot be loaded.
    """
    from digitlab.inference.modelfile import load_keras_model

    model_path, out = Path(model_path), Path(out)
    _check_destination(format, out, force, model_path)
    if quantize and format != "onnx":
        raise ExportError(f"{out}: int8 quantization is for onnx exports, not {format}")
    model = load_keras_model(model_path)
    images = _parity_images()
    # Keras's own answers first: this also runs the model once, which Keras's ONNX export
    # requires of a freshly loaded model.
    reference = Predictor.from_keras(model).predict(images)
    created_folders = _make_parents(out.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        staged = staging / out.name
        if quantize:
            _write(model, format, staging / "float.onnx")
            _quantize(staging / "float.onnx", staged)
        else:
            _write(model, format, staged)
        report = _check_parity(reference, images, model_path, format, staged, out, quantize)
        if not report.passed:
            raise ExportError(f"{out}: the export does not match Keras ({report.summary()})")
        _replace(staged, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if not (out.exists() or out.is_symlink()):
            for folder in created_folders:
                folder.rmdir()
    return report


def _check_destination(format: str, out: Path, force: bool, model_path: Path) -> None:
    if format not in EXPORT_FORMATS:
        choices = ", ".join(EXPORT_FORMATS)
        raise ExportError(f"unknown export format {format!r}; choose from {choices}")
    suffix = FILE_SUFFIXES.get(format)
    if suffix and out.suffix != suffix:
        raise ExportError(f"{out}: a {format} export's file name must end in {suffix}")
    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise ExportError(f"{out}: already exists; use --force (force=True) to replace it")
    if model_path.resolve().is_relative_to(out.resolve()):
        raise ExportError(f"{out}: holds {model_path}, the model being exported; not replacing it")
    if not _is_an_export(format, out):
        kind = "SavedModel folder" if suffix is None else f"{suffix} file"
        raise ExportError(
            f"{out}: not a {kind} that export writes, so even --force will not replace it"
        )


def _is_an_export(format: str, out: Path) -> bool:
    """Whether `out` has the form export gives the format (what `force` may replace)."""
    if format in FILE_SUFFIXES:
        return not out.is_dir()
    if out.is_symlink() or not out.is_dir():
        return False
    entries = {entry.name for entry in out.iterdir()}
    return "saved_model.pb" in entries and entries <= SAVED_MODEL_ENTRIES


def _make_parents(folder: Path) -> list[Path]:
    """Create `folder` and missing parents; return those created, deepest first."""
    missing = [parent for parent in (folder, *folder.parents) if not parent.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _write(model: object, format: str, staged: Path) -> None:
    try:
        with warnings.catch_warnings():
            # tf2onnx and the TFLite converter warn about their own internals, not our model.
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            model.export(  # type: ignore[attr-defined]
                str(staged), format=EXPORT_FORMATS[format], verbose=False
            )
    except Exception as error:  # converters raise many unrelated types
        reason = error_reason(error)
        raise ExportError(f"{staged.name}: {format} export failed ({reason})") from None


def _quantize(source: Path, staged: Path) -> None:
    from digitlab.inference.quantize import calibration_images, quantize_onnx

    try:
        quantize_onnx(source, staged, calibration_images())
    except Exception as error:  # the quantizer raises many unrelated types
        reason = error_reason(error)
        raise ExportError(f"{staged.name}: int8 quantization failed ({reason})") from None


def _parity_images() -> np.ndarray:
    from digitlab.data.sources import load_mnist

    _, (x_test, _) = load_mnist()
    return x_test[:PARITY_IMAGES]


def _check_parity(
    reference: Predictions,
    images: np.ndarray,
    model_path: Path,
    format: str,
    staged: Path,
    out: Path,
    quantized: bool = False,
) -> ExportReport:
    """Compare the staged export, run by its own runtime, with Keras's `reference` answers."""
    exported = Predictor.load(staged)
    predictions = exported.predict(images)
    return ExportReport(
        model_path=model_path,
        format=format,
        out=out,
        runtime=exported.runtime,
        images=len(images),
        top1_matches=int(np.sum(predictions.digits == reference.digits)),
        # A model that knows non-digits carries its digit score into the export: checked too.
        max_abs_difference=float(
            max(
                np.abs(predictions.probabilities - reference.probabilities).max(),
                np.abs(predictions.digit_scores - reference.digit_scores).max(),
            )
        ),
        tolerance=None if quantized else PARITY_TOLERANCE,
        size_bytes=_size(staged),
        required_top1=(
            int(np.ceil(QUANTIZED_AGREEMENT * len(images))) if quantized else len(images)
        ),
    )


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def _replace(staged: Path, out: Path) -> None:
    """Move the checked export to `out`, replacing what was there (the caller allowed it).

    A file is replaced in one atomic rename; a SavedModel folder is renamed aside first and
    removed only once the new one is in place.
    """
    if not out.is_dir() or out.is_symlink():
        os.replace(staged, out)
        return
    aside = out.with_name(f".{out.name}.replaced-{os.getpid()}")
    os.replace(out, aside)
    os.replace(staged, out)
    shutil.rmtree(aside)

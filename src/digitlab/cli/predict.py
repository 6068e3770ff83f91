"""`digitlab predict` and `digitlab export`: thin shells over digitlab.inference."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from digitlab.cli.app import app, native_stderr_silenced
from digitlab.inference.digit_score import DEFAULT_NOT_DIGIT_THRESHOLD

if TYPE_CHECKING:
    from digitlab.inference.predictor import FilePrediction, Predictor


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


class ExportFormat(StrEnum):
    savedmodel = "savedmodel"
    onnx = "onnx"
    tflite = "tflite"


NotDigitThreshold = Annotated[
    float,
    typer.Option(
        "--not-digit-threshold",
        min=0.0,
        max=1.0,
        help="Below this digit score (0..1, higher is more digit-like) an image is 'not a "
        "digit'; its best guess is still given. A model that knows non-digits maps its own "
        f"chosen threshold to {DEFAULT_NOT_DIGIT_THRESHOLD}; for any other model the score "
        f"is its top probability (default: {DEFAULT_NOT_DIGIT_THRESHOLD}).",
        show_default=False,
    ),
]
"""The `--not-digit-threshold` option of `predict`, `read` and `serve`."""


@app.command("predict")
def predict_command(
    paths: Annotated[
        list[Path], typer.Argument(help="Image files, or folders searched recursively.")
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            help="A .keras, .onnx or .tflite file or a SavedModel folder "
            "(default: the model shipped with digitlab).",
            show_default=False,
        ),
    ] = None,
    top_k: Annotated[
        int,
        typer.Option(
            "--top-k",
            min=1,
            help="How many likely digits to list (default: 3).",
            show_default=False,
        ),
    ] = 3,
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help="Output format (default: table). Table and CSV write file names byte for "
            "byte, as ls does; JSON, which must be UTF-8, writes a name that is not with "
            "U+FFFD in 'path' and its exact bytes, base64-encoded, in 'path_base64'.",
            show_default=False,
        ),
    ] = OutputFormat.table,
    min_confidence: Annotated[
        float,
        typer.Option(
            "--min-confidence",
            min=0.0,
            max=1.0,
            help="Below this probability, say 'uncertain' instead of a digit (default: 0).",
            show_default=False,
        ),
    ] = 0.0,
    show_preprocessed: Annotated[
        Path | None,
        typer.Option(
            "--show-preprocessed",
            help="Folder to save the 28x28 image the model saw for each file "
            "(default: save nothing).",
            show_default=False,
        ),
    ] = None,
    not_digit_threshold: NotDigitThreshold = DEFAULT_NOT_DIGIT_THRESHOLD,
) -> None:
    """Predict the digit in each image file; unreadable files are reported, the rest predicted.

    Exits with 1 if any file could not be read.
    """
    from digitlab.inference.predictor import FilePrediction

    files, predictor = files_and_model(paths, model, "predict", not_digit_threshold)
    results = predictor.predict_files(files)
    predicted = [result for result in results if isinstance(result, FilePrediction)]
    records = [prediction_record(result, top_k, min_confidence) for result in predicted]
    if output_format is OutputFormat.json:
        typer.echo(records_to_json(records))
    elif output_format is OutputFormat.csv:
        typer.echo(records_to_csv(records), nl=False)
    else:
        typer.echo(records_to_table(records, top_k), nl=False)
    failed = report_failures(results)
    if show_preprocessed is not None:
        save_preprocessed(predicted, show_preprocessed)
        typer.echo(f"saved {len(predicted)} preprocessed images to {show_preprocessed}", err=True)
    if failed:
        raise typer.Exit(1)


def files_and_model(
    paths: list[Path], model: Path | None, verb: str, not_digit_threshold: float
) -> tuple[list[Path], Predictor]:
    """The files named by `paths` (folders expanded) and the model to run on them, saying
    "not a digit" below `not_digit_threshold`.

    Raises `ImageError` when there are no files, before the model is loaded.
    """
    from digitlab.errors import ImageError
    from digitlab.inference.predictor import Predictor, collect_files

    files = collect_files(paths)
    if not files:
        raise ImageError(f"{', '.join(map(str, paths))}: no files to {verb}")
    with native_stderr_silenced():
        return files, Predictor.load(model, not_digit_threshold=not_digit_threshold)


def report_failures(results: Sequence[object]) -> bool:
    """Print a `failed:` line on stderr for each `FileFailure` in `results`; whether any."""
    from digitlab.inference.predictor import FileFailure

    failures = [result for result in results if isinstance(result, FileFailure)]
    for failure in failures:
        typer.echo(f"failed: {failure.reason}", err=True)
    return bool(failures)


def prediction_record(result: FilePrediction, top_k: int, min_confidence: float) -> dict[str, Any]:
    """One file's prediction as a JSON-ready dict; `digit` is None when below `min_confidence`
    and the best guess when `is_digit` is false."""
    uncertain = result.confidence < min_confidence
    return {
        "path": str(result.path),
        "digit": None if uncertain else result.digit,
        "confidence": round(result.confidence, 6),
        "top_k": [
            {"digit": digit, "probability": round(probability, 6)}
            for digit, probability in result.top_k(top_k)
        ],
        "uncertain": uncertain,
        "is_digit": result.is_digit,
        "digit_score": round(result.digit_score, 6),
    }


def records_to_json(records: list[dict[str, Any]]) -> str:
    """The records as a JSON array, valid UTF-8 whatever the file names.

    A path that is not valid UTF-8 (Python holds its stray bytes as lone surrogates,
    which JSON readers other than Python's turn into U+FFFD) is written with U+FFFD in
    `path`, for display, and its exact bytes in `path_base64`, to open the file by.
    """
    return json.dumps([_with_exact_path(record) for record in records], indent=2)


def _with_exact_path(record: dict[str, Any]) -> dict[str, Any]:
    raw = os.fsencode(record["path"])
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="replace")
        return {**record, "path": text, "path_base64": base64.b64encode(raw).decode("ascii")}
    return record


def _top_k_text(record: dict[str, Any]) -> str:
    return " ".join(f"{entry['digit']}:{entry['probability']:.4f}" for entry in record["top_k"])


def records_to_csv(records: list[dict[str, Any]]) -> str:
    """CSV with the JSON's columns; top_k is written as `digit:probability` pairs."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["path", "digit", "confidence", "top_k", "uncertain", "is_digit", "digit_score"]
    )
    for record in records:
        digit = "" if record["digit"] is None else record["digit"]
        writer.writerow(
            [
                record["path"],
                digit,
                record["confidence"],
                _top_k_text(record),
                record["uncertain"],
                record["is_digit"],
                record["digit_score"],
            ]
        )
    return buffer.getvalue()


def records_to_table(records: list[dict[str, Any]], top_k: int) -> str:
    """An aligned text table: path, digit ('?' when uncertain, 'not a digit' with the best
    guess when it is not one), confidence, digit score, top-k."""
    from digitlab.tables import text_table

    header = ("path", "digit", "confidence", "digit score", f"top-{top_k}")
    rows = [
        (
            record["path"],
            _digit_text(record),
            f"{record['confidence']:.4f}" + (" (uncertain)" if record["uncertain"] else ""),
            f"{record['digit_score']:.4f}",
            _top_k_text(record),
        )
        for record in records
    ]
    return text_table(rows, headers=header) + "\n"


def _digit_text(record: dict[str, Any]) -> str:
    if not record["is_digit"]:
        return f"not a digit (best guess {record['top_k'][0]['digit']})"
    return "?" if record["digit"] is None else str(record["digit"])


def save_preprocessed(predictions: list[FilePrediction], folder: Path) -> None:
    """Save each 28x28 model input as `<folder>/<number>_<file stem>.png`: all of them, or
    none when one cannot be written."""
    from PIL import Image

    from digitlab.atomic import atomic_paths

    targets = [
        folder / f"{number:04d}_{prediction.path.stem}.png"
        for number, prediction in enumerate(predictions, start=1)
    ]
    with atomic_paths(targets) as temporaries:
        for tmp, prediction in zip(temporaries, predictions, strict=True):
            Image.fromarray(prediction.image).save(tmp, format="PNG")


@app.command("export")
def export_command(
    model: Annotated[Path, typer.Argument(help="The trained Keras model (.keras) to export.")],
    export_format: Annotated[
        ExportFormat,
        typer.Option("--format", help="savedmodel (a folder), onnx or tflite."),
    ],
    out: Annotated[
        Path, typer.Option(help="Where to write it (.onnx / .tflite file, or a folder).")
    ],
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Replace OUT if it exists (default: refuse).", show_default=False
        ),
    ] = False,
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="onnx only: quantize to int8 (calibrated on 500 MNIST training images), "
            "several times faster on CPUs with 8-bit instructions; checked for top-1 "
            "agreement with Keras on 99.5% of the images (default: float32).",
            show_default=False,
        ),
    ] = False,
) -> None:
    """Export MODEL and check it with its own runtime against Keras on 1,000 MNIST images."""
    from digitlab.inference.export import export_model

    with native_stderr_silenced():
        report = export_model(model, export_format.value, out, force=force, quantize=int8)
    typer.echo(f"wrote {report.out} ({report.size_bytes / 1e6:.2f} MB)")
    typer.echo(report.summary())

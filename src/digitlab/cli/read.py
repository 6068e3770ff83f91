"""`digitlab read`: a thin shell over `Predictor.read_files` (whole numbers, left to right)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from digitlab.cli.app import app
from digitlab.cli.predict import (
    NotDigitThreshold,
    OutputFormat,
    files_and_model,
    records_to_json,
    report_failures,
)
from digitlab.inference.digit_score import DEFAULT_NOT_DIGIT_THRESHOLD

if TYPE_CHECKING:
    from digitlab.inference.predictor import FileReading


@app.command("read")
def read_command(
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
    output_format: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            help="Output format (default: table). JSON is a list of {path, number, "
            "confidence, digits: [{digit, confidence, box: [x0, y0, x1, y1], is_digit, "
            "digit_score}]}.",
            show_default=False,
        ),
    ] = OutputFormat.table,
    explain: Annotated[
        Path | None,
        typer.Option(
            "--explain",
            help="Folder to save, per image, a PNG of it with each digit's box and digit "
            "(default: save nothing).",
            show_default=False,
        ),
    ] = None,
    not_digit_threshold: NotDigitThreshold = DEFAULT_NOT_DIGIT_THRESHOLD,
) -> None:
    """Read the whole number in each image file; unreadable files are reported, the rest read.

    Exits with 1 if any file could not be read.
    """
    from digitlab.inference.predictor import FileReading

    files, predictor = files_and_model(paths, model, "read", not_digit_threshold)
    results = predictor.read_files(files)
    readings = [result for result in results if isinstance(result, FileReading)]
    records = [reading_record(result) for result in readings]
    if output_format is OutputFormat.json:
        typer.echo(records_to_json(records))
    elif output_format is OutputFormat.csv:
        typer.echo(records_to_csv(records), nl=False)
    else:
        typer.echo(records_to_table(records), nl=False)
    failed = report_failures(results)
    if explain is not None:
        save_explanations(readings, explain)
        typer.echo(f"saved {len(readings)} explained images to {explain}", err=True)
    if failed:
        raise typer.Exit(1)


def reading_record(result: FileReading) -> dict[str, Any]:
    """One file's reading as a JSON-ready dict; each digit says whether it is one."""
    return {
        "path": str(result.path),
        "number": result.reading.number,
        "text": result.reading.text,
        "confidence": round(result.reading.confidence, 6),
        "digits": [
            {
                "digit": digit.digit,
                "confidence": round(digit.confidence, 6),
                "box": list(digit.box),
                "is_digit": digit.is_digit,
                "digit_score": round(digit.digit_score, 6),
            }
            for digit in result.reading.digits
        ],
    }


def _digits_text(record: dict[str, Any], marked: bool = False) -> str:
    """Each part as `digit:confidence`; `marked`: followed by `(not a digit)` when it is
    not one."""
    return " ".join(
        f"{entry['digit']}:{entry['confidence']:.4f}"
        + ("" if entry["is_digit"] or not marked else " (not a digit)")
        for entry in record["digits"]
    )


def _scores_text(record: dict[str, Any]) -> str:
    return " ".join(f"{entry['digit_score']:.4f}" for entry in record["digits"])


def _is_digit_text(record: dict[str, Any]) -> str:
    return " ".join(str(entry["is_digit"]) for entry in record["digits"])


def _boxes_text(record: dict[str, Any]) -> str:
    return ";".join(" ".join(map(str, entry["box"])) for entry in record["digits"])


def records_to_csv(records: list[dict[str, Any]]) -> str:
    """CSV: path, number, confidence, digits as `digit:confidence` pairs, boxes as
    `x0 y0 x1 y1` separated by `;`, each part's is_digit and digit_score separated by
    spaces, and last the number as written (its points, commas and dashes kept)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["path", "number", "confidence", "digits", "boxes", "is_digit", "digit_score", "text"]
    )
    for record in records:
        writer.writerow(
            [
                record["path"],
                record["number"],
                record["confidence"],
                _digits_text(record),
                _boxes_text(record),
                _is_digit_text(record),
                _scores_text(record),
                record["text"],
            ]
        )
    return buffer.getvalue()


def records_to_table(records: list[dict[str, Any]]) -> str:
    """An aligned text table: path, the number as written (points, commas and dashes
    between its digits kept), confidence, each digit's confidence, and `(not a digit)`
    after each part that is not one."""
    from digitlab.tables import text_table

    rows = [
        (
            record["path"],
            record["text"],
            f"{record['confidence']:.4f}",
            _digits_text(record, marked=True),
        )
        for record in records
    ]
    return text_table(rows, headers=("path", "number", "confidence", "digits")) + "\n"


def save_explanations(readings: list[FileReading], folder: Path) -> None:
    """Save each image with its digits' boxes and digits as `<folder>/<number>_<stem>.png`."""
    from PIL import ImageDraw

    from digitlab.atomic import atomic_path
    from digitlab.images import decode_file

    for number, result in enumerate(readings, start=1):
        image = decode_file(result.path).convert("RGB")
        # A large JPEG decodes reduced; draw on the size the boxes refer to.
        image = image.resize(result.reading.size)
        draw = ImageDraw.Draw(image)
        line = max(1, round(max(image.size) / 300))
        for digit in result.reading.digits:
            x0, y0, x1, y1 = digit.box
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=(220, 30, 30), width=line)
            draw.text((x0 + line, y0 + line), str(digit.digit), fill=(220, 30, 30))
        with atomic_path(folder / f"{number:04d}_{result.path.stem}.png") as tmp:
            image.save(tmp, format="PNG")

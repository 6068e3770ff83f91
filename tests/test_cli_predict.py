"""`digitlab predict` and `digitlab export` through the real command line."""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.images import to_mnist
from digitlab.inference.predictor import Predictor
from digitlab.styles import render
from hostile_files import unlistable_folder

# `model_path` (conftest.py): a small MLP trained once per session on 12,000 MNIST images.

runner = CliRunner()

GOOD = ["a/0.png", "a/1.jpg", "a/b/2.png"]
BAD = {
    "a/empty.png": "empty",
    "a/notes.txt": "not an image",
    "a/cut.png": "damaged",
    "a/b/blank.png": "no digit found",
    "a/b/huge.bmp": "too large",
}


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _bmp_claiming(width: int, height: int) -> bytes:
    """A 24-bit BMP header claiming the size, followed by a few bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    offset = 14 + len(info)
    return b"BM" + struct.pack("<IHHI", offset + 64, 0, 0, offset) + info + bytes(64)


@pytest.fixture(scope="module")
def images(tmp_path_factory, mnist):
    """A folder tree with three digit images and five files that cannot be predicted."""
    _, (x_test, _) = mnist
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for index, name in enumerate(GOOD):
        style = "blue_ink_photo" if name.endswith(".jpg") else "black_on_white"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(render(x_test[index], style, rng)[0])
    contents = {
        "a/empty.png": b"",
        "a/notes.txt": b"remember the milk",
        "a/cut.png": (root / GOOD[0]).read_bytes()[:200],
        "a/b/blank.png": _png(np.full((80, 80), 250, np.uint8)),
        "a/b/huge.bmp": _bmp_claiming(100_000, 100_000),
    }
    for name, data in contents.items():
        (root / name).write_bytes(data)
    return root


def test_predict_table_reports_each_bad_file_on_its_own_line(model_path, images):
    result = runner.invoke(app, ["predict", str(images / "a"), "--model", str(model_path)])
    assert result.exit_code == 1
    table = result.stdout.splitlines()
    assert table[0].split()[:3] == ["path", "digit", "confidence"]
    assert sorted(line.split()[0] for line in table[1:]) == sorted(str(images / n) for n in GOOD)
    failures = result.stderr.splitlines()
    assert len(failures) == len(BAD)
    for name, reason in BAD.items():
        (line,) = [line for line in failures if str(images / name) in line]
        assert reason in line


def test_predict_json_matches_the_python_api(model_path, images):
    paths = [str(images / name) for name in GOOD]
    result = runner.invoke(
        app, ["predict", *paths, "--model", str(model_path), "--format", "json", "--top-k", "4"]
    )
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    expected = Predictor.load(model_path).predict_files(paths)
    assert [record["path"] for record in records] == paths
    for record, prediction in zip(records, expected, strict=True):
        assert set(record) >= {"path", "digit", "confidence", "top_k"}
        assert record["digit"] == prediction.digit
        assert record["confidence"] == pytest.approx(prediction.confidence, abs=1e-6)
        assert len(record["top_k"]) == 4 and record["top_k"][0]["digit"] == prediction.digit
        probabilities = [entry["probability"] for entry in record["top_k"]]
        assert probabilities == sorted(probabilities, reverse=True)


def test_predict_csv_has_the_json_columns(model_path, images):
    paths = [str(images / name) for name in GOOD]
    result = runner.invoke(app, ["predict", *paths, "--model", str(model_path), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [row["path"] for row in rows] == paths
    assert {"path", "digit", "confidence", "top_k"} <= set(rows[0])
    assert all(len(row["top_k"].split()) == 3 and row["digit"].isdigit() for row in rows)


def test_min_confidence_marks_answers_uncertain_instead_of_guessing(model_path, images):
    paths = [str(images / name) for name in GOOD]
    json_result = runner.invoke(
        app,
        [
            "predict",
            *paths,
            "--model",
            str(model_path),
            "--format",
            "json",
            "--min-confidence",
            "1",
        ],
    )
    records = json.loads(json_result.stdout)
    assert all(record["digit"] is None and record["uncertain"] for record in records)
    table = runner.invoke(
        app, ["predict", *paths, "--model", str(model_path), "--min-confidence", "1"]
    ).stdout.splitlines()
    assert all(line.split()[1] == "?" and "uncertain" in line for line in table[1:])


def test_show_preprocessed_saves_what_the_model_saw(model_path, images, tmp_path):
    path = images / GOOD[1]
    result = runner.invoke(
        app,
        [
            "predict",
            str(path),
            "--model",
            str(model_path),
            "--show-preprocessed",
            str(tmp_path / "seen"),
        ],
    )
    assert result.exit_code == 0, result.output
    (saved,) = (tmp_path / "seen").iterdir()
    assert saved.name == "0001_1.png"
    assert np.array_equal(np.asarray(Image.open(saved)), to_mnist(path))


def test_predict_reports_a_fifo_and_a_folder_it_cannot_list_and_predicts_the_rest(
    model_path, images, tmp_path
):
    """A FIFO is not opened (it would wait for a writer forever) and a folder that cannot
    be listed is not skipped: each is a failure line, and the exit status says so."""
    (tmp_path / "7.png").write_bytes((images / GOOD[0]).read_bytes())
    os.mkfifo(tmp_path / "pipe.png")
    unlistable = unlistable_folder(tmp_path)
    result = runner.invoke(app, ["predict", str(tmp_path), "--model", str(model_path)])
    assert result.exit_code == 1
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == [str(tmp_path / "7.png")]
    failures = sorted(result.stderr.splitlines())
    assert len(failures) == 2
    assert failures[0].startswith(f"failed: {tmp_path / 'dd'}") and failures[0].endswith(
        f"{unlistable.name}: cannot read (File name too long)"
    )
    assert failures[1] == (
        f"failed: {tmp_path / 'pipe.png'}: not a regular file (a pipe, socket or device), not read"
    )


def test_predict_on_an_empty_folder_is_a_one_line_error(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path}: no files to predict"


def test_predict_with_a_bad_model_is_a_one_line_error(images, tmp_path):
    result = runner.invoke(app, ["predict", str(images), "--model", str(tmp_path / "no.onnx")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'no.onnx'}: no such model file"


def test_export_prints_its_check_and_refuses_to_overwrite(model_path, tmp_path):
    out = tmp_path / "tiny.onnx"
    result = runner.invoke(app, ["export", str(model_path), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ONNX Runtime" in result.stdout and "1000/1000" in result.stdout
    assert result.stdout.rstrip().endswith("OK") and out.is_file()
    again = runner.invoke(app, ["export", str(model_path), "--format", "onnx", "--out", str(out)])
    assert again.exit_code == 1 and "already exists" in again.stderr


@pytest.mark.slow
def test_predict_console_script_end_to_end(model_path, images):
    """The installed entry point, in a fresh process: exit status and the two streams."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitlab",
            "predict",
            str(images),
            "--model",
            str(model_path),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert len(json.loads(done.stdout)) == len(GOOD)
    # stderr holds the failure lines and nothing else (no TensorFlow start-up chatter).
    failures = done.stderr.splitlines()
    assert len(failures) == len(BAD) and all(line.startswith("failed: ") for line in failures)

"""Faults from the operating system through the real CLI: one `Error: <path>: <reason>` line,
exit code 1, no traceback, and the user's files left as they were."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from digitlab.cli import app
from digitlab.data.folders import export_image_folder
from digitlab.inference.pretrained import pretrained_model_path

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 1, a single `Error: ...` line on stderr naming `fragments`, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def a_file(tmp_path):
    """A user's file, standing where a command is told to write a folder."""
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    return path


@pytest.fixture
def digit_tree(tmp_path, mnist):
    """A class-folder tree of 70 real MNIST digits, 7 per class."""
    _, (x_test, y_test) = mnist
    picks = np.concatenate([np.flatnonzero(y_test == digit)[:7] for digit in range(10)])
    export_image_folder(x_test[picks], y_test[picks], tmp_path / "digits")
    return tmp_path / "digits"


def test_data_export_into_a_file_names_it(a_file):
    result = run("data", "export", "--split", "test", "--out", str(a_file))
    assert_one_line_error(result, f"{a_file}/", "Not a directory")
    assert a_file.read_text() == "keep me"


def test_predict_show_preprocessed_at_a_file_names_it(digit_tree, a_file):
    result = run("predict", str(digit_tree / "3"), "--show-preprocessed", str(a_file))
    assert_one_line_error(result, str(a_file), "File exists")
    assert a_file.read_text() == "keep me"


def test_evaluate_out_where_report_txt_is_a_folder_names_it(digit_tree, tmp_path):
    (tmp_path / "report" / "report.txt").mkdir(parents=True)
    result = run(
        "evaluate",
        str(pretrained_model_path()),
        "--dataset",
        str(digit_tree),
        "--out",
        str(tmp_path / "report"),
    )
    assert_one_line_error(result, f"{tmp_path / 'report' / 'report.txt'}: Is a directory")
    assert [path.name for path in (tmp_path / "report").iterdir()] == ["report.txt"]


def test_export_under_a_file_names_it(a_file):
    out = a_file / "model.onnx"
    result = run("export", str(pretrained_model_path()), "--format", "onnx", "--out", str(out))
    assert_one_line_error(result, str(a_file))
    assert a_file.read_text() == "keep me"

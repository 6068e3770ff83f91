"""The IDX format: exact round trips for every IDX type, gzip or raw, and clear errors."""

from __future__ import annotations

import gzip
import tracemalloc

import numpy as np
import pytest

from digitlab.data.idx import encode_idx, load_idx_dataset, read_idx, write_idx
from digitlab.errors import ChecksumError, DataError

IDX_DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def _sample(dtype: type) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.issubdtype(dtype, np.floating):
        values = rng.normal(size=(3, 5, 7)) * 1e6
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=(3, 5, 7), endpoint=True)
    return values.astype(dtype)


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", IDX_DTYPES, ids=lambda d: np.dtype(d).name)
def test_idx_round_trip_is_exact_for_every_type(tmp_path, dtype, suffix):
    array = _sample(dtype)
    path = tmp_path / f"data-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    assert back.tobytes() == array.tobytes()
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\x00\x00")


def test_idx_header_is_the_standard_one(mnist):
    (_, y_train), _ = mnist
    raw = encode_idx(y_train)
    assert raw[:8] == bytes([0, 0, 0x08, 1]) + (60000).to_bytes(4, "big")


def test_idx_round_trip_of_mnist_images_gzip(tmp_path, mnist):
    _, (x_test, _) = mnist
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x_test[:2000])
    assert np.array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), x_test[:2000])


def test_encode_idx_refuses_a_type_idx_cannot_hold():
    with pytest.raises(DataError, match="uint16"):
        encode_idx(np.zeros(3, dtype=np.uint16))


def test_read_idx_reports_a_wrong_magic_number(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: wrong magic number 0x504b0304"):
        read_idx(path)


def test_read_idx_reports_a_truncated_body(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(encode_idx(np.arange(10, dtype=np.uint8))[:-3])
    with pytest.raises(DataError, match=r"labels-idx1-ubyte: truncated body \(7 of 10 bytes"):
        read_idx(path)


def test_read_idx_reports_trailing_bytes(tmp_path):
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(encode_idx(np.arange(10, dtype=np.uint8)) + b"xx")
    with pytest.raises(DataError, match="2 unexpected bytes"):
        read_idx(path)


def test_read_idx_reports_a_truncated_gzip_stream(tmp_path):
    path = tmp_path / "labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(encode_idx(np.arange(5000, dtype=np.int32)))[:-40])
    with pytest.raises(DataError, match=r"labels-idx1-ubyte.gz: corrupt gzip stream"):
        read_idx(path)


def test_read_idx_reports_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="nothing-idx1-ubyte: no such file"):
        read_idx(tmp_path / "nothing-idx1-ubyte")


def test_read_idx_checks_the_decompressed_sha256(tmp_path):
    path = tmp_path / "labels-idx1-ubyte.gz"
    write_idx(path, np.arange(10, dtype=np.uint8))
    with pytest.raises(ChecksumError, match="labels-idx1-ubyte.gz: SHA-256"):
        read_idx(path, sha256="0" * 64)


def _write_dataset(folder, y_train, suffix=".gz"):
    images = np.zeros((len(y_train), 4, 4), dtype=np.uint8)
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", y_train)
    write_idx(folder / f"t10k-images-idx3-ubyte{suffix}", images[:2])
    write_idx(folder / f"t10k-labels-idx1-ubyte{suffix}", y_train[:2])


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_idx_dataset_reads_the_four_standard_files(tmp_path, suffix):
    _write_dataset(tmp_path, np.array([3, 1, 4, 1, 5], dtype=np.uint8), suffix)
    (x_train, y_train), (x_test, y_test) = load_idx_dataset(tmp_path)
    assert x_train.shape == (5, 4, 4) and x_test.shape == (2, 4, 4)
    assert y_train.tolist() == [3, 1, 4, 1, 5] and y_test.tolist() == [3, 1]


def test_load_idx_dataset_rejects_a_label_outside_0_to_9(tmp_path):
    _write_dataset(tmp_path, np.array([3, 12, 4], dtype=np.uint8))
    message = r"train-labels-idx1-ubyte.gz: label 12 at index 1 outside 0..9"
    with pytest.raises(DataError, match=message):
        load_idx_dataset(tmp_path)


def test_load_idx_dataset_rejects_mismatched_counts(tmp_path):
    _write_dataset(tmp_path, np.array([3, 1, 4], dtype=np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([1, 2], dtype=np.uint8))
    with pytest.raises(DataError, match="2 labels for 3 images"):
        load_idx_dataset(tmp_path)


def test_load_idx_dataset_reports_a_missing_folder_or_file(tmp_path):
    with pytest.raises(DataError, match="absent: no such folder"):
        load_idx_dataset(tmp_path / "absent")
    with pytest.raises(DataError, match="no train-images"):
        load_idx_dataset(tmp_path)


def _idx_header(*shape: int) -> bytes:
    return bytes([0, 0, 0x08, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


def test_read_idx_stops_a_gzip_bomb_at_the_size_its_header_declares(tmp_path):
    # 10 declared bytes, then 64 MiB of zeros that compress to about 64 KB.
    path = tmp_path / "labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(_idx_header(10) + bytes(10))
        for _ in range(64):
            handle.write(bytes(2**20))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=r"labels-idx1-ubyte.gz: at least \d+ unexpected bytes"):
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


def test_read_idx_refuses_a_header_declaring_more_than_the_limit_before_reading(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx_header(100_000, 100_000, 28))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: its header declares shape"):
        read_idx(path)


def test_read_idx_reports_dimensions_whose_product_overflows(tmp_path):
    # The product of these wraps around to a small number in 64-bit arithmetic.
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx_header(2**16, 2**16, 2**16, 2**16) + bytes(16))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: its header declares shape"):
        read_idx(path)

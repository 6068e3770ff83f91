"""Getting datasets: MNIST verified and cached, corrupt caches replaced, every dataset spec."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest

from digitlab.data import sources
from digitlab.data.downloads import arrays_from_mnist_pkl
from digitlab.data.folders import export_image_folder
from digitlab.data.idx import write_idx
from digitlab.data.mnist_cache import CACHE_FILE, MNIST_SHA256, cache_dir, mnist_cache_status
from digitlab.data.sources import FASHION_MNIST_CLASSES, fetch_mnist, load_dataset
from digitlab.data.split import split_image_folder
from digitlab.errors import DataError

MNIST_TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_arrays_match_the_known_sha256(mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    named = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for name, array in named.items():
        assert array.dtype == np.uint8
        assert hashlib.sha256(array.tobytes()).hexdigest() == MNIST_SHA256[name], name
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist() == MNIST_TRAIN_LABEL_COUNTS


@pytest.fixture
def cache_copy(tmp_path, mnist):
    """A private copy of the user's verified MNIST cache, safe to damage."""
    folder = tmp_path / "cache"
    folder.mkdir()
    shutil.copy(cache_dir() / CACHE_FILE, folder)
    return folder / CACHE_FILE


def _write_mnist_idx(folder, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", x_train)
    write_idx(folder / "train-labels-idx1-ubyte", y_train)
    write_idx(folder / "t10k-images-idx3-ubyte", x_test)
    write_idx(folder / "t10k-labels-idx1-ubyte", y_test)


def test_a_cache_with_flipped_bytes_is_reported_and_replaced(cache_copy, tmp_path, mnist):
    raw = np.fromfile(cache_copy, dtype=np.uint8)
    raw[len(raw) // 2 : len(raw) // 2 + 64] ^= 0xFF
    raw.tofile(cache_copy)
    assert mnist_cache_status(cache_copy.parent)[1] != "verified"
    _write_mnist_idx(tmp_path / "idx", mnist)

    _, report = fetch_mnist(cache_copy.parent, idx_folder=tmp_path / "idx")

    assert report.problems[0].startswith(f"{cache_copy}: unreadable cache (Bad CRC-32")
    assert report.problems[0].endswith("fetching again")
    assert report.source == f"IDX folder {tmp_path / 'idx'}"
    assert set(report.verified) == {"x_train", "y_train", "x_test", "y_test"}
    assert mnist_cache_status(cache_copy.parent) == (cache_copy, "verified")


def test_a_well_formed_cache_with_other_pixels_fails_its_checksum(cache_copy, tmp_path, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    x_altered = x_train.copy()
    x_altered[123, 14, 14] ^= 1
    np.savez(cache_copy, x_train=x_altered, y_train=y_train, x_test=x_test, y_test=y_test)
    _write_mnist_idx(tmp_path / "idx", mnist)

    _, report = fetch_mnist(cache_copy.parent, idx_folder=tmp_path / "idx")

    assert report.problems[0].startswith(f"{cache_copy}: x_train SHA-256")
    assert "does not match MNIST; fetching again" in report.problems[0]
    assert mnist_cache_status(cache_copy.parent) == (cache_copy, "verified")


def test_a_truncated_cache_is_reported_and_replaced(cache_copy, tmp_path, mnist):
    cache_copy.write_bytes(cache_copy.read_bytes()[:1_000_000])
    _write_mnist_idx(tmp_path / "idx", mnist)

    _, report = fetch_mnist(cache_copy.parent, idx_folder=tmp_path / "idx")

    assert report.problems[0].startswith(f"{cache_copy}: unreadable cache")
    assert mnist_cache_status(cache_copy.parent) == (cache_copy, "verified")


def test_an_interrupted_cache_write_leaves_no_cache(tmp_path, mnist, monkeypatch):
    _write_mnist_idx(tmp_path / "idx", mnist)

    def savez_then_ctrl_c(handle, **arrays):
        handle.write(b"PK\x03\x04 a third of a cache")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", savez_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        fetch_mnist(tmp_path / "cache", idx_folder=tmp_path / "idx")
    assert list((tmp_path / "cache").iterdir()) == []
    assert mnist_cache_status(tmp_path / "cache")[1] == "not cached"


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_registry_unpickler_refuses_a_pickle_that_calls_os_system(tmp_path):
    marker = tmp_path / "owned"
    payload = gzip.compress(pickle.dumps(_RunsACommand(marker), protocol=2))
    with pytest.raises(DataError, match=r"refusing to load (posix|os|nt)\.system"):
        arrays_from_mnist_pkl(payload, "evil.pkl.gz")
    assert not marker.exists()


def test_the_registry_unpickler_rebuilds_exact_pixels_from_floats(mnist):
    _, (x_test, y_test) = mnist
    floats = (x_test[:50].reshape(50, 784) / 256).astype(np.float32)
    splits = ((floats, y_test[:50].astype(np.int64)),) * 3
    payload = gzip.compress(pickle.dumps(splits, protocol=4))
    (x_train, y_train), (x_back, y_back) = arrays_from_mnist_pkl(payload, "mnist.pkl.gz")
    assert np.array_equal(x_back, x_test[:50]) and np.array_equal(y_back, y_test[:50])
    assert x_train.shape == (100, 28, 28) and y_train.dtype == np.uint8


def test_load_dataset_mnist_names_the_ten_digits(mnist):
    data = load_dataset("mnist")
    assert data.class_names == [str(d) for d in range(10)]
    assert np.array_equal(data.x_test, mnist[1][0])


def test_load_dataset_fashion_mnist_is_verified_and_named():
    data = load_dataset("fashion-mnist")
    assert data.class_names == FASHION_MNIST_CLASSES
    assert data.x_train.shape == (60000, 28, 28) and data.x_test.shape == (10000, 28, 28)
    assert np.bincount(data.y_train).tolist() == [6000] * 10
    assert np.bincount(data.y_test).tolist() == [1000] * 10


def test_load_dataset_fashion_mnist_refuses_a_tampered_file(tmp_path, monkeypatch):
    for path in sources.FASHION_MNIST_DIR.iterdir():
        (tmp_path / path.name).symlink_to(path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    labels.unlink()
    write_idx(labels, np.zeros(10000, dtype=np.uint8))
    monkeypatch.setenv("DIGITLAB_FASHION_MNIST", str(tmp_path))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: SHA-256"):
        load_dataset("fashion-mnist")


def test_load_dataset_reads_an_idx_folder(tmp_path, mnist):
    (x_train, y_train), (x_test, y_test) = mnist
    folder = tmp_path / "digits"
    _write_mnist_idx(folder, ((x_train[:300], y_train[:300]), (x_test[:100], y_test[:100])))
    data = load_dataset(str(folder))
    assert data.name == "digits"
    assert np.array_equal(data.x_train, x_train[:300]) and np.array_equal(data.y_test, y_test[:100])


def test_load_dataset_holds_out_a_stratified_seventh_of_a_class_tree(tmp_path, mnist):
    _, (x_test, y_test) = mnist
    export_image_folder(x_test[:700], y_test[:700], tmp_path / "tree")
    first, second = load_dataset(str(tmp_path / "tree")), load_dataset(str(tmp_path / "tree"))
    assert len(first.x_test) == 100 and len(first.x_train) == 600
    expected = np.bincount(y_test[:700], minlength=10) / 7
    assert np.all(np.abs(np.bincount(first.y_test, minlength=10) - expected) <= 1)
    assert np.array_equal(first.y_test, second.y_test)
    assert np.array_equal(first.x_test, second.x_test)


def test_load_dataset_uses_a_split_trees_subsets_and_merges_val_into_train(tmp_path, mnist):
    _, (x_test, y_test) = mnist
    export_image_folder(x_test[:400], y_test[:400], tmp_path / "tree")
    result = split_image_folder(tmp_path / "tree", tmp_path / "split", val=0.2, test=0.25)
    data = load_dataset(str(tmp_path / "split"))
    counts = {subset: sum(result.counts[subset].values()) for subset in result.counts}
    assert len(data.y_train) == counts["train"] + counts["val"] == 300
    assert len(data.y_test) == counts["test"] == 100
    assert data.class_names == result.class_names


def test_load_dataset_lists_the_valid_forms_for_an_unknown_spec():
    with pytest.raises(DataError, match=r'mnis: no such dataset or folder; use "mnist", "fashion'):
        load_dataset("mnis")


def test_a_cache_header_claiming_a_huge_array_is_reported_without_allocating_it(cache_copy, mnist):
    (_, y_train), (x_test, y_test) = mnist
    np.savez(cache_copy, y_train=y_train, x_test=x_test, y_test=y_test)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**6)}
    )
    with zipfile.ZipFile(cache_copy, "a") as archive:
        archive.writestr("x_train.npy", header.getvalue())

    _, state = mnist_cache_status(cache_copy.parent)

    assert state == (
        f"{cache_copy}: x_train's header claims uint8 (1000000, 1000000), "
        "expected uint8 (60000, 28, 28)"
    )


def test_a_lone_npy_array_as_the_cache_is_reported_as_unreadable(cache_copy, mnist):
    _, (_, y_test) = mnist
    with open(cache_copy, "wb") as handle:
        np.save(handle, y_test)

    _, state = mnist_cache_status(cache_copy.parent)

    assert state == f"{cache_copy}: unreadable cache (not an .npz archive)"

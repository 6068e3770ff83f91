"""The IDX file format (the one MNIST ships in): read and write, gzip or raw.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the values, big-endian, C order.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np

from digitlab.atomic import atomic_write_bytes
from digitlab.errors import ChecksumError, DataError

_TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND: dict[tuple[str, int], int] = {
    (dtype.kind, dtype.itemsize): code for code, dtype in _TYPE_CODES.items()
}
_GZIP_MAGIC = b"\x1f\x8b"

PathLike = str | os.PathLike[str]


MAX_IDX_BYTES = 512 * 2**20
"""The most data one IDX file may declare: keeps one file's array (and its byte swap) under
1 GB of memory, and is ten times MNIST's training images."""

_TRAILING_PROBE = 2**16
"""How far past the declared data to look when reporting trailing bytes; no further, so a
file that inflates far beyond its header is never read whole."""


def _header(stream: io.BufferedIOBase, name: str) -> tuple[bytes, np.dtype, tuple[int, ...]]:
    """Read and check the header; return its bytes, the value type and the shape."""
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(magic)} bytes)")
    zero1, zero2, type_code, ndim = magic
    if zero1 or zero2 or type_code not in _TYPE_CODES:
        raise DataError(f"{name}: wrong magic number 0x{magic.hex()} (not an IDX file)")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        found, header_size = 4 + len(dims), 4 + 4 * ndim
        raise DataError(f"{name}: truncated header ({found} of {header_size} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    return magic + dims, _TYPE_CODES[type_code], shape


def _body(
    stream: io.BufferedIOBase, name: str, dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray:
    """The data's raw bytes (uint8): exactly what the header declares, at most `MAX_IDX_BYTES`."""
    # Python integers: a product of large dimensions must not wrap around as int64 would.
    expected = math.prod(shape) * dtype.itemsize
    if expected > MAX_IDX_BYTES:
        raise DataError(
            f"{name}: its header declares shape {shape}, {expected:,} bytes of data, "
            f"over digitlab's limit of {MAX_IDX_BYTES:,} bytes"
        )
    body = np.empty(expected, dtype=np.uint8)
    view, found = body.data, 0
    while found < expected and (count := stream.readinto(view[found:])):
        found += count
    if found < expected:
        raise DataError(f"{name}: truncated body ({found} of {expected} bytes of data)")
    extra = len(stream.read(_TRAILING_PROBE))
    if extra:
        amount = f"{extra}" if extra < _TRAILING_PROBE else f"at least {extra}"
        raise DataError(f"{name}: {amount} unexpected bytes after the data")
    return body


def _read_stream(stream: io.BufferedIOBase, name: str) -> tuple[np.ndarray, str]:
    """The array in an uncompressed IDX stream and the SHA-256 of the bytes read."""
    header, dtype, shape = _header(stream, name)
    body = _body(stream, name, dtype, shape)
    digest = hashlib.sha256(header)
    digest.update(body.data)
    array = body.view(dtype).reshape(shape)
    if not dtype.isnative:
        # In place: a copy would double the memory a large file takes.
        array = array.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return array, digest.hexdigest()


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file; `name` is used in error messages."""
    return _read_stream(io.BytesIO(raw), name)[0]


def read_idx(path: PathLike, sha256: str | None = None) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) into a native-endian numpy array.

    The header is checked before any data is read, and reading stops at the size it
    declares, so a small gzip file that inflates to gigabytes is refused early.
    `sha256`, when given, is the expected SHA-256 of the decompressed file.
    Raises `DataError` naming the file for a missing file, a corrupt gzip stream, a
    wrong magic number, a truncated header or body, trailing bytes or more data than
    `MAX_IDX_BYTES`, and `ChecksumError` when the contents do not match `sha256`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            compressed = handle.read(2) == _GZIP_MAGIC
            handle.seek(0)
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=handle) if compressed else handle
            array, digest = _read_stream(stream, str(path))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DataError(f"{path}: corrupt gzip stream ({error})") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None
    if sha256 is not None and digest != sha256:
        raise ChecksumError(
            f"{path}: SHA-256 {digest[:16]}... does not match the expected {sha256[:16]}..."
        )
    return array


def encode_idx(array: np.ndarray) -> bytes:
    """The bytes of an uncompressed IDX file holding `array`."""
    array = np.asarray(array)
    code = _CODE_OF_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        valid = ", ".join(str(dtype.newbyteorder("=")) for dtype in _TYPE_CODES.values())
        raise DataError(f"IDX cannot store dtype {array.dtype}; use one of {valid}")
    if not 1 <= array.ndim <= 255:
        raise DataError(f"IDX stores 1 to 255 dimensions, not {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise DataError(f"IDX dimensions must be below 2**32, got shape {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array, dtype=_TYPE_CODES[code]).tobytes()


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write `array` as an IDX file, gzip-compressed when `path` ends in `.gz`, atomically."""
    path = Path(path)
    payload = encode_idx(array)
    if path.suffix == ".gz":
        # mtime=0 keeps the file identical for identical arrays; level 6 is zlib's own
        # default, several times faster than gzip's 9 for a file barely larger.
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    atomic_write_bytes(path, payload)


_SPLIT_FILES = {
    "train_images": "train-images",
    "train_labels": "train-labels",
    "test_images": "t10k-images",
    "test_labels": "t10k-labels",
}


def _split_file_candidates(folder: Path, stem: str) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.name.startswith(stem) and "idx" in p.name
    )


def _find_split_file(folder: Path, stem: str) -> Path:
    candidates = _split_file_candidates(folder, stem)
    if not candidates:
        raise DataError(f"{folder}: no {stem}*idx* file (expected e.g. {stem}-idx3-ubyte.gz)")
    return candidates[0]


def _check_pair(
    images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path, num_classes: int
) -> None:
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{images_path}: expected uint8 images N x H x W, got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise DataError(f"{labels_path}: expected a 1-D integer label array, got {labels.shape}")
    if len(images) != len(labels):
        raise DataError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise DataError(
            f"{labels_path}: label {int(labels[bad[0]])} at index {int(bad[0])} "
            f"outside 0..{num_classes - 1}"
        )


def is_idx_folder(folder: PathLike) -> bool:
    """Whether `folder` looks like an IDX dataset (it holds a `train-images*idx*` file)."""
    folder = Path(folder)
    return folder.is_dir() and bool(_split_file_candidates(folder, _SPLIT_FILES["train_images"]))


def load_idx_dataset(
    folder: PathLike, num_classes: int = 10, sha256: dict[str, str] | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load an MNIST-format dataset from the four standard IDX files in `folder`.

    The files are found by their standard stems (`train-images`, `train-labels`,
    `t10k-images`, `t10k-labels`), gzip or raw. `sha256` optionally maps a stem to
    the expected SHA-256 of that file's decompressed contents. Returns
    `((x_train, y_train), (x_test, y_test))` with uint8 images and uint8 labels.
    Raises `DataError` for a missing folder or file, a malformed file, mismatched
    counts or a label outside `0..num_classes-1`; `ChecksumError` for a checksum mismatch.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    expected = sha256 or {}
    paths = {key: _find_split_file(folder, stem) for key, stem in _SPLIT_FILES.items()}
    arrays = {key: read_idx(path, expected.get(_SPLIT_FILES[key])) for key, path in paths.items()}
    for split in ("train", "test"):
        _check_pair(
            arrays[f"{split}_images"],
            arrays[f"{split}_labels"],
            paths[f"{split}_images"],
            paths[f"{split}_labels"],
            num_classes,
        )
    return (
        (arrays["train_images"], arrays["train_labels"].astype(np.uint8)),
        (arrays["test_images"], arrays["test_labels"].astype(np.uint8)),
    )

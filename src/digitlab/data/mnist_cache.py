"""MNIST's verified cache: where it lives, the checksums its arrays must match, reading it
and writing it atomically.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import platformdirs

from digitlab.atomic import atomic_path
from digitlab.errors import ChecksumError, DataError

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""((x_train, y_train), (x_test, y_test)), as `keras.datasets.mnist.load_data()` returns them."""

MNIST_SHA256 = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
MNIST_SHAPES = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}

CACHE_FILE = "mnist.npz"


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: `override`, else `$DIGITLAB_CACHE`, else the user cache folder."""
    if override is not None:
        return Path(override)
    env = os.environ.get("DIGITLAB_CACHE")
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("digitlab"))


def sha256_hex(data: bytes | memoryview) -> str:
    """The SHA-256 of `data` as 64 hex digits, the form the known checksums are written in."""
    return hashlib.sha256(data).hexdigest()


def verify_mnist(arrays: Arrays, origin: str) -> dict[str, str]:
    """Check shapes, dtypes and SHA-256 of the four MNIST arrays; return their checksums.

    Raises `ChecksumError` naming `origin` and the first array that does not match.
    """
    (x_train, y_train), (x_test, y_test) = arrays
    named = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    sums = {}
    for name, array in named.items():
        if array.dtype != np.uint8 or array.shape != MNIST_SHAPES[name]:
            raise ChecksumError(
                f"{origin}: {name} is {array.dtype} {array.shape}, "
                f"expected uint8 {MNIST_SHAPES[name]}"
            )
        digest = sha256_hex(np.ascontiguousarray(array).tobytes())
        if digest != MNIST_SHA256[name]:
            raise ChecksumError(f"{origin}: {name} SHA-256 {digest[:16]}... does not match MNIST")
        sums[name] = digest
    return sums


def _check_cache_headers(archive: zipfile.ZipFile, path: Path) -> None:
    """Check each array's type and shape in its .npy header, before numpy allocates it.

    A damaged header could otherwise claim 10**12 elements and exhaust memory.
    """
    readers = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }
    for name, shape in MNIST_SHAPES.items():
        with archive.open(f"{name}.npy") as member:
            version = np.lib.format.read_magic(member)
            if version not in readers:
                raise ChecksumError(f"{path}: {name} is in .npy format {version}, not 1.0 or 2.0")
            found, _, dtype = readers[version](member)
        if dtype != np.uint8 or found != shape:
            raise ChecksumError(
                f"{path}: {name}'s header claims {dtype} {found}, expected uint8 {shape}"
            )


def read_cache(path: Path) -> Arrays:
    """The arrays in the cache file at `path`, unverified; `ChecksumError` when unreadable."""
    try:
        with open(path, "rb") as handle:
            # np.load would read a lone .npy array whole, whatever size its header claims.
            if handle.read(4) != b"PK\x03\x04":
                raise ValueError("not an .npz archive")
        with np.load(path, allow_pickle=False) as npz:
            _check_cache_headers(npz.zip, path)
            return (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise ChecksumError(f"{path}: unreadable cache ({error})") from None


def write_cache(path: Path, arrays: Arrays) -> None:
    """Write `arrays` to the cache file at `path` atomically; `DataError` when it cannot."""
    (x_train, y_train), (x_test, y_test) = arrays
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    except OSError as error:
        raise DataError(f"{path}: cannot write the cache ({error.strerror or error})") from None


def mnist_cache_status(
    cache_dir_override: str | os.PathLike[str] | None = None,
) -> tuple[Path, str]:
    """Where the MNIST cache is and its state: "verified", "not cached", or the problem found.

    Reads and checks the cache but never fetches or changes it.
    """
    path = cache_dir(cache_dir_override) / CACHE_FILE
    if not path.exists():
        return path, "not cached"
    try:
        verify_mnist(read_cache(path), str(path))
    except DataError as error:
        return path, str(error)
    return path, "verified"

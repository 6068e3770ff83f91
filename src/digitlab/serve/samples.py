"""A person's labelled digits, kept for teaching the model their handwriting.

The store is one folder laid out as a class-folder tree, `ROOT/<label>/<id>.png`, which
`digitlab finetune` reads as it is. Each sample is the 28x28 image the model saw (white ink
on black, as `to_mnist` makes it): a few hundred bytes whatever was uploaded, and read back
by `to_mnist` unchanged. Every name under the root is made here: the label is an int 0..9
and the id random hex, so no request can name a path, and each file is written atomically,
so a server killed mid-write leaves the old set of samples and at most a hidden temporary
that class-folder readers skip. A lock file makes the cap exact when several server
processes store at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from digitlab.atomic import atomic_write_bytes
from digitlab.errors import SamplesError, SamplesFullError

#: Samples a store holds at most, unless told otherwise.
DEFAULT_MAX_SAMPLES = 10_000

#: The labels a sample may have: the ten digits.
LABELS = tuple(range(10))

#: What a sample id looks like: 32 lowercase hex digits (128 random bits).
SAMPLE_ID_PATTERN = r"^[0-9a-f]{32}$"

_SAMPLE_ID = re.compile(SAMPLE_ID_PATTERN)
_SAMPLE_FILE = re.compile(r"[0-9a-f]{32}\.png")
_LOCK_NAME = ".lock"


def default_samples_dir() -> Path:
    """The samples folder used when none is named: `samples` in the user's data folder."""
    import platformdirs

    return Path(platformdirs.user_data_dir("digitlab")) / "samples"


class SampleStore:
    """The samples in `root` (made on first write), at most `max_samples` of them."""

    def __init__(self, root: str | os.PathLike[str], max_samples: int = DEFAULT_MAX_SAMPLES):
        if max_samples < 1:
            raise SamplesError(f"the cap on stored samples must be at least 1, not {max_samples}")
        self.root = Path(root)
        self.max_samples = max_samples

    def add(self, pixels: np.ndarray, label: int) -> str:
        """Store a 28x28 uint8 image (white ink on black) as a sample of `label`; return
        its new id. Raises `SamplesError` for a label outside 0..9 or another shape, and
        `SamplesFullError` when the store already holds `max_samples`."""
        if isinstance(label, bool) or not isinstance(label, int) or label not in LABELS:
            raise SamplesError(f"{label!r} is not a digit label: a sample's label is 0..9")
        if pixels.shape != (28, 28) or pixels.dtype != np.uint8:
            raise SamplesError(
                f"a sample is a 28x28 uint8 image, not {pixels.dtype} of shape {pixels.shape}"
            )
        png = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(png, format="PNG")
        sample_id = secrets.token_hex(16)
        with self._locked():
            if self.total() >= self.max_samples:
                raise SamplesFullError(
                    f"{self.root}: the samples folder holds {self.max_samples:,} samples, its "
                    "cap; delete some before storing more"
                )
            atomic_write_bytes(self._path(label, sample_id), png.getvalue())
        return sample_id

    def delete(self, sample_id: str) -> bool:
        """Delete the sample `sample_id`; False when there is none (or the id is malformed)."""
        if not _SAMPLE_ID.fullmatch(sample_id):
            return False
        with self._locked():
            for label in LABELS:
                with contextlib.suppress(FileNotFoundError):
                    self._path(label, sample_id).unlink()
                    return True
        return False

    def counts(self) -> dict[int, int]:
        """How many samples each label 0..9 has."""
        return {label: len(self._ids(label)) for label in LABELS}

    def total(self) -> int:
        """How many samples the store holds."""
        return sum(self.counts().values())

    def snapshot(self, target: str | os.PathLike[str]) -> int:
        """Copy every sample into the class-folder tree `target` (which must not exist yet),
        so that a fine-tune reads a set that uploads and deletions cannot change under it;
        return how many were copied."""
        target = Path(target)
        target.mkdir(parents=True)
        copied = 0
        with self._locked():
            for label in LABELS:
                (target / str(label)).mkdir()
                for sample_id in self._ids(label):
                    path = self._path(label, sample_id)
                    (target / str(label) / path.name).write_bytes(path.read_bytes())
                    copied += 1
        return copied

    def _ids(self, label: int) -> list[str]:
        try:
            names = os.listdir(self.root / str(label))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [name.removesuffix(".png") for name in names if _SAMPLE_FILE.fullmatch(name)]

    def _path(self, label: int, sample_id: str) -> Path:
        return self.root / str(label) / f"{sample_id}.png"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the store's lock: one process at a time counts and changes the samples."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / _LOCK_NAME, "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

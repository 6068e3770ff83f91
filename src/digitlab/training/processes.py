"""A process's share of a training run, and what only one process of a run may do.

`train` runs the same way in one process or as one of several data-parallel processes
(`digitlab.distributed`): these helpers say which share of the data and the batch this
process takes, where it writes, and let it run work of its own outside the distribution.
On one process (the default) they are the identity.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from digitlab.errors import ConfigError

if TYPE_CHECKING:
    import keras


@dataclass(frozen=True)
class ProcessShare:
    """This process's place in a data-parallel run: `index` of `count` processes."""

    index: int = 0
    count: int = 1

    @property
    def is_writer(self) -> bool:
        """Process 0 alone writes the run folder."""
        return self.index == 0

    def shard(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """Every `count`-th item from `index` on, cut to the same length on every process.

        Equal lengths give every process the same number of steps per epoch, which the
        collectives need; up to `count - 1` items are left out.
        """
        size = len(arrays[0]) // self.count
        return tuple(array[self.index :: self.count][:size] for array in arrays)

    def local_batch_size(self, batch_size: int) -> int:
        """Images per step on this process, for a global batch of `batch_size`.

        Raises `ConfigError` when `batch_size` does not split evenly.
        """
        if batch_size % self.count:
            raise ConfigError(
                f"batch_size {batch_size} does not split evenly over {self.count} "
                f"processes; use a multiple of {self.count}"
            )
        return batch_size // self.count


def current_process() -> ProcessShare:
    """This process's share: (0 of 1) unless a Keras distribution is set on JAX."""
    import keras

    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        return ProcessShare()
    import jax

    return ProcessShare(jax.process_index(), jax.process_count())


@contextlib.contextmanager
def scratch_run_dir(process: ProcessShare, run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Where `process` writes its run files: `run_dir` for process 0; for the others a
    private temporary folder (with `checkpoints/`), deleted on leaving the block."""
    if process.is_writer:
        yield Path(run_dir)
        return
    with tempfile.TemporaryDirectory(prefix=f"digitlab-process{process.index}-") as scratch:
        (Path(scratch) / "checkpoints").mkdir()
        yield Path(scratch)


@contextlib.contextmanager
def process_local() -> Iterator[None]:
    """Run Keras computations that only this process does (a figure) outside the
    distribution: under it, they would enter collectives the other processes never join."""
    import keras

    current = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(current)


def weights_checksum(model: keras.Model) -> str:
    """SHA-256 over the names, shapes, dtypes and values of all of `model`'s weights."""
    import keras

    digest = hashlib.sha256()
    for variable in model.weights:
        values = np.ascontiguousarray(keras.ops.convert_to_numpy(variable.value))
        digest.update(f"{variable.path}:{values.dtype}:{values.shape};".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()

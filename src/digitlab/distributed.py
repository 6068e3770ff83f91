"""Data-parallel training over several processes with Keras 3's distribution API on JAX.

One process per machine (or per GPU) runs the same `digitlab train` command with a shared
coordinator address, the number of processes and its own index:

    settings = DistributedSettings("10.0.0.1:7070", num_processes=2, process_id=0)
    result = train_distributed(settings, config, out="runs/big")

Each process joins JAX's distributed runtime (Gloo collectives on CPU, NCCL on GPUs), the
processes check that they agree on their settings, and `keras.distribution.DataParallel`
replicates the model and averages the gradients. Each process feeds only its own shard of
the data (`auto_shard_dataset=False`), `batch_size / num_processes` images per step, so the
global batch is the configured batch size. Process 0 alone writes the run folder; at the end
every process's weight checksum is gathered into `distributed.json` there.

`tf.distribute.MultiWorkerMirroredStrategy` is not used: it does not work with Keras 3's
`fit` (keras-team/keras#20585).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from digitlab.errors import ConfigError, DigitlabError
from digitlab.training.run_folder import RunFolder

if TYPE_CHECKING:
    from digitlab.training.config import TrainConfig
    from digitlab.training.loop import RunResult

ENV_COORDINATOR = "DIGITLAB_COORDINATOR"
ENV_NUM_PROCESSES = "DIGITLAB_NUM_PROCESSES"
ENV_PROCESS_ID = "DIGITLAB_PROCESS_ID"


class DistributedError(DigitlabError):
    """Distributed training cannot start or its processes went out of step."""


@dataclass(frozen=True)
class DistributedSettings:
    """Where a process finds the others: the coordinator `HOST:PORT` (process 0's address),
    how many processes take part and which one this is (0 .. num_processes - 1)."""

    coordinator: str
    num_processes: int
    process_id: int

    def __post_init__(self) -> None:
        host, _, port = self.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"coordinator {self.coordinator!r}: expected HOST:PORT")
        if self.num_processes < 1:
            raise ConfigError(f"num_processes must be at least 1, got {self.num_processes}")
        if not 0 <= self.process_id < self.num_processes:
            raise ConfigError(
                f"process_id must be between 0 and {self.num_processes - 1}, got {self.process_id}"
            )


def resolve_settings(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> DistributedSettings | None:
    """The distributed settings from arguments, else `DIGITLAB_COORDINATOR`,
    `DIGITLAB_NUM_PROCESSES` and `DIGITLAB_PROCESS_ID`; None when none of the three is set.

    Raises `ConfigError` when only some are set or one is invalid.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, str | int | None] = {
        ENV_COORDINATOR: coordinator if coordinator is not None else environ.get(ENV_COORDINATOR),
        ENV_NUM_PROCESSES: num_processes
        if num_processes is not None
        else environ.get(ENV_NUM_PROCESSES),
        ENV_PROCESS_ID: process_id if process_id is not None else environ.get(ENV_PROCESS_ID),
    }
    given = {name: value for name, value in values.items() if value not in (None, "")}
    if not given:
        return None
    if len(given) < len(values):
        raise ConfigError(
            "distributed training needs all three of --coordinator, --num-processes and "
            f"--process-id (or {', '.join(values)}); missing: "
            + ", ".join(name for name in values if name not in given)
        )
    try:
        count, index = int(given[ENV_NUM_PROCESSES]), int(given[ENV_PROCESS_ID])
    except ValueError:
        raise ConfigError(
            f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} must be integers, got "
            f"{given[ENV_NUM_PROCESSES]!r} and {given[ENV_PROCESS_ID]!r}"
        ) from None
    return DistributedSettings(str(given[ENV_COORDINATOR]), count, index)


def require_jax_backend() -> None:
    """Raise `DistributedError` unless Keras runs on JAX and JAX is installed."""
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        raise DistributedError(
            "distributed training needs KERAS_BACKEND=jax; this process runs the "
            f"{backend} backend (export KERAS_BACKEND=jax, after pip install 'digitlab[jax]')"
        )


def _wait_for_coordinator(settings: DistributedSettings, deadline: float) -> None:
    """Wait until the coordinator accepts TCP connections; raise `DistributedError` at the
    deadline. JAX alone would retry silently for its whole initialisation timeout."""
    host, _, port = settings.coordinator.rpartition(":")
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=2.0):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise DistributedError(
                    f"coordinator {settings.coordinator} not reachable within the timeout "
                    f"(process {settings.process_id} of {settings.num_processes}: {error}); "
                    "start process 0 there, or check the address, port and firewall"
                ) from None
            time.sleep(0.5)


def initialize(settings: DistributedSettings, timeout: float = 120.0) -> None:
    """Join the JAX distributed runtime as process `settings.process_id`.

    Call once per process, before any Keras or JAX computation. `timeout` bounds, in
    seconds, both reaching the coordinator and the wait for all processes to join.
    Raises `DistributedError` when the backend is not JAX, the coordinator cannot be
    reached, or the processes do not all join in time.
    """
    require_jax_backend()
    import jax

    deadline = time.monotonic() + timeout
    # CPU collectives across processes need Gloo; GPUs use NCCL without being asked. (Asking
    # JAX which platform it runs on would start its backend, too early for `initialize`.)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # type: ignore[no-untyped-call]
    if settings.process_id != 0:
        _wait_for_coordinator(settings, deadline)
    try:
        # What keras.distribution.initialize(coordinator, num_processes, process_id) does
        # on JAX, plus a join timeout, which Keras does not pass on (JAX's default is 300 s).
        # Keras's cross-process seed agreement is not needed: `train` seeds every process.
        jax.distributed.initialize(
            coordinator_address=settings.coordinator,
            num_processes=settings.num_processes,
            process_id=settings.process_id,
            initialization_timeout=max(1, int(deadline - time.monotonic())),
        )
    except Exception as error:  # JAX raises XlaRuntimeError and RuntimeError here.
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise DistributedError(
            f"process {settings.process_id} of {settings.num_processes} could not join the "
            f"run at {settings.coordinator} within {timeout:.0f} s ({reason})"
        ) from None


def gather_digests(hex_digest: str) -> list[str]:
    """Every process's `hex_digest` (all the same length), in process order: an all-gather."""
    from jax.experimental import multihost_utils

    local = np.frombuffer(bytes.fromhex(hex_digest), dtype=np.uint8)
    gathered = np.asarray(multihost_utils.process_allgather(local))
    return [row.tobytes().hex() for row in gathered.reshape(-1, local.size)]


def check_agreement(fingerprint: str) -> None:
    """Raise `DistributedError` on every process unless all passed the same `fingerprint`."""
    digests = gather_digests(hashlib.sha256(fingerprint.encode()).hexdigest())
    differing = [str(index) for index, digest in enumerate(digests) if digest != digests[0]]
    if differing:
        raise DistributedError(
            f"processes disagree on their settings: process(es) {', '.join(differing)} differ "
            "from process 0 (config, run folder or versions); give every process the same "
            "flags, config file, --out or --resume, and the same installation"
        )


def settings_fingerprint(
    config: TrainConfig | None,
    out: str | os.PathLike[str] | None,
    resume: str | os.PathLike[str] | None,
) -> str:
    """A text that processes meant to train together produce identically."""
    import keras

    import digitlab

    return json.dumps(
        {
            "config": None if config is None else config.to_dict(),
            "out": None if out is None else str(out),
            "resume": None if resume is None else str(resume),
            "versions": [digitlab.__version__, keras.__version__, keras.backend.backend()],
        },
        sort_keys=True,
    )


def train_distributed(
    settings: DistributedSettings,
    config: TrainConfig | None = None,
    out: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    verbose: int | str = "auto",
    timeout: float = 120.0,
) -> RunResult:
    """Run this process's part of a data-parallel `digitlab.training.loop.train`.

    Every process passes the same `config`, `out` (required for a new run: a default
    folder name would differ between processes) or `resume`; `resume` needs the run
    folder on storage every process can read. Process 0 writes the run folder, with
    `distributed.json` holding every process's final weight checksum.
    Raises `DistributedError` when the processes cannot start together, disagree on
    their settings, or end with different weights; whatever `train` raises.
    """
    import keras

    from digitlab.training.loop import train

    if out is None and resume is None:
        raise ConfigError(
            "distributed training needs --out RUN_DIR (the same on every process) or --resume"
        )
    initialize(settings, timeout)
    check_agreement(settings_fingerprint(config, out, resume))
    keras.distribution.set_distribution(keras.distribution.DataParallel(auto_shard_dataset=False))
    result = train(config, out=out, resume=resume, verbose=verbose)
    checksums = gather_digests(result.weights_sha256)
    if settings.process_id == 0:
        from digitlab.atomic import atomic_write_text

        record = {
            "num_processes": settings.num_processes,
            "coordinator": settings.coordinator,
            "weights_sha256": checksums,
        }
        atomic_write_text(RunFolder(result.run_dir).distributed, json.dumps(record, indent=2))
    if len(set(checksums)) > 1:
        raise DistributedError(
            f"{result.run_dir}: the processes ended with different weights "
            f"(weights_sha256 per process: {', '.join(c[:12] for c in checksums)})"
        )
    return result


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])

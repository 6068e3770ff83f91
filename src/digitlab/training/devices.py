"""Threads and devices of one training process: how many cores TensorFlow uses, and on
which devices a model trains (one, or several mirrored with `tf.distribute.MirroredStrategy`).

    configure_threads(4)                  # before TensorFlow runs anything
    strategy = training_strategy("cpu:2")  # MirroredStrategy over /cpu:0 and /cpu:1
    with strategy.scope():
        model = build_model("mlp")
        model.compile(...)
    model.fit(x, y, batch_size=64)         # 64 images per step in all, 32 on each replica

`prepare_training(config)` does both for `digitlab.training.loop.train`, and its `Placement`
holds what a run needs under several replicas (even batches, the steps per execution).

A device request (`--device`, `TrainConfig.device`) is one of:

    auto (or None)   one device, or every GPU mirrored when more than one GPU is visible
    cpu              the CPU only, even where there are GPUs
    gpu              every GPU (mirrored when more than one); an error when there is none
    cpu:N            split the CPU into N logical devices and mirror over them: a way to try
                     multi-device training without GPUs; it does not make training faster
    /gpu:0,/gpu:1    exactly these TensorFlow devices, mirrored (`/cpu:K` beyond `/cpu:0`
                     splits the CPU into K + 1 logical devices first)

Thread counts and logical devices can only be set before TensorFlow starts its runtime
(the first operation or device query); afterwards a request that differs from what is in
effect raises `ConfigError`. Explicit devices need the TensorFlow backend; the JAX backend
scales out with `digitlab.distributed` instead.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from digitlab.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import tensorflow as tf

    from digitlab.training.config import TrainConfig

# Each TensorFlow thread pool: the environment variable TensorFlow reads for it when none is
# configured (tensorflow/core/common_runtime/process_util.cc), and its tf.config.threading name.
_POOLS = {
    "intra_op": ("TF_NUM_INTRAOP_THREADS", "intra_op_parallelism_threads"),
    "inter_op": ("TF_NUM_INTEROP_THREADS", "inter_op_parallelism_threads"),
}
_DEVICE_NAME = re.compile(r"/(?:device:)?(cpu|gpu):(\d+)", re.IGNORECASE)
_CPU_SPLIT = re.compile(r"cpu:(\d+)", re.IGNORECASE)
_TOO_LATE = "TensorFlow has already started in this process; "


@dataclass(frozen=True)
class DeviceRequest:
    """A parsed device request: `kind` is "auto", "cpu", "gpu", "split" (the CPU cut into
    `logical_cpus` devices) or "list" (the TensorFlow device names in `devices`)."""

    kind: str
    devices: tuple[str, ...] = ()
    logical_cpus: int = 1


def parse_device(spec: str | None) -> DeviceRequest:
    """Read a device request (see the module doc) without starting TensorFlow.

    Raises `ConfigError` naming the valid forms when `spec` is none of them.
    """
    text = (spec or "auto").strip().lower()
    if text in ("auto", "cpu", "gpu"):
        return DeviceRequest(text)
    split = _CPU_SPLIT.fullmatch(text)
    if split:
        count = int(split.group(1))
        if count < 1:
            raise ConfigError(f"device {spec!r}: the CPU splits into at least 1 device")
        return DeviceRequest("cpu") if count == 1 else DeviceRequest("split", (), count)
    if re.fullmatch(r"gpu:\d+", text):
        raise ConfigError(
            f"device {spec!r}: write /{text} for that GPU (only the CPU splits, as cpu:N)"
        )
    names = [part.strip() for part in text.split(",")]
    matches = [_DEVICE_NAME.fullmatch(name) for name in names]
    if not all(matches):
        raise ConfigError(
            f"device {spec!r} is unknown; valid: auto, cpu, gpu, cpu:N (split the CPU into "
            "N devices), or a comma-separated list of TensorFlow devices like /gpu:0,/gpu:1"
        )
    devices = tuple(f"/{match.group(1)}:{int(match.group(2))}" for match in matches if match)
    if len(set(devices)) < len(devices):
        raise ConfigError(f"device {spec!r} names a device twice")
    cpu_indices = [int(name.rsplit(":", 1)[1]) for name in devices if name.startswith("/cpu")]
    return DeviceRequest("list", devices, max(cpu_indices, default=0) + 1)


def usable_cores() -> int:
    """The number of CPU cores this process may run on (its affinity mask, where the OS
    has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _keras_backend() -> str:
    import keras

    return str(keras.backend.backend())


def configure_threads(threads: int | None) -> None:
    """Set TensorFlow's intra-op and inter-op thread pools to `threads` threads each.

    None asks for every core the process may use (`usable_cores()`), except for a pool
    whose environment variable (`TF_NUM_INTRAOP_THREADS`, `TF_NUM_INTEROP_THREADS`) is set:
    TensorFlow reads that itself. None never fails: once TensorFlow has started, its
    pools are left as they are. Call it before TensorFlow runs anything.

    On the JAX backend None does nothing (XLA uses every core the process may use) and a
    number raises `ConfigError`: XLA has no thread-count setting; `taskset` limits the cores.
    Raises `ConfigError` for `threads` < 1, or when TensorFlow has already started with
    other thread counts.
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    if _keras_backend() != "tensorflow":
        if threads is not None:
            raise ConfigError(
                f"threads={threads}: the {_keras_backend()} backend has no thread-count "
                "setting; limit its cores with taskset instead (taskset -c 0-3 digitlab train)"
            )
        return
    import tensorflow as tf

    for variable, name in _POOLS.values():
        if threads is None and os.environ.get(variable):
            continue
        try:
            getattr(tf.config.threading, f"set_{name}")(threads or usable_cores())
        except RuntimeError:
            if threads is not None:
                raise ConfigError(
                    f"threads={threads}: {_TOO_LATE}set the threads before anything runs "
                    "(the --threads option, or configure_threads first in a new process)"
                ) from None


def thread_counts() -> dict[str, int]:
    """The sizes of TensorFlow's "intra_op" and "inter_op" thread pools: as configured, else
    from the environment variable, else the default (every usable core)."""
    import tensorflow as tf

    counts = {}
    for pool, (variable, name) in _POOLS.items():
        from_environment = os.environ.get(variable, "")
        counts[pool] = (
            getattr(tf.config.threading, f"get_{name}")()
            or (int(from_environment) if from_environment.isdigit() else 0)
            or usable_cores()
        )
    return counts


def split_cpu(count: int) -> None:
    """Split the CPU into `count` logical devices, `/cpu:0` .. `/cpu:{count - 1}`, which
    share the cores and the thread pools. For trying multi-device training without GPUs.

    Repeating the split in effect is harmless. Raises `ConfigError` for `count` < 1 or
    when TensorFlow has already started with another split.
    """
    if count < 1:
        raise ConfigError(f"the CPU splits into at least 1 device, got {count}")
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or [cpu]) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError:
        raise ConfigError(
            f"cannot split the CPU into {count} devices: {_TOO_LATE}ask for it before "
            "anything runs (the --device option, or split_cpu first in a new process)"
        ) from None


def training_strategy(device: str | None = None) -> tf.distribute.Strategy | None:
    """The `tf.distribute` strategy for a device request (see the module doc).

    Returns the default strategy (one device) or a `OneDeviceStrategy` for one device, a
    `MirroredStrategy` for several: build and compile the model inside its `scope()`,
    and `fit` splits each batch between the replicas. On another backend returns None
    for "auto". Raises `ConfigError` for an invalid request, devices that are not there,
    a CPU split asked for too late, or an explicit request on a backend other than
    TensorFlow.
    """
    request = parse_device(device)
    if _keras_backend() != "tensorflow":
        if request.kind != "auto":
            raise ConfigError(
                f"device {device!r} needs the TensorFlow backend (KERAS_BACKEND=tensorflow); "
                "on JAX, train on several devices with --local-processes or --coordinator "
                "(docs/distributed.md)"
            )
        return None
    import tensorflow as tf

    gpus = [f"/gpu:{index}" for index in range(len(tf.config.list_physical_devices("GPU")))]
    if request.kind == "auto":
        devices = gpus if len(gpus) > 1 else []
    elif request.kind == "cpu":
        devices = ["/cpu:0"]
    elif request.kind == "gpu":
        if not gpus:
            raise ConfigError(f"device {device!r}: TensorFlow sees no GPU on this machine")
        devices = gpus
    else:
        missing = [name for name in request.devices if name[:4] == "/gpu" and name not in gpus]
        if missing:
            raise ConfigError(
                f"device {device!r}: no {', '.join(missing)} on this machine; "
                f"GPUs seen: {', '.join(gpus) or 'none'}"
            )
        split_cpu(request.logical_cpus)
        devices = list(request.devices) or [f"/cpu:{i}" for i in range(request.logical_cpus)]
    if not devices:
        return tf.distribute.get_strategy()
    if len(devices) == 1:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.MirroredStrategy(devices=devices)


@dataclass
class Placement:
    """Where a training run executes: its `tf.distribute` strategy (None on a backend
    without one), the device request it came from, and the number of model replicas."""

    strategy: Any
    device: str = "auto"
    replicas: int = field(init=False)

    def __post_init__(self) -> None:
        if self.strategy is not None:
            self.replicas = self.strategy.num_replicas_in_sync
        else:
            import keras

            # A Keras distribution (digitlab.distributed sets DataParallel on JAX) spans
            # every device in its mesh.
            distribution = keras.distribution.distribution()
            self.replicas = 1 if distribution is None else distribution.device_mesh.devices.size

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Build, compile and restore the model inside this (the strategy's scope)."""
        with self.strategy.scope() if self.strategy is not None else contextlib.nullcontext():
            yield

    def trim(self, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """`arrays` cut to a multiple of the replicas (up to `replicas - 1` items left out).

        With a batch size that is a multiple too, every batch, the last included, splits
        evenly: a replica left with no images makes batch normalisation's statistics NaN,
        and Keras 3.15 fails on a first batch whose shares differ in size.
        """
        if self.strategy is None:
            return arrays
        size = len(arrays[0]) // self.replicas * self.replicas
        return tuple(array[:size] for array in arrays)

    def steps_per_execution(self, requested: int) -> int:
        """The `steps_per_execution` to compile with: `requested`, or 1 over several
        replicas, where Keras 3.15's multi-step loop fails under `MirroredStrategy`
        ("You must feed a value for placeholder tensor", as in keras-team/keras#19246)."""
        return requested if self.replicas == 1 else 1

    def summary(self) -> dict[str, Any]:
        """What a run folder's summary records: replicas, the device request, the cores
        the process may use and (on TensorFlow) its thread-pool sizes."""
        record: dict[str, Any] = {
            "replicas": self.replicas,
            "device": self.device,
            "cores": usable_cores(),
        }
        if self.strategy is not None:
            record["threads"] = thread_counts()
        return record


def prepare_training(config: TrainConfig) -> Placement:
    """Configure the threads, then the devices, of a training run with `config`; call it
    before anything runs. Raises what `configure_threads` and `training_strategy` raise,
    and `ConfigError` when the batch size does not split evenly over the replicas."""
    configure_threads(config.threads)
    placement = Placement(training_strategy(config.device), config.device or "auto")
    # On JAX, digitlab.distributed checks the split over its processes.
    if placement.strategy is not None and config.batch_size % placement.replicas:
        raise ConfigError(
            f"batch_size {config.batch_size} does not split evenly over {placement.replicas} "
            f"replicas (device {placement.device!r}); use a multiple of {placement.replicas}"
        )
    return placement

"""Start N distributed `digitlab train` workers on this machine and supervise them.

    run_local_processes(2, ["--out", "runs/try", "--epochs", "2"])

Each worker is `python -m digitlab train ARGS` with `KERAS_BACKEND=jax` and the
`DIGITLAB_COORDINATOR` (127.0.0.1 and a free port), `DIGITLAB_NUM_PROCESSES` and
`DIGITLAB_PROCESS_ID` variables set. Each runs in its own process group, so stopping a
worker stops whatever it started, and asks Linux to end it if this process dies. When a
worker fails, or on Ctrl-C, every worker is stopped: a distributed run cannot go on without
one of its processes, and a survivor would otherwise wait in a collective until JAX's
heartbeat timeout.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from digitlab.distributed import (
    ENV_COORDINATOR,
    ENV_NUM_PROCESSES,
    ENV_PROCESS_ID,
    DistributedError,
    free_port,
)
from digitlab.errors import ConfigError

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child before exec: Linux sends SIGTERM when the launcher dies, even by kill -9."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _describe_exit(code: int) -> str:
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def stop_workers(workers: Sequence[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM every worker's process group, then SIGKILL what is left after `grace` s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for worker in workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, sig)
        deadline = time.monotonic() + grace
        for worker in workers:
            try:
                worker.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                continue
        if all(worker.returncode is not None for worker in workers):
            return


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_local_processes(
    num_processes: int,
    train_arguments: Sequence[str],
    on_event: Callable[[str], None] | None = None,
    poll_seconds: float = 0.2,
) -> None:
    """Run `digitlab train TRAIN_ARGUMENTS` as `num_processes` distributed workers; wait.

    `on_event` receives one line per worker started. Returns when every worker exited
    with code 0. Raises `ConfigError` for fewer than 1 process or when JAX is missing,
    `DistributedError` (after stopping all others) when a worker fails, and
    `KeyboardInterrupt` (after stopping all) on Ctrl-C or SIGTERM.
    """
    if num_processes < 1:
        raise ConfigError(f"--local-processes must be at least 1, got {num_processes}")
    if importlib.util.find_spec("jax") is None:
        raise ConfigError("distributed training needs JAX: pip install 'digitlab[jax]'")
    report = on_event or (lambda line: None)
    coordinator = f"127.0.0.1:{free_port()}"
    base_env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        ENV_COORDINATOR: coordinator,
        ENV_NUM_PROCESSES: str(num_processes),
    }
    workers: list[subprocess.Popen[bytes]] = []
    previous_handler = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for index in range(num_processes):
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "digitlab", "train", *train_arguments],
                    env={**base_env, ENV_PROCESS_ID: str(index)},
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
            )
            report(
                f"Started worker {index} of {num_processes} (pid {workers[-1].pid}) "
                f"with coordinator {coordinator}"
            )
        while True:
            failed = [
                (index, worker)
                for index, worker in enumerate(workers)
                if worker.poll() not in (None, 0)
            ]
            if failed:
                # A worker killed by a signal is the cause; the others failed in its wake.
                index, worker = min(failed, key=lambda item: item[1].returncode > 0)
                stop_workers(workers)
                raise DistributedError(
                    f"worker {index} of {num_processes} (pid {worker.pid}) "
                    f"{_describe_exit(worker.returncode)}; stopped all the other workers"
                )
            if all(worker.returncode == 0 for worker in workers):
                return
            time.sleep(poll_seconds)
    finally:
        stop_workers(workers)
        signal.signal(signal.SIGTERM, previous_handler)

"""`POST /read`'s reader processes: a few processes that each take the next small image
from one queue and read the number in it.

Reading a number takes 10 to 40 ms of CPU, most of it Python, which holds the GIL: the
threads of one server process read one number at a time. With one server process per core,
each reading what its own connections send, a slow read holds up the reads queued behind it
while another core may idle; at 100 reads/s on two cores the slowest 1% waited over 100 ms
(`bench/serve_load.py --read`). Readers fed from one queue take the next read as soon as
any of them is free. The server process keeps the HTTP work, /predict's batches and the
images too large or too slow to decode for this lane (`uploads.py`'s lanes bound those).

Readers load the served model from its file, so they serve ONNX models only: a `.keras`
model would import TensorFlow in every reader. The server starts them before it answers
its first request; a taught model's readers start in the background. Until they are
ready, or if they fail, numbers are read in the server process as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from digitlab.reading import read_number
from digitlab.serve.uploads import wait_for_lane

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

    from digitlab.inference.predictor import Predictor
    from digitlab.reading import NumberReading

PARENT_CHECK_S = 1.0
"""How often a reader checks that its server is still there: a server killed outright
(SIGKILL) cannot stop its readers, which would otherwise wait for work forever."""

READER_NICENESS = 5
"""Readers run this much nicer than their server: when both want a core, the server's
short HTTP work (about 1.6 ms a request) goes first rather than waiting behind a read of
10 to 40 ms, which it would otherwise add to every answer's latency (`bench/serve_load.py
--read` at 100/s: p99 43.2 to 49.7 ms in seven runs, against 51.4 to 59.2 ms in three at
the server's priority; docs/reading.md)."""

START_TIMEOUT_S = 300.0
"""The longest a reader waits for the others to start (a reader that fails to start breaks
the pool; this bounds the wait if it hangs instead)."""

_reader: Predictor | None = None


class ReadersUnavailableError(Exception):
    """The readers stopped (a reader died, or the model was swapped while a read waited):
    read this image in the server process."""


class Readers:
    """`processes` reader processes for the ONNX model at `model`, which say "not a digit"
    below `not_digit_threshold`. Create inside the event loop; `close` when done."""

    def __init__(self, model: Path, not_digit_threshold: float, processes: int) -> None:
        self.processes = processes
        # A fresh interpreter: forking a process that runs threads (the event loop's, ONNX
        # Runtime's) may copy a lock some thread holds.
        context = multiprocessing.get_context("spawn")
        self._executor = ProcessPoolExecutor(
            processes,
            mp_context=context,
            initializer=_start_reader,
            initargs=(str(model), not_digit_threshold, os.getpid(), context.Barrier(processes)),
        )
        # Reads handed to the readers: two per reader, so that a reader that finishes one
        # finds the next already queued; the rest wait here in arrival order (and get 503
        # after `DECODE_WAIT_S`, as the decoding lanes do).
        self._lane = anyio.CapacityLimiter(2 * processes)

    async def start(self) -> None:
        """Start every reader and load the model in each. Raises `BrokenProcessPool` when
        a reader fails to start."""
        loop = asyncio.get_running_loop()
        # Each task submitted while none is idle starts a reader, here and now. A task runs
        # only once its reader has started, and none has until all have (`_start_reader`),
        # though one reader may run several of these tasks.
        with _ctrl_c_blocked():
            ready = [loop.run_in_executor(self._executor, _started) for _ in range(self.processes)]
        await asyncio.gather(*ready)

    async def read(self, data: bytes, name: str, max_memory_bytes: int) -> NumberReading:
        """`read_number(data)` in a reader: raises its `ImageError`s, 503 after waiting
        `DECODE_WAIT_S` for a free reader, and `ReadersUnavailableError` when the readers
        stopped."""
        loop = asyncio.get_running_loop()

        async def in_a_reader() -> NumberReading:
            try:
                # Refused (RuntimeError) when the readers were stopped, by a model swap,
                # while this read waited.
                reading = loop.run_in_executor(self._executor, _read, data, name, max_memory_bytes)
            except RuntimeError as error:
                raise ReadersUnavailableError(str(error)) from error
            try:
                return await reading
            except BrokenProcessPool as error:
                raise ReadersUnavailableError(str(error)) from error

        return await wait_for_lane(self._lane, in_a_reader)

    def close(self, wait: bool) -> None:
        """Stop the readers once the reads they hold are done (`wait`: block until then)."""
        self._executor.shutdown(wait=wait)


def can_read_with(predictor: Predictor) -> bool:
    """Whether reader processes can load `predictor`'s model: an ONNX model file."""
    return predictor.source is not None and predictor.runtime == "ONNX Runtime"


@contextlib.contextmanager
def _ctrl_c_blocked() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) from this thread, and so from the processes it starts
    (they inherit its signal mask), where the platform can. A terminal's Ctrl-C reaches
    the server's whole process group, readers included; it is the server's to handle (it
    stops the readers), and a reader still importing its modules would die of it, with a
    traceback, before `_start_reader` could ignore it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _start_reader(
    model: str, not_digit_threshold: float, server_pid: int, all_started: Barrier
) -> None:
    """A reader's start: it ignores Ctrl-C (see `_ctrl_c_blocked`), yields to its server
    (`READER_NICENESS`), ends with it, loads the model on one thread, and waits until
    every reader has got this far (`all_started`; raises `BrokenBarrierError` after
    `START_TIMEOUT_S`)."""
    global _reader
    from digitlab.inference.predictor import Predictor

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        os.nice(READER_NICENESS)
    threading.Thread(target=_end_with_server, args=(server_pid,), daemon=True).start()
    _reader = Predictor.load(model, threads=1, not_digit_threshold=not_digit_threshold)
    all_started.wait(START_TIMEOUT_S)


def _end_with_server(server_pid: int) -> None:
    while os.getppid() == server_pid:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _started() -> None:
    """Nothing: a task that ends once the reader that runs it has started."""


def _read(data: bytes, name: str, max_memory_bytes: int) -> NumberReading:
    return read_number(data, _reader, name=name, max_memory_bytes=max_memory_bytes)

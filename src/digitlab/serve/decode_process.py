"""`to_mnist` in a child process with a CPU-time limit: the one bound on decoding work that
holds whatever the image (a thread running Pillow's decoder cannot be stopped).

For images whose decoding cost the header cannot bound: a progressive JPEG's grows with
its count of scans. The child comes from a fork server that has imported digitlab's image
code already, so starting one takes milliseconds, not the seconds of a fresh interpreter.
"""

from __future__ import annotations

import multiprocessing
import resource
from multiprocessing.connection import Connection

import numpy as np

from digitlab.errors import ImageTooLargeError
from digitlab.images import to_mnist

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["digitlab.images"])


def start_fork_server() -> None:
    """Start the fork server now (it imports digitlab's image code: about a second), so
    that the first image decoded in a child does not wait for it."""
    child = _CONTEXT.Process(target=int)
    child.start()
    child.join()


def to_mnist_in_child(
    data: bytes, name: str, max_memory_bytes: int, max_cpu_s: int, timeout_s: float
) -> np.ndarray:
    """`to_mnist(data, name, max_memory_bytes)` in a child process allowed `max_cpu_s`
    seconds of CPU and `timeout_s` of wall time; blocks the calling thread until done.

    Raises what `to_mnist` raised, or `ImageTooLargeError` when the child ran out of time.
    """
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    child = _CONTEXT.Process(
        target=_decode_and_send, args=(sender, data, name, max_memory_bytes, max_cpu_s)
    )
    child.start()
    sender.close()
    try:
        outcome = receiver.recv() if receiver.poll(timeout_s) else None
    except EOFError:  # the child died: killed at its CPU limit
        outcome = None
    finally:
        child.kill()
        child.join()
        receiver.close()
    if outcome is None:
        raise ImageTooLargeError(
            f"{name}: decoding it took more than {max_cpu_s} s of CPU, the most one image "
            "may take in this server"
        )
    if isinstance(outcome, Exception):
        raise outcome
    digit: np.ndarray = outcome
    return digit


def _decode_and_send(
    sender: Connection, data: bytes, name: str, max_memory_bytes: int, max_cpu_s: int
) -> None:
    # Past the soft limit the kernel sends SIGXCPU, which ends the process.
    resource.setrlimit(resource.RLIMIT_CPU, (max_cpu_s, max_cpu_s + 1))
    try:
        sender.send(to_mnist(data, name, max_memory_bytes=max_memory_bytes))
    except Exception as error:
        sender.send(error)
    finally:
        sender.close()

"""Ctrl-C during training that is never lost.

Python drops a `KeyboardInterrupt` raised inside a garbage collector's callback (JAX
registers one), so a Ctrl-C that lands there did nothing and the run went on. While a
run trains (from before its folder is made, through loading the data, to the end of `fit`)
Ctrl-C also sets a flag, and a callback raises the interrupt again at the end of the next
batch if it has not stopped the run by then. Import this module where Keras is already
wanted: it imports Keras.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import keras


class StopOnCtrlC(keras.callbacks.Callback):  # type: ignore[misc]
    """Raises `KeyboardInterrupt` at the end of a batch once Ctrl-C was pressed in
    `catching_ctrl_c`."""

    def __init__(self) -> None:
        super().__init__()
        self.pressed = threading.Event()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.pressed.is_set():
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def catching_ctrl_c(self) -> Iterator[None]:
        """Within the block, Ctrl-C both raises `KeyboardInterrupt` (as always) and sets
        `pressed`. Only the main thread can take signals, and a handler someone else set
        (or Ctrl-C ignored) is left alone: then this does nothing."""
        if (
            threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield
            return
        self.pressed.clear()

        def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
            self.pressed.set()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_ctrl_c)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

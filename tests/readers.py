"""Waiting for and finding `POST /read`'s reader processes, for the tests of /read."""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil
from fastapi import FastAPI

READY_TIMEOUT_S = 60.0


def reader_processes(parent: psutil.Process) -> list[psutil.Process]:
    """The reader processes `parent` started (spawned interpreters, not its resource tracker)."""
    return [child for child in parent.children() if "spawn_main" in " ".join(child.cmdline())]


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Return once `condition()` holds; fail the test, naming `what`, after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def readers_ready(app: FastAPI) -> None:
    """Return once `app`'s readers (started in the background) take reads."""
    wait_for(lambda: app.state.readers is not None, "the readers to start")

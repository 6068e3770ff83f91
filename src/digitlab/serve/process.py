"""Run `digitlab serve` as a child process and wait until it answers: for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from digitlab.errors import DigitlabError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def server_process(
    log_path: str | os.PathLike[str],
    model: str | os.PathLike[str] | None = None,
    port: int | None = None,
    start_timeout_s: float = 120.0,
    workers: int | None = None,
    request_timeout_s: float | None = None,
    allowed_hosts: Sequence[str] = (),
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Start `python -m digitlab serve` on loopback; yield its base URL once /health is ok.

    `model` defaults to the shipped model, `port` to a free one, and `workers` and
    `request_timeout_s` (`--request-timeout`) to the command's own defaults;
    `allowed_hosts` are passed as `--allowed-host`, and `extra_args` (other options of
    `digitlab serve`) as they are. The server's output is written to
    `log_path`. On exit the server gets SIGTERM, then SIGKILL after 15 s.
    Raises `DigitlabError` with the server's output if it exits or is not healthy within
    `start_timeout_s`.
    """
    port = port or free_port()
    command = [sys.executable, "-m", "digitlab", "serve", "--port", str(port)]
    if model is not None:
        command += ["--model", os.fspath(model)]
    if workers is not None:
        command += ["--workers", str(workers)]
    if request_timeout_s is not None:
        command += ["--request-timeout", str(request_timeout_s)]
    for host in allowed_hosts:
        command += ["--allowed-host", host]
    command += extra_args
    log_path = Path(log_path)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(process, url, log_path, start_timeout_s)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_healthy(
    process: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float
) -> None:
    """Return once the server `process` at `url` answers /health with 200; raise
    `DigitlabError` with its output (in `log_path`) if it exits or `timeout_s` passes first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DigitlabError(
                f"digitlab serve exited with code {process.returncode}: {log_path.read_text()}"
            )
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise DigitlabError(
        f"digitlab serve was not healthy after {timeout_s:.0f} s: {log_path.read_text()}"
    )

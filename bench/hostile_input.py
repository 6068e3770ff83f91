"""Hostile clients against a real `digitlab serve`: what each attack costs the server, and
how long a normal request sent beside it waits.

Starts `digitlab serve` (the shipped model, --workers processes) on a free loopback port
and runs each attack in turn: progressive JPEGs of thousands of tiny scans (a 5 MB and a
400 KB one, `tiny_scan_jpeg`), a huge header, clients trickling their headers a byte a
second, partial bodies, idle connections, 200 concurrent 4.5 MB uploads and pixel bombs
(a small PNG claiming 50,000 x 50,000 pixels). While an attack runs, a normal client posts
a 28x28 MNIST PNG every half second on a fresh connection. Each attack runs at most
--attack-seconds; then the server is given up to --settle-seconds to finish the work it
was handed. Prints, per attack: the server's CPU seconds (all its processes, over the
attack and the settling), its peak resident memory (the sum over its processes, sampled
every 50 ms), the normal requests' median and worst latency, and the answers the attackers
got. Loopback only; every loop is bounded.

    .venv/bin/python bench/hostile_input.py
    .venv/bin/python bench/hostile_input.py --attack-seconds 10 --only header trickle
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import statistics
import struct
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psutil
from PIL import Image

from digitlab.data.sources import load_mnist
from digitlab.serve.attacks import tiny_scan_jpeg, with_stray_byte
from digitlab.serve.process import server_process

NORMAL_EVERY_S = 0.5
ANSWER_TIMEOUT_S = 60.0


@dataclass
class Target:
    """The server under attack: where it listens and its main process."""

    host: str
    port: int
    server: psutil.Process


@dataclass
class Outcome:
    """What one attack's clients and the normal client saw."""

    answers: Counter[str] = field(default_factory=Counter)
    normal_latencies_s: list[float] = field(default_factory=list)
    normal_failures: int = 0


def head(target: Target, method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {target.host}:{target.port}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def post_head(target: Target, body_bytes: int, content_type: str = "image/png") -> bytes:
    return head(
        target,
        "POST",
        "/predict",
        f"Content-Type: {content_type}",
        f"Content-Length: {body_bytes}",
        "Connection: close",
    )


async def exchange(target: Target, *parts: bytes, pause_s: float = 0.0) -> str:
    """Send `parts` (pausing `pause_s` between them) on a fresh connection; the status
    code the server answered, or how the connection ended without one."""
    try:
        reader, writer = await asyncio.open_connection(target.host, target.port)
    except OSError as error:
        return f"connect failed ({type(error).__name__})"
    try:
        # The server may answer and close before it has taken everything (a 431 or 503):
        # its answer is read all the same.
        with contextlib.suppress(OSError):
            for part in parts:
                writer.write(part)
                await writer.drain()
                if pause_s:
                    await asyncio.sleep(pause_s)
        line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT_S)
        return line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"
    except TimeoutError:
        return "no answer"
    except OSError:
        return "closed"
    finally:
        writer.close()


async def normal_client(target: Target, png: bytes, stop: asyncio.Event, outcome: Outcome) -> None:
    """Post `png` every `NORMAL_EVERY_S` until `stop`, timing each answer."""
    while not stop.is_set():
        started = time.perf_counter()
        status = await exchange(target, post_head(target, len(png)) + png)
        if status == "200":
            outcome.normal_latencies_s.append(time.perf_counter() - started)
        else:
            outcome.normal_failures += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), NORMAL_EVERY_S)


# ---- the attacks: each returns the coroutines of its hostile clients --------------------


def jpeg_attack(data: bytes, clients: int) -> Callable[[Target], list[Awaitable[str]]]:
    return lambda target: [
        exchange(target, post_head(target, len(data), "image/jpeg") + data) for _ in range(clients)
    ]


def huge_header(target: Target) -> list[Awaitable[str]]:
    pad = b"X-Pad: " + b"a" * 1_000_000 + b"\r\n"
    start = f"GET /health HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n".encode()
    return [exchange(target, start, *[pad] * 8, b"\r\n")]


def trickled_headers(target: Target) -> list[Awaitable[str]]:
    start = b"GET /health HTTP/1.1\r\n"
    return [exchange(target, start, *[b"X"] * 30, pause_s=1.0) for _ in range(20)]


def partial_bodies(target: Target) -> list[Awaitable[str]]:
    stalled = post_head(target, 4_500_000) + bytes(100_000)
    return [exchange(target, stalled) for _ in range(20)]


def idle_connections(target: Target) -> list[Awaitable[str]]:
    return [exchange(target, b"") for _ in range(500)]


def large_uploads(data: bytes) -> Callable[[Target], list[Awaitable[str]]]:
    return lambda target: [
        exchange(target, post_head(target, len(data)) + data) for _ in range(200)
    ]


def pixel_bombs(data: bytes) -> Callable[[Target], list[Awaitable[str]]]:
    return lambda target: [exchange(target, post_head(target, len(data)) + data) for _ in range(50)]


# ---- images -----------------------------------------------------------------------------


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def noise_png(size_bytes: int) -> bytes:
    """A gray PNG of random pixels about `size_bytes` long (noise does not compress)."""
    side = int(size_bytes**0.5)
    return png(np.random.default_rng(0).integers(0, 256, (side, side), dtype=np.uint8))


def pixel_bomb_png(width: int, height: int) -> bytes:
    """A small valid PNG whose header claims `width` x `height`."""
    data = bytearray(png(np.zeros((8, 8), np.uint8)))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# ---- measurement ------------------------------------------------------------------------


def server_tree(server: psutil.Process) -> list[psutil.Process]:
    """The server and every process below it: workers, fork servers, decoding children."""
    return [server, *server.children(recursive=True)]


def cpu_seconds(server: psutil.Process) -> float:
    """CPU seconds spent by the server's processes, and by the children they have reaped
    (the short-lived processes that decode progressive JPEGs)."""
    total = 0.0
    for process in server_tree(server):
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def resident_bytes(server: psutil.Process) -> int:
    total = 0
    for process in server_tree(server):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_info().rss
    return total


class PeakMemory:
    """The largest sum of the server's processes' resident memory, sampled every 50 ms."""

    def __init__(self, server: psutil.Process) -> None:
        self.server = server
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak_bytes = max(self.peak_bytes, resident_bytes(self.server))


async def run_attack(
    target: Target,
    attack: Callable[[Target], list[Awaitable[str]]],
    normal_png: bytes,
    attack_s: float,
) -> Outcome:
    outcome = Outcome()
    stop = asyncio.Event()
    normal = asyncio.create_task(normal_client(target, normal_png, stop, outcome))
    hostile = [asyncio.ensure_future(client) for client in attack(target)]
    done, pending = await asyncio.wait(hostile, timeout=attack_s)
    for task in pending:
        task.cancel()
    outcome.answers.update(task.result() for task in done)
    outcome.answers["still open at the end"] += len(pending)
    stop.set()
    await normal
    await asyncio.gather(*pending, return_exceptions=True)
    return outcome


def settle(server: psutil.Process, limit_s: float) -> None:
    """Wait until the server's processes are idle (under 5% of a core for 0.5 s)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = cpu_seconds(server)
        time.sleep(0.5)
        if cpu_seconds(server) - before < 0.025:
            return


def server_root(port: int) -> psutil.Process:
    """The `digitlab serve` process this script started on `port`."""
    return next(
        process for process in psutil.Process().children() if str(port) in process.cmdline()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="server processes (default: 2)")
    parser.add_argument(
        "--attack-seconds", type=float, default=20.0, help="longest attack (default: 20)"
    )
    parser.add_argument(
        "--settle-seconds", type=float, default=60.0, help="longest settling (default: 60)"
    )
    parser.add_argument("--only", nargs="*", help="run only the attacks with these words")
    args = parser.parse_args()

    _, (x_test, _) = load_mnist()
    normal_png = png(x_test[0])
    attacks: dict[str, Callable[[Target], list[Awaitable[str]]]] = {
        "4 x 5 MB tiny-scan progressive JPEG": jpeg_attack(
            tiny_scan_jpeg(2000, 1500, 5_000_000), 4
        ),
        "4 x 400 KB tiny-scan progressive JPEG": jpeg_attack(
            tiny_scan_jpeg(2000, 1500, 400_000), 4
        ),
        "4 x 400 KB tiny-scan JPEG, a stray byte before its scans": jpeg_attack(
            with_stray_byte(tiny_scan_jpeg(2000, 1500, 400_000)), 4
        ),
        "8 MB header": huge_header,
        "20 trickled headers (a byte a second)": trickled_headers,
        "20 partial bodies": partial_bodies,
        "500 idle connections": idle_connections,
        "200 concurrent 4.5 MB uploads": large_uploads(noise_png(4_500_000)),
        "50 pixel bombs (50,000 x 50,000 PNG)": pixel_bombs(pixel_bomb_png(50_000, 50_000)),
    }
    if args.only:
        attacks = {
            name: attack
            for name, attack in attacks.items()
            if any(word in name for word in args.only)
        }

    with (
        tempfile.TemporaryDirectory() as log_dir,
        server_process(Path(log_dir) / "server.log", workers=args.workers) as url,
    ):
        port = urlsplit(url).port or 80
        target = Target("127.0.0.1", port, server_root(port))
        print(
            f"digitlab serve --workers {args.workers}: {len(server_tree(target.server))} processes"
        )
        header = (
            f"{'attack':40} {'CPU s':>7} {'peak MiB':>9} {'normal p50 s':>12} "
            f"{'max s':>7} {'failed':>6}  attackers got"
        )
        print(header)
        for name, attack in attacks.items():
            settle(target.server, args.settle_seconds)
            cpu_before = cpu_seconds(target.server)
            with PeakMemory(target.server) as memory:
                outcome = asyncio.run(run_attack(target, attack, normal_png, args.attack_seconds))
                settle(target.server, args.settle_seconds)
            cpu = cpu_seconds(target.server) - cpu_before
            latencies = outcome.normal_latencies_s or [float("nan")]
            answers = ", ".join(f"{key}: {count}" for key, count in outcome.answers.items())
            print(
                f"{name:40} {cpu:7.1f} {memory.peak_bytes / 2**20:9.0f} "
                f"{statistics.median(latencies):12.3f} {max(latencies):7.3f} "
                f"{outcome.normal_failures:6d}  {answers}",
                flush=True,
            )


if __name__ == "__main__":
    main()

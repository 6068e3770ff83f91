"""Load test of `POST /predict` (PNGs of MNIST test digits) or, with --read, of `POST /read`
(numbers of 2 to 5 MNIST test digits, some touching, as PNG or JPEG).

Starts `digitlab serve` itself (default model, or --model) on a free loopback port unless
--url names a running server (plain http). Each of --clients clients holds one keep-alive
connection, posts one PNG, waits for the answer and posts the next (closed loop) for
--duration seconds after a short warm-up; the latency is then the clients' count divided by
the throughput (Little's law), so this shows the server's capacity. With --rate, the clients
send on a fixed schedule of that many requests per second in total (open loop), which shows
the latency at a given load; several rates are measured one after the other on the same
server. Prints the requests answered per second, latency percentiles, and the errors (any
answer but 200, or one without 10 probabilities per digit), the CPU time the clients
themselves spent (they share the machine's cores with a server on the same machine), and for
a server it started itself, the CPU time the server's processes spent per answered request.

The clients speak HTTP/1.1 over asyncio streams directly. httpx measured about 3 ms of CPU
per request here, as much as the server itself; on a 2-core machine shared with the server
it halved the figure being measured. These clients cost about 0.2 ms per request.

    .venv/bin/python bench/serve_load.py                    # 32 clients, 60 s
    .venv/bin/python bench/serve_load.py --duration 10 --rate 300
    .venv/bin/python bench/serve_load.py --duration 30 --rate 100 200 300
    .venv/bin/python bench/serve_load.py --read --duration 30 --rate 50 100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import psutil
from PIL import Image

from digitlab.data.sources import load_mnist
from digitlab.number_images import GAPS, compose_number
from digitlab.serve.process import server_process

ANSWER_TIMEOUT_S = 30.0


@dataclass
class Window:
    """The run's clock (`time.perf_counter` seconds): warm-up until `measure_from`, then
    measurement until `stop_at`."""

    measure_from: float
    stop_at: float


@dataclass
class Tally:
    """What the clients saw for the requests they started inside the measured window."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    last_answer_at: float = 0.0
    unsent: int = 0  # open loop only: requests the schedule called for but the clients never sent


def mnist_test_pngs(count: int) -> list[bytes]:
    """The first `count` MNIST test digits, each as the bytes of a 28x28 PNG file."""
    _, (x_test, _) = load_mnist()
    pngs = []
    for digit in x_test[:count]:
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def mnist_test_numbers(count: int) -> list[bytes]:
    """`count` image files of numbers of 2 to 5 MNIST test digits (`compose_number`), with
    each kind of gap in turn and a fixed seed."""
    _, (x_test, y_test) = load_mnist()
    rng = np.random.default_rng(0)
    numbers = []
    for index in range(count):
        picked = rng.integers(0, len(x_test), size=int(rng.integers(2, 6)))
        gap = list(GAPS)[index % len(GAPS)]
        numbers.append(compose_number(x_test[picked], y_test[picked], rng, gap).data)
    return numbers


def image_type(data: bytes) -> bytes:
    """The content type of a PNG or JPEG file's bytes."""
    return b"image/png" if data.startswith(b"\x89PNG") else b"image/jpeg"


def answer_problem(path: str, body: bytes) -> str | None:
    """What is wrong with a 200 answer's JSON from `path`, or None."""
    answer = json.loads(body)
    rows = (
        [answer["probabilities"]]
        if path == "/predict"
        else [digit["probabilities"] for digit in answer["digits"]]
    )
    if not rows or any(len(row) != 10 for row in rows):
        return "answer without 10 probabilities per digit"
    return None


class Connection:
    """One keep-alive HTTP/1.1 connection to the server, reopened after any failure."""

    def __init__(self, url: str, path: str = "/predict") -> None:
        address = urlsplit(url)
        if address.scheme != "http" or address.hostname is None:
            raise SystemExit(f"--url must be http://HOST:PORT, not {url!r}")
        self._host, self._port = address.hostname, address.port or 80
        self._path = path
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post_png(self, png: bytes) -> str | None:
        """Post one image to the path; return None for a good answer, else what went wrong."""
        try:
            status, body = await asyncio.wait_for(self._exchange(png), ANSWER_TIMEOUT_S)
            if status != 200:
                return f"HTTP {status}"
            problem = answer_problem(self._path, body)
            if problem:
                return problem
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError) as failure:
            # Timeouts are OSErrors; a malformed answer is a ValueError or a KeyError.
            self.close()
            return type(failure).__name__
        return None

    async def _exchange(self, png: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (self._path.encode(), self._host.encode(), image_type(png), len(png), png)
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(head.split(" ", 2)[1])
        headers = dict(line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
        body = await reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").strip() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def client(
    url: str,
    path: str,
    pngs: list[bytes],
    first: int,
    window: Window,
    interval_s: float | None,
    tally: Tally,
) -> None:
    """Post PNGs (from index `first` on) until the window closes.

    Closed loop (`interval_s` None): the next request goes as soon as the answer is in.
    Open loop: one request every `interval_s`, the schedule kept even when answers are
    slow, and latency counted from the scheduled time, so that waiting to send counts too.
    """
    connection = Connection(url, path)
    index = first
    scheduled = time.perf_counter()
    if interval_s is not None:
        scheduled += interval_s * first / len(pngs)  # spread the clients over one interval
    while True:
        now = time.perf_counter()
        if interval_s is None:
            start = now
        else:
            scheduled += interval_s
            await asyncio.sleep(max(0.0, scheduled - now))
            start = scheduled
        if start >= window.stop_at or now >= window.stop_at:
            if interval_s is not None and scheduled < window.stop_at:
                tally.unsent += int((window.stop_at - scheduled) / interval_s) + 1
            connection.close()
            return
        error = await connection.post_png(pngs[index % len(pngs)])
        answered_at = time.perf_counter()
        if start >= window.measure_from:
            tally.latencies_s.append(answered_at - start)
            tally.last_answer_at = max(tally.last_answer_at, answered_at)
            if error:
                tally.errors[error] += 1
        index += 1


async def run_load(
    url: str,
    path: str,
    pngs: list[bytes],
    clients: int,
    duration_s: float,
    warmup_s: float,
    rate: float | None,
    cpu_clock: Callable[[], float] | None = None,
) -> tuple[Tally, float, float | None, float]:
    """Run the clients for `warmup_s` and then `duration_s`.

    Returns what they measured, the seconds from the window's start to the last answer
    to a request started in it (the divisor of the throughput), how far `cpu_clock`
    (the server's CPU seconds, when given) advanced during the window, and the CPU
    seconds this process (the clients) spent in it.
    """
    tally = Tally()
    measure_from = time.perf_counter() + warmup_s
    window = Window(measure_from, measure_from + duration_s)
    interval_s = clients / rate if rate else None
    _, cpu_s, client_cpu_s = await asyncio.gather(
        asyncio.gather(
            *(
                client(url, path, pngs, k * len(pngs) // clients, window, interval_s, tally)
                for k in range(clients)
            )
        ),
        clock_over_window(cpu_clock, window),
        clock_over_window(time.process_time, window),
    )
    elapsed_s = max(duration_s, tally.last_answer_at - window.measure_from)
    return tally, elapsed_s, cpu_s, client_cpu_s or 0.0


async def clock_over_window(clock: Callable[[], float] | None, window: Window) -> float | None:
    """How far `clock` advances between the window's start and its end (None: no clock)."""
    if clock is None:
        return None
    await asyncio.sleep(max(0.0, window.measure_from - time.perf_counter()))
    start = clock()
    await asyncio.sleep(max(0.0, window.stop_at - time.perf_counter()))
    return clock() - start


def server_cpu_seconds() -> float:
    """User + system CPU seconds of this process's descendants (the server it started)."""
    total = 0.0
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def report(
    tally: Tally,
    elapsed_s: float,
    clients: int,
    rate: float | None,
    cpu_s: float | None,
    client_cpu_s: float,
    duration_s: float,
) -> str:
    """The figures as a few lines of text; `cpu_s` is the server's CPU time, when known,
    and `client_cpu_s` the clients' over the `duration_s` window."""
    latencies_ms = np.array(tally.latencies_s) * 1000
    count = latencies_ms.size
    mode = f"open loop at {rate:g} requests/s" if rate else "closed loop"
    lines = [
        f"clients:       {clients} ({mode})",
        f"answered:      {count} in {elapsed_s:.1f} s ({count / elapsed_s:.1f} requests/s)",
    ]
    if count:
        p50, p90, p99, top = np.percentile(latencies_ms, [50, 90, 99, 100])
        lines.append(f"latency (ms):  p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {top:.1f}")
    if rate:
        behind = " (the server fell behind the schedule)" if tally.unsent else ""
        lines.append(f"unsent:        {tally.unsent}{behind}")
    errors = ", ".join(f"{kind}: {n}" for kind, n in tally.errors.most_common()) or "none"
    lines.append(f"errors:        {sum(tally.errors.values())} ({errors})")
    if cpu_s is not None and count:
        lines.append(f"server CPU:    {cpu_s * 1000 / count:.2f} ms per answered request")
    if count:
        lines.append(
            f"client CPU:    {client_cpu_s * 1000 / count:.2f} ms per answered request "
            f"({client_cpu_s / duration_s:.0%} of one core)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server's base URL (default: start one)")
    parser.add_argument("--model", help="model for the server started here (default: shipped)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default: 32)")
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds measured (default: 60)"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before (default: 2)")
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        help="total requests/s, open loop; several are run one after the other "
        "(default: closed loop)",
    )
    parser.add_argument(
        "--images", type=int, default=1000, help="MNIST test digits (default: 1000)"
    )
    parser.add_argument(
        "--read",
        action="store_true",
        help="load POST /read with --images numbers of 2 to 5 digits (default: /predict)",
    )
    args = parser.parse_args()

    if args.rate and min(args.rate) <= 0:
        raise SystemExit("--rate must be above 0 requests/s")
    pngs = mnist_test_numbers(args.images) if args.read else mnist_test_pngs(args.images)
    path = "/read" if args.read else "/predict"
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            url = stack.enter_context(server_process(log_dir / "server.log", model=args.model))
        print(f"server:        {url}")
        cpu_clock = server_cpu_seconds if args.url is None else None
        for rate in args.rate or [None]:
            load = run_load(
                url, path, pngs, args.clients, args.duration, args.warmup, rate, cpu_clock
            )
            tally, elapsed_s, cpu_s, client_cpu_s = asyncio.run(load)
            figures = report(
                tally, elapsed_s, args.clients, rate, cpu_s, client_cpu_s, args.duration
            )
            print(figures, flush=True)


if __name__ == "__main__":
    main()

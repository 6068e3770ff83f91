"""Load test of `POST /predict`: concurrent clients posting PNGs of MNIST test digits.

Starts `digitlab serve` itself (default model, or --model) on a free loopback port unless
--url names a running server. Each of --clients clients posts one PNG, waits for the answer
and posts the next (closed loop), for --duration seconds after a short warm-up. With --rate,
the clients instead send at that many requests per second in total (open loop), which shows
the latency at a given load rather than at saturation. Prints requests/s, latency
percentiles and the errors (any answer but 200, or a wrong digit count).

    .venv/bin/python bench/serve_load.py                    # 32 clients, 60 s
    .venv/bin/python bench/serve_load.py --duration 10 --rate 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from digitlab.data.sources import load_mnist
from digitlab.serve.process import server_process


@dataclass
class Tally:
    """What the clients saw during the measured window."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def mnist_test_pngs(count: int) -> list[bytes]:
    """The first `count` MNIST test digits, each as the bytes of a 28x28 PNG file."""
    _, (x_test, _) = load_mnist()
    pngs = []
    for digit in x_test[:count]:
        buffer = io.BytesIO()
        Image.fromarray(digit).save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


async def client(
    http: httpx.AsyncClient,
    pngs: list[bytes],
    offset: int,
    measure_from: float,
    stop_at: float,
    interval_s: float | None,
    tally: Tally,
) -> None:
    """Post PNGs until `stop_at`; record latencies and errors after `measure_from`."""
    index = offset
    scheduled = time.perf_counter() + (interval_s or 0.0) * offset / len(pngs)
    while True:
        if interval_s is None:
            start = time.perf_counter()
        else:
            # Open loop: keep the schedule even when answers are slow, and count latency
            # from the scheduled time, so that a late send counts as waiting.
            scheduled += interval_s
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            start = scheduled
        if start >= stop_at:
            return
        error = None
        try:
            response = await http.post(
                "/predict",
                content=pngs[index % len(pngs)],
                headers={"Content-Type": "image/png"},
            )
            if response.status_code != 200:
                error = f"HTTP {response.status_code}"
            elif len(response.json()["probabilities"]) != 10:
                error = "wrong number of probabilities"
        except httpx.HTTPError as failure:
            error = type(failure).__name__
        if start >= measure_from:
            tally.latencies_s.append(time.perf_counter() - start)
            if error:
                tally.errors[error] += 1
        index += 1


async def run_load(
    url: str,
    pngs: list[bytes],
    clients: int,
    duration_s: float,
    warmup_s: float,
    rate: float | None,
) -> Tally:
    """Run the clients for `warmup_s` and then `duration_s`; return what they measured."""
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    timeout = httpx.Timeout(30.0)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as http:
        begin = time.perf_counter()
        measure_from = begin + warmup_s
        stop_at = measure_from + duration_s
        interval_s = clients / rate if rate else None
        await asyncio.gather(
            *(
                client(
                    http, pngs, k * len(pngs) // clients, measure_from, stop_at, interval_s, tally
                )
                for k in range(clients)
            )
        )
    return tally


def report(tally: Tally, window_s: float, clients: int, rate: float | None) -> str:
    """The figures as a few lines of text."""
    latencies_ms = np.array(tally.latencies_s) * 1000
    count = latencies_ms.size
    mode = f"open loop at {rate:g} requests/s" if rate else "closed loop"
    lines = [
        f"clients:       {clients} ({mode}), {window_s:g} s measured",
        f"requests:      {count} ({count / window_s:.1f} requests/s)",
    ]
    if count:
        p50, p90, p99, top = np.percentile(latencies_ms, [50, 90, 99, 100])
        lines.append(f"latency (ms):  p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}  max {top:.1f}")
    errors = ", ".join(f"{kind}: {n}" for kind, n in tally.errors.most_common()) or "none"
    lines.append(f"errors:        {sum(tally.errors.values())} ({errors})")
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
        "--rate", type=float, help="total requests/s, open loop (default: closed loop)"
    )
    parser.add_argument(
        "--images", type=int, default=1000, help="MNIST test digits (default: 1000)"
    )
    args = parser.parse_args()

    pngs = mnist_test_pngs(args.images)
    with contextlib.ExitStack() as stack:
        url = args.url
        if url is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            url = stack.enter_context(server_process(log_dir / "server.log", model=args.model))
        print(f"server:        {url}")
        load = run_load(url, pngs, args.clients, args.duration, args.warmup, args.rate)
        tally = asyncio.run(load)
    print(report(tally, args.duration, args.clients, args.rate))


if __name__ == "__main__":
    main()

"""Memory per request of `POST /predict`: how far the largest accepted images, and larger
ones, raise the server's peak resident memory.

Starts `digitlab serve --workers 1` (the shipped model) on a free loopback port. For each
kind of image (PNG in gray, 16-bit, RGBA and palette with transparency, GIF, TIFF in
float and CMYK, WebP, baseline and progressive JPEG) it makes the largest 4:3 page with an
MNIST digit on it that the server accepts (`memory_needed` at most its
`MAX_IMAGE_MEMORY`), and one with twice the sides. For each, it resets the server's peak
(Linux keeps it as VmHWM and resets it when "5" is written to /proc/PID/clear_refs), posts
the image, and prints the answer and how far the peak rose above the memory in use before.
Then it posts --concurrent copies of the costliest accepted image at once. (The server runs
with glibc's mmap threshold fixed, so that every large array is measured.)

    .venv/bin/python bench/serve_memory.py
    .venv/bin/python bench/serve_memory.py --concurrent 16
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil
from PIL import Image

from digitlab.data.sources import load_mnist
from digitlab.errors import ImageTooLargeError
from digitlab.images import memory_needed
from digitlab.serve.process import server_process
from digitlab.serve.uploads import MAX_IMAGE_MEMORY
from digitlab.tables import text_table

# name -> (Pillow mode, format, save options, content type)
KINDS: dict[str, tuple[str, str, dict[str, object], str]] = {
    "PNG gray": ("L", "PNG", {}, "image/png"),
    "PNG 16-bit gray": ("I;16", "PNG", {}, "image/png"),
    "PNG RGBA": ("RGBA", "PNG", {}, "image/png"),
    "PNG palette + transparency": ("P", "PNG", {"transparency": 0}, "image/png"),
    "GIF": ("L", "GIF", {}, "image/gif"),
    "TIFF float": ("F", "TIFF", {"compression": "tiff_deflate"}, "image/tiff"),
    "TIFF CMYK": ("CMYK", "TIFF", {"compression": "tiff_deflate"}, "image/tiff"),
    "WebP": ("RGB", "WEBP", {"lossless": True}, "image/webp"),
    "JPEG baseline": ("RGB", "JPEG", {"quality": 90}, "image/jpeg"),
    "JPEG progressive": ("RGB", "JPEG", {"quality": 90, "progressive": True}, "image/jpeg"),
}


def page(digit: np.ndarray, mode: str, width: int) -> Image.Image:
    """A white 4:3 page `width` px wide with `digit` drawn dark across half its height."""
    height = width * 3 // 4
    sheet = Image.new("L", (width, height), 255)
    side = max(1, height // 2)
    sheet.paste(Image.fromarray(255 - digit).resize((side, side)), (width // 3, height // 4))
    if mode == "I;16":
        return Image.fromarray(np.asarray(sheet).astype(np.uint16) * 257)
    return sheet.convert(mode)


def encoded(image: Image.Image, image_format: str, options: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def page_file(
    digit: np.ndarray, mode: str, image_format: str, options: dict[str, object], width: int
) -> bytes:
    return encoded(page(digit, mode, width), image_format, options)


def largest_accepted(make: Callable[[int], bytes], limit: int) -> tuple[int, bytes]:
    """The widest page (to 16 px) whose file `memory_needed` puts within `limit`: a
    bisection, as the estimate grows with the width (JPEG's draft aside)."""

    def fits(width: int) -> bool:
        try:
            return memory_needed(make(width)) <= limit
        except ImageTooLargeError:  # over digitlab's limit on pixels for every caller
            return False

    low, high = 16, 16
    while fits(high):
        low, high = high, high * 2
    while high - low > 16:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low, make(low)


def estimate(data: bytes) -> str:
    """`memory_needed` in MB, or why there is none."""
    try:
        return f"{memory_needed(data) / 1e6:.1f}"
    except ImageTooLargeError:
        return "over pixels"


def server_pids() -> list[int]:
    return [process.pid for process in psutil.Process().children(recursive=True)]


def kib(pid: int, key: str) -> int:
    """A figure of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise KeyError(key)


@contextlib.contextmanager
def peak_growth() -> Iterator[list[float]]:
    """Collects how far the server's peak resident memory (MB, all its processes) rose
    above what they held when the block began."""
    pids = server_pids()
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = {pid: kib(pid, "VmRSS:") for pid in pids}
    growth: list[float] = []
    yield growth
    growth.append(sum(kib(pid, "VmHWM:") - before[pid] for pid in pids) * 1024 / 1e6)


def post(client: httpx.Client, data: bytes, content_type: str) -> str:
    response = client.post("/predict", content=data, headers={"Content-Type": content_type})
    if response.status_code == 200:
        return f"200 (digit {response.json()['digit']})"
    return str(response.status_code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--concurrent", type=int, default=8, help="copies posted at once (default: 8)"
    )
    args = parser.parse_args()

    # A fixed threshold makes glibc map every allocation over 128 KiB afresh and unmap it
    # when freed. By default the threshold rises after the first large free, and memory one
    # request freed is reused by the next without raising the peak: it would go unmeasured.
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    _, (x_test, y_test) = load_mnist()
    digit, label = x_test[0], int(y_test[0])
    print(f"digit drawn: {label}; server limit: {MAX_IMAGE_MEMORY / 1e6:.1f} MB per image")
    with (
        tempfile.TemporaryDirectory() as log_dir,
        server_process(Path(log_dir) / "server.log", workers=1) as url,
        httpx.Client(base_url=url, timeout=120) as client,
    ):
        post(client, encoded(page(digit, "L", 400), "PNG", {}), "image/png")  # warm-up
        costliest: tuple[float, bytes, str] = (0.0, b"", "")
        rows = []
        for name, (mode, image_format, options, content_type) in KINDS.items():
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            make = functools.partial(page_file, digit, mode, image_format, options)
            width, accepted = largest_accepted(make, MAX_IMAGE_MEMORY)
            for size, data in ((width, accepted), (2 * width, make(2 * width))):
                with peak_growth() as growth:
                    answer = post(client, data, content_type)
                rows.append(
                    [
                        name,
                        f"{size}x{size * 3 // 4}",
                        f"{len(data) / 1000:.0f}",
                        estimate(data),
                        answer,
                        f"{growth[0]:.1f}",
                    ]
                )
                if size == width and growth[0] > costliest[0]:
                    costliest = (growth[0], data, content_type)
        headers = ["image", "size", "file KB", "estimate MB", "answer", "peak rise MB"]
        print(text_table(rows, headers=headers, right=range(1, 6)))
        _, data, content_type = costliest
        with peak_growth() as growth, ThreadPoolExecutor(args.concurrent) as pool:
            answers = list(
                pool.map(lambda _: post(client, data, content_type), range(args.concurrent))
            )
        print(
            f"{args.concurrent} of the costliest at once: answers {sorted(set(answers))}, "
            f"peak rise {growth[0]:.1f} MB"
        )


if __name__ == "__main__":
    main()

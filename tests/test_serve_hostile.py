"""A real `digitlab serve` against hostile clients (issue 20): huge headers, trickled and
partial requests, idle connections, floods of large uploads, slow progressive JPEGs, a
foreign Host header, HEAD requests, and clients that hang up mid-upload.

Every test talks to a real server over loopback sockets. Most use a one-process server
whose request timeout is `QUICK_TIMEOUT_S`, the same mechanism as the default 10 s (which
one test checks on the default server) so that they take seconds.
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from digit_images import paper_png, png_bytes
from digitlab.cli.serve import default_allowed_hosts
from digitlab.serve.attacks import tiny_scan_jpeg, with_stray_byte
from digitlab.serve.process import server_process
from digitlab.serve.uploads import INLINE_MAX_BYTES, MAX_LARGE_UPLOADS

# Every test here starts or talks to a real server.
pytestmark = pytest.mark.slow

QUICK_TIMEOUT_S = 3.0
EXTRA_HOST = "digits.example"


@pytest.fixture(scope="module")
def quick_server(
    model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A one-process server with a `QUICK_TIMEOUT_S` request timeout and one extra allowed
    host; yields its URL and its log file."""
    log_path = tmp_path_factory.mktemp("quick-server") / "server.log"
    with server_process(
        log_path,
        model=model_path,
        workers=1,
        request_timeout_s=QUICK_TIMEOUT_S,
        allowed_hosts=[EXTRA_HOST],
    ) as url:
        yield url, log_path


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def request_head(url: str, method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def noisy_scan_png(digit: np.ndarray, side: int = 600) -> bytes:
    """A digit on paper with sensor noise: a PNG that compresses as a real scan does
    (well over `INLINE_MAX_BYTES`), so the server decodes it on its threads."""
    paper = np.asarray(Image.open(io.BytesIO(paper_png(digit, side))), dtype=np.int16)
    noise = np.random.default_rng(0).integers(0, 24, paper.shape)
    return png_bytes(np.clip(paper - noise, 0, 255).astype(np.uint8))


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_headers_over_64_kb_are_431_and_smaller_ones_are_answered(server_url: str):
    with connect(server_url) as sock:
        sock.sendall(request_head(server_url, "GET", "/health", "X-Pad: " + "a" * 60_000))
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    with connect(server_url) as sock:
        started = time.monotonic()
        sock.sendall(request_head(server_url, "GET", "/health", "X-Pad: " + "a" * 100_000))
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431")
    assert b"65,536 bytes" in answer
    assert time.monotonic() - started < 2


def test_an_idle_connection_is_closed_after_10_s_by_default(server_url: str):
    with connect(server_url) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        waited = time.monotonic() - started
    assert 9 < waited < 12


def test_a_client_trickling_its_headers_gets_408_when_its_time_is_up(quick_server):
    url, _ = quick_server
    with connect(url) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        sock.settimeout(0.25)
        answer = b""
        while not answer and time.monotonic() - started < 3 * QUICK_TIMEOUT_S:
            try:
                sock.sendall(b"X")
                answer = sock.recv(65536)
            except TimeoutError:
                continue
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408")
    assert QUICK_TIMEOUT_S - 0.5 < waited < QUICK_TIMEOUT_S + 1.5


def test_a_partial_body_is_cut_off_when_its_time_is_up_without_a_traceback(quick_server):
    url, log_path = quick_server
    with connect(url) as sock:
        started = time.monotonic()
        sock.sendall(
            request_head(
                url, "POST", "/predict", "Content-Type: image/png", "Content-Length: 200000"
            )
            + b"\x89PNG"
            + bytes(10_000)
        )
        read_until_closed(sock)
        waited = time.monotonic() - started
    assert QUICK_TIMEOUT_S - 0.5 < waited < QUICK_TIMEOUT_S + 1.5
    time.sleep(0.5)
    assert "Traceback" not in log_path.read_text()


def test_a_client_that_hangs_up_mid_upload_leaves_no_traceback_in_the_log(quick_server):
    url, log_path = quick_server
    with connect(url) as sock:
        sock.sendall(
            request_head(
                url, "POST", "/predict", "Content-Type: image/png", "Content-Length: 500000"
            )
            + b"\x89PNG"
            + bytes(100_000)
        )
        time.sleep(0.3)
    time.sleep(1)
    log = log_path.read_text()
    assert "Traceback" not in log
    assert "ERROR" not in log


def test_large_uploads_past_the_slots_get_503_while_small_ones_are_answered(quick_server, mnist):
    url, _ = quick_server
    _, (x_test, _) = mnist
    stalled = [connect(url) for _ in range(MAX_LARGE_UPLOADS)]
    try:
        for sock in stalled:
            sock.sendall(
                request_head(
                    url, "POST", "/predict", "Content-Type: image/png", "Content-Length: 1000000"
                )
                + bytes(1000)
            )
        time.sleep(0.5)
        large = noisy_scan_png(x_test[0])
        assert len(large) > INLINE_MAX_BYTES
        headers = {"Content-Type": "image/png"}
        refused = httpx.post(f"{url}/predict", content=large, headers=headers, timeout=10)
        small = httpx.post(
            f"{url}/predict", content=png_bytes(x_test[0]), headers=headers, timeout=10
        )
    finally:
        for sock in stalled:
            sock.close()
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert small.status_code == 200


def test_slow_progressive_jpegs_delay_neither_health_nor_other_images(quick_server, mnist):
    url, _ = quick_server
    _, (x_test, _) = mnist
    hostile = tiny_scan_jpeg(1024, 768, INLINE_MAX_BYTES - 1000)
    photo = noisy_scan_png(x_test[0])

    async def timed(http: httpx.AsyncClient, method: str, path: str, **kwargs) -> tuple[int, float]:
        started = time.monotonic()
        response = await http.request(method, path, **kwargs)
        return response.status_code, time.monotonic() - started

    async def attack_and_measure() -> list[tuple[int, float]]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            jpeg = {"content": hostile, "headers": {"Content-Type": "image/jpeg"}}
            attacks = [
                asyncio.create_task(timed(http, "POST", "/predict", **jpeg)) for _ in range(4)
            ]
            await asyncio.sleep(0.1)
            normal = await asyncio.gather(
                timed(http, "GET", "/health"),
                timed(
                    http, "POST", "/predict", content=photo, headers={"Content-Type": "image/png"}
                ),
            )
            await asyncio.gather(*attacks)
            return normal

    (health_status, health_s), (photo_status, photo_s) = asyncio.run(attack_and_measure())
    assert (health_status, photo_status) == (200, 200)
    assert health_s < 0.3
    assert photo_s < 1.0


def test_a_foreign_host_header_is_400_and_the_server_names_are_answered(server_url: str):
    port = urlsplit(server_url).port
    assert (
        httpx.get(f"{server_url}/health", headers={"Host": f"rebound.example:{port}"}).status_code
        == 400
    )
    for name in ("localhost", "127.0.0.1", "[::1]"):
        assert (
            httpx.get(f"{server_url}/health", headers={"Host": f"{name}:{port}"}).status_code == 200
        )


def test_allowed_host_option_adds_a_name(quick_server):
    url, _ = quick_server
    assert httpx.get(f"{url}/health", headers={"Host": EXTRA_HOST}).status_code == 200


def test_default_allowed_hosts_follow_the_address_listened_on():
    assert default_allowed_hosts("127.0.0.1") == ["127.0.0.1", "localhost", "[::1]"]
    assert default_allowed_hosts("::1") == ["[::1]", "127.0.0.1", "localhost"]
    assert socket.gethostname() in default_allowed_hosts("0.0.0.0")
    assert default_allowed_hosts("192.0.2.7") == ["192.0.2.7"]


@pytest.mark.parametrize("path", ["/", "/health"])
def test_head_answers_like_get_without_a_body(server_url: str, path: str):
    got = httpx.get(f"{server_url}{path}")
    head = httpx.head(f"{server_url}{path}")
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(got.content))


def test_request_timeout_defaults_to_10_s():
    import inspect

    from digitlab.cli.serve import serve_command
    from digitlab.serve.protocol import ConnectionLimits

    assert inspect.signature(serve_command).parameters["request_timeout"].default == 10.0
    assert ConnectionLimits().request_timeout_s == 10.0
    assert ConnectionLimits().max_head_bytes == 64 * 1024


def test_a_many_scan_progressive_jpeg_is_refused_quickly_and_ordinary_ones_are_read(
    quick_server, mnist
):
    url, _ = quick_server
    _, (x_test, _) = mnist
    headers = {"Content-Type": "image/jpeg"}
    many_scans = tiny_scan_jpeg(2000, 1500, 400_000)
    for hostile_bytes in (many_scans, with_stray_byte(many_scans)):
        started = time.monotonic()
        hostile = httpx.post(f"{url}/predict", content=hostile_bytes, headers=headers, timeout=60)
        waited = time.monotonic() - started
        assert hostile.status_code == 413
        assert "more than 64 scans" in hostile.json()["detail"]
        assert waited < 1.0
    photo = io.BytesIO()
    Image.open(io.BytesIO(noisy_scan_png(x_test[0]))).save(photo, "JPEG", progressive=True)
    ordinary = httpx.post(f"{url}/predict", content=photo.getvalue(), headers=headers, timeout=60)
    assert ordinary.status_code == 200
    assert ordinary.json()["digit"] == 7

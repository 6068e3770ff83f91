"""The REST API: every answer it gives, its body-size limit, its batching, and a real server.

Unit tests use FastAPI's TestClient on the app with a real trained model and real MNIST
digits; the last tests run `digitlab serve` as a subprocess and talk to it over loopback.
"""

from __future__ import annotations

import asyncio
import io
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import httpx2
import numpy as np
import psutil
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digit_images import paper_png, png_bytes
from digitlab.images import memory_needed, to_mnist
from digitlab.inference.predictor import Predictor
from digitlab.serve.app import create_app
from digitlab.serve.batching import InferenceBatcher
from digitlab.serve.limits import BodySizeLimitMiddleware
from digitlab.serve.process import free_port, server_process
from digitlab.serve.uploads import (
    INLINE_MAX_BYTES,
    INLINE_MAX_IMAGE_MEMORY,
    MAX_BODY_BYTES,
    MAX_IMAGE_MEMORY,
)

# `model_path` and `server_url` (conftest.py): the trained model and the real server, shared
# with the other serving tests.


@pytest.fixture(scope="module")
def client(model_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(model_path)) as client:
        yield client


@pytest.fixture(scope="module")
def predictor(model_path: Path) -> Predictor:
    return Predictor.load(model_path)


@pytest.fixture(scope="module")
def held_out(mnist) -> tuple[np.ndarray, np.ndarray]:
    _, (x_test, y_test) = mnist
    return x_test[:40], y_test[:40]


def post_image(client: TestClient, data: bytes, content_type: str = "image/png") -> httpx2.Response:
    return client.post("/predict", content=data, headers={"Content-Type": content_type})


def png_with_size_in_header(width: int, height: int) -> bytes:
    """A valid small PNG whose header claims `width` x `height` (a decompression bomb's shape)."""
    data = bytearray(png_bytes(np.zeros((8, 8), np.uint8)))
    # IHDR's data starts at byte 16 (8 signature + 4 length + 4 type); its CRC follows 13 bytes on.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# ---- health and valid predictions ---------------------------------------------------


def test_health_answers_ok_and_the_model_name_once_loaded(client: TestClient, predictor):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "model": predictor.name}


def test_health_is_503_while_the_model_is_not_loaded(model_path: Path):
    # Without `with`, TestClient does not run the lifespan: the model is never loaded.
    response = TestClient(create_app(model_path)).get("/health")
    assert response.status_code == 503
    assert "not loaded" in response.json()["detail"]


def test_predict_raw_png_answers_digit_probabilities_and_what_the_model_saw(
    client: TestClient, predictor: Predictor, held_out
):
    images, labels = held_out
    correct = 0
    for digit, label in zip(images, labels, strict=True):
        png = png_bytes(digit)
        response = post_image(client, png)
        assert response.status_code == 200
        answer = response.json()
        expected_image = to_mnist(png)
        expected = predictor.predict(expected_image)
        assert answer["preprocessed"] == expected_image.tolist()
        assert answer["digit"] == int(expected.digits[0])
        assert np.allclose(answer["probabilities"], expected.probabilities[0], atol=1e-6)
        assert len(answer["probabilities"]) == 10
        assert answer["confidence"] == pytest.approx(max(answer["probabilities"]))
        assert sum(answer["probabilities"]) == pytest.approx(1.0, abs=1e-4)
        assert answer["model"] == predictor.name
        correct += answer["digit"] == label
    assert correct / len(labels) >= 0.85


def test_predict_multipart_upload_of_a_scanned_jpeg_matches_the_raw_body(
    client: TestClient, held_out
):
    images, _ = held_out
    scan = Image.open(io.BytesIO(paper_png(images[0], side=300)))
    buffer = io.BytesIO()
    scan.convert("RGB").save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()
    multipart = client.post("/predict", files={"file": ("scan.jpg", jpeg, "image/jpeg")})
    raw = post_image(client, jpeg, "image/jpeg")
    assert multipart.status_code == raw.status_code == 200
    assert multipart.json() == raw.json()


def test_app_serves_the_shipped_model_through_onnx_runtime_by_default(mnist):
    _, (x_test, _) = mnist
    shipped = Predictor.load()
    with TestClient(create_app()) as client:
        assert client.get("/health").json()["model"] == "digits_cnn.onnx (ONNX Runtime)"
        for digit in x_test[:10]:
            answer = post_image(client, png_bytes(digit)).json()
            expected = shipped.predict(to_mnist(png_bytes(digit))).probabilities[0]
            assert np.allclose(answer["probabilities"], expected, atol=1e-4)


def test_small_png_too_large_for_the_event_loop_is_still_read(client: TestClient, held_out):
    # Small uploads are read on the event loop only up to INLINE_MAX_IMAGE_MEMORY; this one
    # must take the decode threads instead, under the server's full limit.
    page = Image.new("L", (1600, 1200), 255)
    page.paste(Image.fromarray(255 - held_out[0][0]).resize((600, 600)), (500, 300))
    png = png_bytes(np.asarray(page))
    assert len(png) <= INLINE_MAX_BYTES
    assert INLINE_MAX_IMAGE_MEMORY < memory_needed(png) <= MAX_IMAGE_MEMORY
    response = post_image(client, png)
    assert response.status_code == 200
    assert response.json()["digit"] == int(held_out[1][0])


# ---- every error is JSON {"detail": ...} with the right status ------------------------


def test_body_over_5_mb_is_413(client: TestClient):
    response = post_image(client, b"\x89PNG\r\n\x1a\n" + bytes(MAX_BODY_BYTES))
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


def test_multipart_upload_over_5_mb_is_413(client: TestClient):
    response = client.post(
        "/predict", files={"file": ("big.png", bytes(MAX_BODY_BYTES), "image/png")}
    )
    assert response.status_code == 413


def test_image_with_too_many_pixels_is_413(client: TestClient):
    response = post_image(client, png_with_size_in_header(20_000, 20_000))
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


def test_progressive_jpeg_claiming_60000_pixels_a_side_is_413_not_500(client: TestClient):
    photo = io.BytesIO()
    Image.new("L", (16, 16), 255).save(photo, "JPEG", progressive=True)
    data = bytearray(photo.getvalue())
    frame = data.index(b"\xff\xc2")  # SOF2: length (2), precision (1), height, width
    data[frame + 5 : frame + 9] = (60000).to_bytes(2, "big") * 2
    response = post_image(client, bytes(data), content_type="image/jpeg")
    assert response.status_code == 413


def test_png_too_large_to_decode_in_a_server_is_413_at_once(client: TestClient):
    started = time.perf_counter()
    response = post_image(client, png_with_size_in_header(6000, 4000))
    assert response.status_code == 413
    assert "6000 x 4000 PNG L pixels would take about 27.2 MB" in response.json()["detail"]
    assert time.perf_counter() - started < 1.0


def _jpeg_photo_of(digit: np.ndarray, **options) -> bytes:
    """A 4800 x 3600 JPEG photo of `digit`, large and dark on white paper."""
    photo = Image.new("L", (4800, 3600), 255)
    photo.paste(Image.fromarray(255 - digit).resize((3000, 3000)), (900, 300))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=85, **options)
    return buffer.getvalue()


def test_a_jpeg_photo_larger_than_that_is_still_read(client: TestClient, held_out):
    response = post_image(client, _jpeg_photo_of(held_out[0][0]), "image/jpeg")
    assert response.status_code == 200
    assert response.json()["digit"] == int(held_out[1][0])


def test_a_progressive_jpeg_that_large_is_413(client: TestClient, held_out):
    # Its decoder would hold the coefficients of the whole image: 2 bytes a pixel, 35 MB.
    progressive = _jpeg_photo_of(held_out[0][0], progressive=True)
    response = post_image(client, progressive, "image/jpeg")
    assert response.status_code == 413
    assert "non-progressive JPEG" in response.json()["detail"]


def test_empty_body_is_422(client: TestClient):
    response = post_image(client, b"")
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]


def test_truncated_png_is_422_with_the_reason(client: TestClient, held_out):
    png = png_bytes(held_out[0][0])
    response = post_image(client, png[: len(png) // 2])
    assert response.status_code == 422
    assert "truncated" in response.json()["detail"]


def test_bytes_that_are_not_an_image_are_415(client: TestClient):
    response = post_image(client, b"%PDF-1.7 this is a document, not a picture")
    assert response.status_code == 415
    assert "not an image" in response.json()["detail"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
def test_a_body_that_is_neither_an_image_nor_multipart_is_415(
    client: TestClient, held_out, content_type: str | None
):
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post("/predict", content=png_bytes(held_out[0][0]), headers=headers)
    assert response.status_code == 415
    assert "content type" in response.json()["detail"]


def test_blank_image_is_422_no_digit_found(client: TestClient):
    response = post_image(client, png_bytes(np.full((280, 280), 255, np.uint8)))
    assert response.status_code == 422
    assert "no digit found" in response.json()["detail"]


def test_multipart_without_a_file_field_is_422(client: TestClient, held_out):
    png = png_bytes(held_out[0][0])
    response = client.post("/predict", files={"picture": ("a.png", png, "image/png")})
    assert response.status_code == 422
    assert "'file'" in response.json()["detail"]


def test_multipart_file_field_sent_as_text_is_422_saying_how_to_send_a_file(
    client: TestClient, held_out
):
    # What `curl -F file=<digit.png` sends: the image's bytes as a part without a filename.
    boundary = "digitlab-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n'.encode()
        + png_bytes(held_out[0][0])
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = client.post(
        "/predict",
        content=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 422
    assert "no filename" in response.json()["detail"]
    assert "file=@" in response.json()["detail"]


def test_malformed_multipart_is_400(client: TestClient):
    response = client.post(
        "/predict",
        content=b"this is not multipart",
        headers={"Content-Type": "multipart/form-data; boundary=xyz"},
    )
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


def test_unknown_path_and_wrong_method_are_json_errors(client: TestClient):
    assert client.get("/nothing-here").json() == {"detail": "Not Found"}
    response = client.get("/predict")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}


def test_openapi_describes_both_ways_to_send_an_image_and_every_answer(client: TestClient):
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/predict"]["post"]
    content = predict["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    assert "image/png" in content and "image/jpeg" in content
    assert {"200", "400", "413", "415", "422", "503"} <= set(predict["responses"])
    answer = spec["components"]["schemas"]["PredictionResponse"]
    assert set(answer["required"]) == {
        "digit",
        "confidence",
        "probabilities",
        "is_digit",
        "digit_score",
        "not_digit_threshold",
        "model",
        "preprocessed",
    }
    assert answer["properties"]["preprocessed"]["minItems"] == 28
    health = spec["paths"]["/health"]["get"]["responses"]
    assert {"200", "503"} <= set(health)
    assert client.get("/docs").status_code == 200


def test_page_and_its_files_are_served_without_any_cdn(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    assert "http://" not in page.text and "https://" not in page.text


# ---- the body-size limit never holds more than the limit ------------------------------


def run_middleware(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[int, int]:
    """Send one request through the limit to an app that reads the whole body.

    Returns the answer's status and how many body chunks the limit asked for.
    """
    received = 0

    async def receive():
        nonlocal received
        received += 1
        return {
            "type": "http.request",
            "body": chunks[received - 1],
            "more_body": received < len(chunks),
        }

    async def read_everything(scope, receive, send):
        from starlette.requests import Request
        from starlette.responses import Response

        await Request(scope, receive).body()
        await Response("read")(scope, receive, send)

    from starlette.middleware.exceptions import ExceptionMiddleware

    app = BodySizeLimitMiddleware(ExceptionMiddleware(read_everything), max_body_bytes=1000)
    statuses = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    asyncio.run(app(scope, receive, send))
    return statuses[0], received


def test_body_limit_refuses_a_declared_oversized_body_without_reading_it():
    status, chunks_read = run_middleware([(b"content-length", b"100000")], [b"x" * 100] * 1000)
    assert (status, chunks_read) == (413, 0)


def test_body_limit_stops_reading_a_streamed_body_one_chunk_past_the_limit():
    status, chunks_read = run_middleware([], [b"x" * 300] * 1000)
    assert (status, chunks_read) == (413, 4)


def test_body_limit_lets_a_body_at_the_limit_through():
    assert run_middleware([], [b"x" * 500, b"x" * 500]) == (200, 2)


# ---- micro-batching -----------------------------------------------------------------


def test_batcher_answers_concurrent_requests_in_order_with_fewer_model_calls(
    predictor: Predictor, held_out
):
    batch_sizes = []

    def predict_batch(images: np.ndarray) -> np.ndarray:
        batch_sizes.append(len(images))
        return predictor.predict(images).probabilities

    async def predict_all(images: np.ndarray):
        batcher = InferenceBatcher(predict_batch, max_batch_size=16)
        try:
            return await asyncio.gather(*(batcher.predict(image) for image in images))
        finally:
            batcher.close()

    images, _ = held_out
    answers = asyncio.run(predict_all(images))
    expected = predictor.predict(images)
    assert [answer.digit for answer in answers] == expected.digits.tolist()
    assert np.allclose([answer.probabilities for answer in answers], expected.probabilities)
    assert sum(batch_sizes) == 40 and len(batch_sizes) < 40 and max(batch_sizes) <= 16


def test_batcher_gives_a_model_error_to_every_waiting_request():
    def broken(images: np.ndarray) -> np.ndarray:
        raise RuntimeError("the model fell over")

    async def predict_all():
        batcher = InferenceBatcher(broken)
        try:
            return await asyncio.gather(
                *(batcher.predict(np.zeros((28, 28), np.uint8)) for _ in range(5)),
                return_exceptions=True,
            )
        finally:
            batcher.close()

    outcomes = asyncio.run(predict_all())
    assert all(isinstance(outcome, RuntimeError) for outcome in outcomes)


# ---- a real server over loopback ----------------------------------------------------


@pytest.mark.slow
def test_real_server_gives_each_concurrent_client_its_own_answer(
    server_url: str,
    predictor: Predictor,
    held_out,
):
    images, _ = held_out
    pngs = [png_bytes(digit) for digit in images]

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server_url, timeout=30) as http:
            return await asyncio.gather(
                *(
                    http.post("/predict", content=png, headers={"Content-Type": "image/png"})
                    for png in pngs
                )
            )

    responses = asyncio.run(post_all())
    expected = predictor.predict(np.stack([to_mnist(png) for png in pngs])).digits.tolist()
    assert [response.status_code for response in responses] == [200] * len(pngs)
    assert [response.json()["digit"] for response in responses] == expected


@pytest.mark.slow
def test_real_server_runs_the_worker_processes_it_was_asked_for(
    server_url: str, server_workers: int
):
    port = str(urlsplit(server_url).port)
    server = next(
        process
        for process in psutil.Process().children()
        if "serve" in process.cmdline() and port in process.cmdline()
    )
    workers = [child for child in server.children() if "spawn_main" in " ".join(child.cmdline())]
    assert len(workers) == server_workers
    assert all(worker.is_running() for worker in workers)


@pytest.mark.slow
def test_serve_in_one_process_runs_the_shipped_onnx_model_by_default(tmp_path: Path, mnist):
    _, (x_test, y_test) = mnist
    with server_process(tmp_path / "server.log", workers=1) as url:
        health = httpx.get(f"{url}/health").json()
        answers = [
            httpx.post(
                f"{url}/predict", content=png_bytes(digit), headers={"Content-Type": "image/png"}
            ).json()["digit"]
            for digit in x_test[:20]
        ]
    assert health == {"status": "ok", "model": "digits_cnn.onnx (ONNX Runtime)"}
    assert "with 1 process " in (tmp_path / "server.log").read_text()
    assert np.mean(np.array(answers) == y_test[:20]) >= 0.95


def raw_http(url: str, request: bytes) -> bytes:
    """Send raw bytes to the server and return what it answers before closing."""
    address = urlsplit(url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


@pytest.mark.slow
def test_real_server_stays_healthy_after_abusive_requests(server_url: str, held_out):
    declared = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
    assert b" 413 " in raw_http(server_url, declared + b"Content-Length: 999999999\r\n\r\nabc")
    assert b" 400 " in raw_http(server_url, b"HELLO THERE\r\n\r\n")
    # A client that hangs up half-way through its body.
    raw_http(server_url, declared + b"Content-Length: 5000\r\n\r\n" + b"\x89PNG" * 100)

    def chunked_body() -> Iterator[bytes]:
        for _ in range(50):
            yield bytes(1_000_000)

    with httpx.Client(base_url=server_url, timeout=30) as http:
        streamed = http.post(
            "/predict", content=chunked_body(), headers={"Content-Type": "image/png"}
        )
        assert streamed.status_code == 413
        for body in (b"", b"GIF89a broken", bytes(range(256)) * 100):
            assert http.post(
                "/predict", content=body, headers={"Content-Type": "image/gif"}
            ).status_code in (415, 422)
        assert http.get("/health").json()["status"] == "ok"
        valid = http.post(
            "/predict", content=png_bytes(held_out[0][0]), headers={"Content-Type": "image/png"}
        )
        assert valid.status_code == 200


def test_serve_command_reports_a_missing_model_in_one_line(tmp_path: Path):
    missing = tmp_path / "no-such-model.keras"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "digitlab",
            "serve",
            "--model",
            str(missing),
            "--port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: {missing}: no such model file"]

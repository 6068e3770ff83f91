"""`POST /read`: whole numbers of real MNIST test digits, read by the shipped model in the app,
with /predict's body rules, limits and errors; and a real server reading concurrently."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digit_images import png_bytes
from digitlab.images import memory_needed
from digitlab.inference.predictor import Predictor
from digitlab.number_images import SEPARATORS, ComposedNumber, compose_number
from digitlab.reading import read_number
from digitlab.serve.app import create_app
from digitlab.serve.batching import InferenceBatcher
from digitlab.serve.uploads import INLINE_MAX_BYTES, INLINE_MAX_IMAGE_MEMORY, MAX_BODY_BYTES


@pytest.fixture(scope="module")
def shipped() -> Predictor:
    return Predictor.load(threads=1)


@pytest.fixture(scope="module", params=[0, 2], ids=["in-process", "readers"])
def client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The app serving what `digitlab serve` serves by default: the shipped model, reading
    numbers in its own process or, as `digitlab serve` does, in reader processes."""
    with TestClient(create_app(reader_processes=request.param)) as client:
        assert (client.app.state.readers is not None) == bool(request.param)
        yield client


def composed_numbers(mnist, count: int, gap: str, seed: int) -> list[ComposedNumber]:
    """`count` numbers of 2 to 5 MNIST test digits."""
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(seed)
    numbers = []
    for _ in range(count):
        picked = rng.integers(0, len(x_test), size=int(rng.integers(2, 6)))
        numbers.append(compose_number(x_test[picked], y_test[picked], rng, gap))
    return numbers


def content_type(item: ComposedNumber) -> str:
    return "image/png" if item.suffix == ".png" else "image/jpeg"


def post_read(client: TestClient, data: bytes, media_type: str = "image/png") -> httpx.Response:
    return client.post("/read", content=data, headers={"Content-Type": media_type})


# ---- answers ------------------------------------------------------------------------


def test_read_answers_the_number_each_digit_and_its_box_as_read_number_does(
    client: TestClient, shipped: Predictor, mnist
):
    numbers = composed_numbers(mnist, 8, "ordinary", seed=11) + composed_numbers(
        mnist, 4, "touching", seed=12
    )
    right = 0
    for item in numbers:
        response = post_read(client, item.data, content_type(item))
        assert response.status_code == 200
        answer = response.json()
        expected = read_number(item.data, shipped)
        assert answer["number"] == expected.number and answer["text"] == expected.text
        assert answer["confidence"] == pytest.approx(expected.confidence, abs=1e-5)
        assert [answer["width"], answer["height"]] == list(expected.size)
        assert answer["model"] == shipped.name
        for shown, digit in zip(answer["digits"], expected.digits, strict=True):
            assert shown["digit"] == digit.digit
            assert shown["box"] == list(digit.box)
            assert np.allclose(shown["probabilities"], digit.probabilities, atol=1e-5)
            assert shown["confidence"] == pytest.approx(max(shown["probabilities"]))
            assert shown["preprocessed"] == digit.image.tolist()
        right += answer["number"] == item.number
    assert right >= 10


def test_read_answers_a_number_with_a_separator_as_written(
    client: TestClient, shipped: Predictor, mnist
):
    _, (x_test, y_test) = mnist
    rng = np.random.default_rng(21)
    as_written = 0
    for mark in SEPARATORS:
        picked = rng.integers(0, len(x_test), size=4)
        item = compose_number(x_test[picked], y_test[picked], rng, separator=mark)
        answer = post_read(client, item.data, content_type(item)).json()
        expected = read_number(item.data, shipped)
        assert (answer["number"], answer["text"]) == (expected.number, expected.text)
        assert len(answer["digits"]) == len(answer["number"])
        as_written += answer["text"] == item.text
    assert as_written >= 2


def test_read_of_one_digit_answers_as_predict_does(client: TestClient, mnist):
    _, (x_test, _) = mnist
    for digit in x_test[:6]:
        png = png_bytes(digit)
        reading = post_read(client, png).json()
        prediction = client.post(
            "/predict", content=png, headers={"Content-Type": "image/png"}
        ).json()
        assert reading["number"] == str(prediction["digit"])
        assert len(reading["digits"]) == 1
        only = reading["digits"][0]
        x0, y0, x1, y1 = only["box"]
        assert 0 <= x0 < x1 <= 28 and 0 <= y0 < y1 <= 28
        assert np.allclose(only["probabilities"], prediction["probabilities"], atol=1e-5)
        assert only["preprocessed"] == prediction["preprocessed"]


def test_read_multipart_upload_matches_the_raw_body(client: TestClient, mnist):
    item = composed_numbers(mnist, 1, "ordinary", seed=13)[0]
    multipart = client.post(
        "/read", files={"file": (f"number{item.suffix}", item.data, content_type(item))}
    )
    raw = post_read(client, item.data, content_type(item))
    assert multipart.status_code == raw.status_code == 200
    assert multipart.json() == raw.json()


def test_a_large_photo_of_a_number_is_read_with_boxes_in_its_own_pixels(
    client: TestClient, shipped: Predictor, mnist
):
    item = composed_numbers(mnist, 1, "ordinary", seed=14)[0]
    small = Image.open(io.BytesIO(item.data)).convert("L")
    large = small.resize((small.width * 20, small.height * 20))
    buffer = io.BytesIO()
    large.save(buffer, format="JPEG", quality=95)
    jpeg = buffer.getvalue()
    assert len(jpeg) > INLINE_MAX_BYTES  # read on the decode threads, not the small lane
    answer = post_read(client, jpeg, "image/jpeg").json()
    assert (answer["width"], answer["height"]) == large.size
    assert answer["number"] == read_number(jpeg, shipped).number
    for shown, (x0, y0, x1, y1) in zip(answer["digits"], item.boxes, strict=True):
        truth = np.array([x0, y0, x1, y1]) * 20
        assert np.abs(np.array(shown["box"]) - truth).max() <= 0.1 * (truth[3] - truth[1])


def test_a_small_png_too_large_for_the_small_lane_is_still_read(client: TestClient, mnist):
    item = composed_numbers(mnist, 1, "ordinary", seed=15)[0]
    number = np.asarray(Image.open(io.BytesIO(item.data)).convert("L"))
    page = np.full((1200, 1600), 255 if number[0, 0] > 127 else 0, np.uint8)
    page[400 : 400 + number.shape[0], 300 : 300 + number.shape[1]] = number
    png = png_bytes(page)
    assert len(png) <= INLINE_MAX_BYTES < memory_needed(png)
    assert memory_needed(png) > INLINE_MAX_IMAGE_MEMORY
    response = post_read(client, png)
    assert response.status_code == 200
    assert (
        response.json()["number"]
        == post_read(client, item.data, content_type(item)).json()["number"]
    )


# ---- the same errors as /predict ------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "media_type", "status", "detail"),
    [
        (b"", "image/png", 422, "empty"),
        (b"%PDF-1.7 a document", "image/png", 415, "not an image"),
        (png_bytes(np.full((60, 200), 255, np.uint8)), "image/png", 422, "no digit found"),
        (png_bytes(np.full((60, 200), 255, np.uint8)), "text/plain", 415, "content type"),
        (b"\x89PNG\r\n\x1a\n" + bytes(MAX_BODY_BYTES), "image/png", 413, "too large"),
    ],
    ids=["empty", "not-an-image", "blank", "text-content-type", "over-5-mb"],
)
def test_read_refuses_what_predict_refuses_with_the_same_answer(
    client: TestClient, body: bytes, media_type: str, status: int, detail: str
):
    read = post_read(client, body, media_type)
    predict = client.post("/predict", content=body, headers={"Content-Type": media_type})
    assert read.status_code == predict.status_code == status
    assert detail in read.json()["detail"]
    assert read.json() == predict.json()


def test_read_of_a_truncated_number_is_422_with_the_reason(client: TestClient, mnist):
    item = next(i for i in composed_numbers(mnist, 6, "ordinary", seed=16) if i.suffix == ".png")
    response = post_read(client, item.data[: len(item.data) // 2])
    assert response.status_code == 422
    assert "truncated" in response.json()["detail"]


def test_openapi_documents_read_its_bodies_answers_and_errors(client: TestClient):
    spec = client.get("/openapi.json").json()
    read = spec["paths"]["/read"]["post"]
    content = read["requestBody"]["content"]
    assert content["multipart/form-data"]["schema"]["required"] == ["file"]
    assert "image/png" in content and "image/jpeg" in content
    assert {"200", "400", "413", "415", "422", "503"} <= set(read["responses"])
    schemas = spec["components"]["schemas"]
    assert set(schemas["ReadingResponse"]["required"]) == {
        "number",
        "text",
        "confidence",
        "digits",
        "width",
        "height",
        "not_digit_threshold",
        "model",
    }
    digit = schemas["DigitResponse"]
    assert set(digit["required"]) == {
        "digit",
        "confidence",
        "box",
        "probabilities",
        "is_digit",
        "digit_score",
        "preprocessed",
    }
    assert digit["properties"]["box"]["minItems"] == digit["properties"]["box"]["maxItems"] == 4


# ---- batching -----------------------------------------------------------------------


def test_batcher_keeps_each_requests_images_together_and_answers_them_in_order(
    shipped: Predictor, mnist
):
    _, (x_test, _) = mnist
    requests = [x_test[start : start + size] for start, size in ((0, 5), (5, 1), (6, 12), (18, 3))]
    batch_sizes = []

    def predict_batch(images: np.ndarray) -> np.ndarray:
        batch_sizes.append(len(images))
        return shipped.predict(images).probabilities

    async def predict_all() -> list[np.ndarray]:
        batcher = InferenceBatcher(predict_batch, max_batch_size=8)
        try:
            return await asyncio.gather(*(batcher.predict_many(images) for images in requests))
        finally:
            batcher.close()

    answers = asyncio.run(predict_all())
    for images, answer in zip(requests, answers, strict=True):
        assert np.allclose(answer, shipped.predict(images).probabilities, atol=1e-6)
    # 5 + 1 fit one batch of 8; 12 goes alone, over the limit rather than split; then 3.
    assert batch_sizes == [6, 12, 3]


# ---- a real server ------------------------------------------------------------------


@pytest.mark.slow
def test_real_server_reads_concurrent_numbers_each_for_its_own_client(
    server_url: str, model_path: Path, mnist
):
    numbers = composed_numbers(mnist, 12, "ordinary", seed=17)

    async def post_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server_url, timeout=60) as http:
            return await asyncio.gather(
                *(
                    http.post("/read", content=i.data, headers={"Content-Type": content_type(i)})
                    for i in numbers
                )
            )

    responses = asyncio.run(post_all())
    served = Predictor.load(model_path)
    assert [response.status_code for response in responses] == [200] * len(numbers)
    shown = [response.json()["number"] for response in responses]
    assert shown == [read_number(item.data, served).number for item in numbers]

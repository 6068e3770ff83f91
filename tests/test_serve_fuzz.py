"""Fuzz the REST API against its own OpenAPI description (schemathesis + hypothesis).

schemathesis generates requests, valid and invalid alike, for every operation the app's
`/openapi.json` documents and sends them in-process over ASGI to the app serving the shipped
model. Its generated bodies are random bytes, which never get past the image decoder, so a
second test posts real images to `POST /predict`: strokes drawn on a canvas of any size, in
every format and most colour modes the server accepts, as a raw body or a multipart `file`.

Together they prove that, for all of these requests, the server never answers 5xx (nor 503:
the model is loaded), answers only the status codes and content types it documents, every
JSON body matches its documented response model (a prediction with probabilities in 0..1
and a 28x28 image of 0..255 pixels, or an error), and every error answer is JSON with a
`detail` string.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from digitlab.serve.app import create_app, load_served_model

# Hundreds of generated requests per test.
pytestmark = pytest.mark.slow

# Colour modes each format can be saved in, among those people's images come in.
IMAGE_MODES: dict[str, tuple[str, ...]] = {
    "PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"),
    "JPEG": ("L", "RGB", "CMYK"),
    "BMP": ("1", "L", "P", "RGB", "RGBA"),
    "GIF": ("L", "P"),
    "TIFF": ("1", "L", "LA", "RGB", "RGBA", "CMYK", "I;16", "F"),
    "WEBP": ("L", "RGB", "RGBA"),
    "PPM": ("1", "L", "RGB"),
}
EXIF_ORIENTATION = 0x0112

# The document `GET /openapi.json` serves; building it loads no model.
schema = schemathesis.openapi.from_dict(create_app().openapi())
# schemathesis sends a generated binary body only for media types it has a serializer for;
# without these it would leave out every BMP, TIFF and PPM request.
schemathesis.serializer.alias(
    ["image/bmp", "image/tiff", "image/x-portable-anymap"], "application/octet-stream"
)
PREDICT = schema["/predict"]["POST"]
# multipart/form-data and each image/* type the operation documents.
PREDICT_MEDIA_TYPES = PREDICT.get_request_payload_content_types()


@st.composite
def drawn_images(draw: st.DrawFn) -> bytes:
    """An image file of 1..4 straight strokes on paper of a contrasting level (ink on a
    transparent canvas for some modes with alpha): any size up to 1500 px a side, any format
    and colour mode of `IMAGE_MODES`, with any EXIF orientation where the format keeps one."""
    image_format = draw(st.sampled_from(sorted(IMAGE_MODES)))
    mode = draw(st.sampled_from(IMAGE_MODES[image_format]))
    width, height = draw(st.integers(1, 1500)), draw(st.integers(1, 1500))
    paper_level = draw(st.integers(0, 255))
    ink_level = (paper_level + draw(st.integers(32, 224))) % 256
    paper = Image.new("L", (width, height), paper_level)
    alpha = Image.new("L", (width, height), 0 if draw(st.booleans()) else 255)
    point = st.tuples(st.floats(0, 1), st.floats(0, 1))
    strokes = draw(st.lists(st.tuples(point, point, st.floats(0.01, 0.3)), min_size=1, max_size=4))
    for (x0, y0), (x1, y1), thickness in strokes:
        line = [(x0 * (width - 1), y0 * (height - 1)), (x1 * (width - 1), y1 * (height - 1))]
        pen_width = max(1, round(thickness * min(width, height)))
        ImageDraw.Draw(paper).line(line, fill=ink_level, width=pen_width)
        ImageDraw.Draw(alpha).line(line, fill=255, width=pen_width)
    if mode in ("LA", "RGBA"):
        image = Image.merge("LA", (paper, alpha)).convert(mode)
    elif mode == "I;16":  # 16-bit levels span 0..65535
        image = Image.fromarray(np.asarray(paper, np.uint16) * 257)
    else:
        image = paper.convert(mode)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = draw(st.integers(1, 8))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, exif=exif)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def app() -> FastAPI:
    """The app serving what `digitlab serve` serves by default; schemathesis runs its
    lifespan around each test."""
    return create_app(predictor=load_served_model())


def assert_answer_conforms(case: schemathesis.Case, app: FastAPI) -> None:
    """Send `case` to `app` and check the answer against the OpenAPI description: no 5xx, a
    documented status code and content type, a body matching its response model, no 503 (the
    lifespan has loaded the model), and an error answer that is JSON with a `detail` string."""
    # Every check but one: a schema-valid body (any bytes) need not hold a digit, so 422 is a
    # correct answer to it, not the rejection of valid data that check looks for.
    response = case.call_and_validate(
        app=app, excluded_checks=[schemathesis.checks.positive_data_acceptance]
    )
    assert response.status_code != 503, "the model is not loaded: the lifespan did not run"
    if response.status_code >= 400:
        media_type = response.headers.get("content-type", [""])[0]
        assert media_type.startswith("application/json"), f"error answered as {media_type!r}"
        assert isinstance(response.json().get("detail"), str), response.text


@schema.parametrize()
@settings(max_examples=80, deadline=None)
def test_every_answer_conforms_to_the_openapi_description(
    app: FastAPI, case: schemathesis.Case
) -> None:
    assert_answer_conforms(case, app)


@given(image=drawn_images(), media_type=st.sampled_from(PREDICT_MEDIA_TYPES))
@settings(max_examples=60, deadline=None)
def test_every_answer_to_a_real_image_conforms_to_the_openapi_description(
    app: FastAPI, image: bytes, media_type: str
) -> None:
    # `Any`: schemathesis types a body as JSON or bytes, though multipart fields may be bytes.
    body: dict[str, Any] | bytes = {"file": image} if media_type == "multipart/form-data" else image
    assert_answer_conforms(PREDICT.Case(body=body, media_type=media_type), app)

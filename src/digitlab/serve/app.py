"""The FastAPI app: the drawing page at `/`, `POST /predict`, `POST /read` and `GET /health`.

`create_app()` builds the app; the model is loaded once, in the lifespan handler, and kept
on `app.state`. Inference runs on one worker thread fed by `InferenceBatcher`. Small
uploads (the page's canvas PNGs are a few KB) are preprocessed on the event loop, where
they take about 2 ms: handing them to a thread cost more than that in contention for the
GIL (2 workers answered 304 requests/s with thread hand-offs, 446 without). Large ones go
to a few threads, so that one photo does not stall the other connections. Progressive
JPEGs, whose decoding cost grows with their count of scans rather than their size (the
decoder refuses more scans than encoders write, which bounds it), go to a lane of their own,
so that the slowest kind delays no other kind of image. A request that finds its lane busy
for `DECODE_WAIT_S` gets 503 rather than waiting behind it. `/read` takes the same body and
lanes, except that a small image is read on a thread of its own lane (`serve/read.py`).

Hostile clients are bounded before the app: the server's protocol (`protocol.py`) limits
header size and the time a request may take to arrive; `UploadSlotsMiddleware` the large
uploads in flight; `TrustedHostMiddleware` the Host names answered (a page on another
site that rebinds its DNS name to this address cannot read the answers).

`digitlab serve --workers N` runs N processes of this app (`app_from_environment`), each
with its own model: a process's Python code runs on one core at a time.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from digitlab import __version__
from digitlab.errors import (
    ConfigError,
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    NoDigitFoundError,
    NotAnImageError,
)
from digitlab.images import to_mnist
from digitlab.images.jpeg_scans import is_progressive
from digitlab.inference.digit_score import (
    DEFAULT_NOT_DIGIT_THRESHOLD,
    check_threshold,
    is_digit,
    split_outputs,
)
from digitlab.reading import read_number
from digitlab.serve.batching import InferenceBatcher
from digitlab.serve.head import HeadAsGetMiddleware
from digitlab.serve.limits import BodySizeLimitMiddleware, UploadSlotsMiddleware
from digitlab.serve.read import batched_predictor, reading_response
from digitlab.serve.schemas import (
    ErrorResponse,
    HealthResponse,
    PredictionResponse,
    ReadingResponse,
)

if TYPE_CHECKING:
    from digitlab.inference.predictor import Predictor

#: Request bodies over this many bytes are refused with 413 (5 MB).
MAX_BODY_BYTES = 5_000_000

#: Images that would take more memory than this to read (`memory_needed`) are refused with
#: 413: a 200 KB PNG can claim 50 megapixels, which would take over 400 MB and seconds of
#: CPU. 24 MB admits a 1080p screenshot with transparency, a 19-megapixel gray scan, and a
#: baseline JPEG photo of any size (it decodes straight to a reduced size).
MAX_IMAGE_MEMORY = 24_000_000

#: Images decoded at once. Decoding is mostly bound by Python's GIL, so more threads add
#: little speed but multiply the memory a burst of large images takes.
DECODE_THREADS = min(4, os.cpu_count() or 1)

#: Uploads of at most this many bytes, taking at most `INLINE_MAX_IMAGE_MEMORY` to read (a
#: gray image of about a megapixel, a colour one of 200,000 pixels), are preprocessed on the
#: event loop (at most a few milliseconds); the rest on the threads.
INLINE_MAX_BYTES = 64 * 1024
INLINE_MAX_IMAGE_MEMORY = 5_000_000

#: Small images read at once by `/read`: the reading runs on threads (its model calls wait
#: for the batcher on the event loop), in a lane of its own so that no photo delays it.
SMALL_READ_THREADS = min(4, os.cpu_count() or 1)

#: Progressive JPEGs decoded at once: their cost grows with their scans, so they have a
#: lane of their own and wait only for each other.
PROGRESSIVE_DECODE_THREADS = 1

#: Seconds a request waits for its decoding lane before it gets 503.
DECODE_WAIT_S = 5.0

#: Uploads over `INLINE_MAX_BYTES` a process holds at once (`UploadSlotsMiddleware`):
#: with their bodies and decoding, a bound on its memory under any number of clients.
MAX_LARGE_UPLOADS = 8

#: The environment variables that tell `app_from_environment` which model to serve and
#: which Host names to answer (comma-separated; unset: any).
MODEL_ENVIRONMENT_VARIABLE = "DIGITLAB_SERVE_MODEL"
ALLOWED_HOSTS_ENVIRONMENT_VARIABLE = "DIGITLAB_SERVE_ALLOWED_HOSTS"
NOT_DIGIT_THRESHOLD_ENVIRONMENT_VARIABLE = "DIGITLAB_SERVE_NOT_DIGIT_THRESHOLD"

#: The query parameter by which a request chooses its own not-digit threshold.
THRESHOLD_PARAMETER = "not_digit_threshold"

_log = logging.getLogger(__name__)

_Decoded = TypeVar("_Decoded")

_STATIC_DIR = Path(str(files("digitlab.serve") / "static"))

# Most specific first: the first class an error is an instance of decides its status.
_IMAGE_ERROR_STATUS: tuple[tuple[type[ImageError], int], ...] = (
    (NotAnImageError, 415),
    (ImageTooLargeError, 413),
    (CorruptImageError, 422),
    (NoDigitFoundError, 422),
    (ImageError, 422),
)

_IMAGE_TYPES = ("image/png", "image/jpeg", "image/bmp", "image/gif", "image/tiff", "image/webp")

_IMAGE_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": (
        "An image (PNG, JPEG, BMP, GIF, TIFF or WebP; any size; dark ink on light paper or "
        "light on dark), either as the multipart form field `file` or as the raw body with "
        f"an `image/*` content type. At most {MAX_BODY_BYTES:,} bytes."
    ),
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        **{
            media_type: {"schema": {"type": "string", "format": "binary"}}
            for media_type in _IMAGE_TYPES
        },
    },
}


def _error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    reasons = {
        400: "The multipart body is malformed.",
        413: (
            f"The body is over {MAX_BODY_BYTES:,} bytes, or the image would take more than "
            f"{MAX_IMAGE_MEMORY:,} bytes of memory to decode."
        ),
        415: "The body is not an image, or the content type is neither multipart nor image/*.",
        422: (
            "The image is empty, corrupt or truncated, or blank (no ink at all), or "
            f"{THRESHOLD_PARAMETER} is not a number between 0 and 1."
        ),
        503: "The model is not loaded yet, or the server is busy with large or slow images.",
    }
    return {code: {"model": ErrorResponse, "description": reasons[code]} for code in codes}


_THRESHOLD_QUERY: dict[str, Any] = {
    "name": THRESHOLD_PARAMETER,
    "in": "query",
    "required": False,
    "description": (
        "The digit score (0..1) below which the image, or a part of a number, is not a "
        "digit; its best guess is still given (default: the server's, "
        f"{DEFAULT_NOT_DIGIT_THRESHOLD} unless `digitlab serve --not-digit-threshold` set "
        "another). Outside 0..1 or not a number: 422."
    ),
    "schema": {"type": "number", "minimum": 0, "maximum": 1},
}

# What /predict and /read share in the OpenAPI description: the body, the threshold and
# the errors.
_IMAGE_ROUTE: dict[str, Any] = {
    "openapi_extra": {"requestBody": _IMAGE_REQUEST_BODY, "parameters": [_THRESHOLD_QUERY]},
    "responses": _error_responses(400, 413, 415, 422, 503),
}


def create_app(
    model_path: str | os.PathLike[str] | None = None,
    *,
    predictor: Predictor | None = None,
    allowed_hosts: Sequence[str] | None = None,
    not_digit_threshold: float = DEFAULT_NOT_DIGIT_THRESHOLD,
) -> FastAPI:
    """Build the digitlab web app.

    `model_path` names the model to serve (default: the shipped model, in ONNX form); it
    is loaded by `load_served_model` when the app starts, so a bad path raises `ModelError`
    at start-up. A caller that has already loaded a `Predictor` (the `serve` command, to
    report a bad model cleanly before the server starts) passes it as `predictor` instead,
    and its own `not_digit_threshold` is the default; else `not_digit_threshold` is, which
    a request may override (`?not_digit_threshold=`). `allowed_hosts` lists the Host names
    answered (others get 400); None answers any. Raises `ConfigError` for a threshold
    outside 0..1.
    """
    check_threshold(not_digit_threshold)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving = (
            predictor
            if predictor is not None
            else await anyio.to_thread.run_sync(load_served_model, model_path, not_digit_threshold)
        )
        # The model's own outputs go through the batcher, digit scores included, so that
        # /read's reader splits them as `serving` itself would.
        batcher = InferenceBatcher(serving.outputs)
        app.state.reader = await anyio.to_thread.run_sync(batched_predictor, batcher, serving)
        app.state.predictor = serving
        app.state.batcher = batcher
        app.state.small_read_limiter = anyio.CapacityLimiter(SMALL_READ_THREADS)
        app.state.decode_limiter = anyio.CapacityLimiter(DECODE_THREADS)
        app.state.progressive_decode_limiter = anyio.CapacityLimiter(PROGRESSIVE_DECODE_THREADS)
        try:
            yield
        finally:
            app.state.predictor = None
            batcher.close()

    app = FastAPI(
        title="digitlab",
        summary="Handwritten-digit recognition: draw a digit or a number, or post an image.",
        version=__version__,
        lifespan=lifespan,
        exception_handlers={
            ImageError: _image_error_handler,
            ClientDisconnect: _client_disconnect_handler,
            Exception: _internal_error_handler,
        },
    )
    app.state.predictor = None
    # The last added runs first: the Host check, then HEAD, then the upload bounds.
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=MAX_BODY_BYTES)
    app.add_middleware(
        UploadSlotsMiddleware, max_uploads=MAX_LARGE_UPLOADS, small_body_bytes=INLINE_MAX_BYTES
    )
    app.add_middleware(HeadAsGetMiddleware)
    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.mount("/static", StaticFiles(directory=_STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(_STATIC_DIR / "index.html")

    @app.get("/health", responses=_error_responses(503))
    async def health(request: Request) -> HealthResponse:
        """Answer 200 once the model is loaded and warmed up, 503 before."""
        return HealthResponse(status="ok", model=_ready_predictor(request).name)

    @app.post("/predict", response_model=PredictionResponse, **_IMAGE_ROUTE)
    async def predict(request: Request) -> Response:
        """Classify the digit in one image and show the 28x28 image the model saw."""
        loaded = _ready_predictor(request)
        threshold = _requested_threshold(request, loaded)
        data, name = await _read_image_bytes(request)
        image = await _preprocess(request, data, name)
        answer = await request.app.state.batcher.predict(image)
        probabilities, digit_scores = split_outputs(answer.probabilities[np.newaxis])
        digit = int(probabilities[0].argmax())
        prediction = PredictionResponse(
            digit=digit,
            confidence=float(probabilities[0, digit]),
            probabilities=probabilities[0].tolist(),
            is_digit=bool(is_digit(digit_scores[0], threshold)),
            digit_score=float(digit_scores[0]),
            not_digit_threshold=threshold,
            model=loaded.name,
            preprocessed=image.tolist(),
        )
        # Validated once, here: returned as a model, FastAPI would validate its 784 pixels
        # again before serialising them.
        return Response(prediction.model_dump_json(), media_type="application/json")

    @app.post("/read", response_model=ReadingResponse, **_IMAGE_ROUTE)
    async def read(request: Request) -> Response:
        """Read the whole number in one image: its digits left to right, each with its box
        in the image's pixels, its probabilities and the 28x28 image the model saw. One
        digit reads as /predict answers."""
        loaded = _ready_predictor(request)
        threshold = _requested_threshold(request, loaded)
        data, name = await _read_image_bytes(request)
        reader = functools.partial(read_number, predictor=request.app.state.reader)
        reading = await _in_decode_lane(request, data, name, reader, small_on_loop=False)
        answer = reading_response(reading, loaded.name, threshold)
        return Response(answer.model_dump_json(), media_type="application/json")

    return app


def _ready_predictor(request: Request) -> Predictor:
    predictor: Predictor | None = request.app.state.predictor
    if predictor is None:
        raise HTTPException(503, "the model is not loaded yet; try again in a few seconds")
    return predictor


def _requested_threshold(request: Request, served: Predictor) -> float:
    """The request's `not_digit_threshold`, or the served model's; 422 when it is not a
    number between 0 and 1."""
    text = request.query_params.get(THRESHOLD_PARAMETER)
    if text is None:
        return served.not_digit_threshold
    try:
        return check_threshold(float(text), THRESHOLD_PARAMETER)
    except (ValueError, ConfigError):
        raise HTTPException(
            422, f"{THRESHOLD_PARAMETER}: {text!r} is not a number between 0 and 1"
        ) from None


async def _read_image_bytes(request: Request) -> tuple[bytes, str]:
    """The image in a multipart `file` field or a raw `image/*` body, and a name for it
    in error messages; 415 or 422 when there is none."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        async with request.form(max_files=1, max_fields=8) as form:
            upload = form.get("file")
            if isinstance(upload, str):
                raise HTTPException(
                    422,
                    "the multipart field 'file' is text, not a file: its part has no filename "
                    "(with curl, -F file=@digit.png rather than -F file=<digit.png)",
                )
            if upload is None:
                raise HTTPException(422, "the multipart form has no field named 'file'")
            data = await upload.read()
            name = upload.filename or "the uploaded file"
    elif media_type.startswith("image/"):
        data = await request.body()
        name = "the request body"
    else:
        raise HTTPException(
            415,
            f"unsupported content type {media_type or '(none)'!r}: send the image as the "
            "multipart form field 'file' or as a raw body with an image/* content type",
        )
    if not data:
        raise HTTPException(422, f"{name}: the image is empty (0 bytes)")
    return data, name


def load_served_model(
    model_path: str | os.PathLike[str] | None = None,
    not_digit_threshold: float = DEFAULT_NOT_DIGIT_THRESHOLD,
) -> Predictor:
    """Load `model_path` for serving (default: the shipped model in ONNX form), saying
    "not a digit" below `not_digit_threshold` unless a request asks for another.

    One runtime thread: a server answers one image at a time per process, and ONNX
    Runtime's spinning thread pool burnt a third more CPU per request. Raises `ModelError`,
    and `ConfigError` for a threshold outside 0..1.
    """
    from digitlab.inference.predictor import Predictor
    from digitlab.inference.pretrained import pretrained_onnx_path

    path = model_path if model_path is not None else pretrained_onnx_path()
    return Predictor.load(path, threads=1, not_digit_threshold=not_digit_threshold)


def app_from_environment() -> FastAPI:
    """`create_app` for the model named by `$DIGITLAB_SERVE_MODEL` (default: the shipped
    one) answering the Host names in `$DIGITLAB_SERVE_ALLOWED_HOSTS`, with the not-digit
    threshold in `$DIGITLAB_SERVE_NOT_DIGIT_THRESHOLD` (default: 0.5): the factory each
    `digitlab serve --workers N` process starts."""
    hosts = os.environ.get(ALLOWED_HOSTS_ENVIRONMENT_VARIABLE)
    threshold = os.environ.get(NOT_DIGIT_THRESHOLD_ENVIRONMENT_VARIABLE)
    return create_app(
        os.environ.get(MODEL_ENVIRONMENT_VARIABLE) or None,
        allowed_hosts=hosts.split(",") if hosts is not None else None,
        not_digit_threshold=float(threshold) if threshold else DEFAULT_NOT_DIGIT_THRESHOLD,
    )


async def _preprocess(request: Request, data: bytes, name: str) -> np.ndarray:
    """`to_mnist` within this server's bounds on decoding memory (`_in_decode_lane`)."""
    return await _in_decode_lane(request, data, name, to_mnist, small_on_loop=True)


async def _in_decode_lane(
    request: Request,
    data: bytes,
    name: str,
    decode: Callable[..., _Decoded],
    small_on_loop: bool,
) -> _Decoded:
    """`decode(data, name=name, max_memory_bytes=...)` within this server's bounds on decoding
    memory: small images on the event loop (`small_on_loop`) or the small-read threads,
    the rest on the progressive-JPEG lane or the decode threads. Raises its `ImageError`s,
    and 503 when the lane stays busy for `DECODE_WAIT_S`."""
    progressive = is_progressive(data)
    state = request.app.state
    if len(data) <= INLINE_MAX_BYTES and not progressive:
        with contextlib.suppress(ImageTooLargeError):
            small = functools.partial(decode, name=name, max_memory_bytes=INLINE_MAX_IMAGE_MEMORY)
            if small_on_loop:
                return small(data)
            return await _on_lane(state.small_read_limiter, small, data)
    lane = state.progressive_decode_limiter if progressive else state.decode_limiter
    large = functools.partial(decode, name=name, max_memory_bytes=MAX_IMAGE_MEMORY)
    return await _on_lane(lane, large, data)


async def _on_lane(
    lane: anyio.CapacityLimiter, decode: Callable[[bytes], _Decoded], data: bytes
) -> _Decoded:
    """`decode(data)` on a thread once `lane` has room; 503 after `DECODE_WAIT_S`."""
    try:
        with anyio.fail_after(DECODE_WAIT_S):
            await lane.acquire()
    except TimeoutError:
        raise HTTPException(
            503, "the server is busy decoding other images; try again in a moment"
        ) from None
    try:
        return await anyio.to_thread.run_sync(decode, data)
    finally:
        lane.release()


async def _image_error_handler(request: Request, error: Exception) -> JSONResponse:
    status = next(code for kind, code in _IMAGE_ERROR_STATUS if isinstance(error, kind))
    return JSONResponse({"detail": str(error)}, status_code=status)


async def _client_disconnect_handler(request: Request, error: Exception) -> Response:
    # The client hung up mid-request: nobody reads the answer, and it is no server fault.
    _log.info("client %s disconnected before its request arrived whole", request.client)
    return Response(status_code=400)


async def _internal_error_handler(request: Request, error: Exception) -> JSONResponse:
    # Starlette logs the traceback; the client gets JSON like every other error.
    return JSONResponse({"detail": "internal server error"}, status_code=500)

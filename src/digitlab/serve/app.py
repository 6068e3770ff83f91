"""The FastAPI app: the drawing page at `/`, `POST /predict`, `POST /read` and `GET /health`.

`create_app()` builds the app; the model is loaded once, in the lifespan handler, and kept
on `app.state`. Inference runs on one worker thread fed by `InferenceBatcher`. How an
upload's bytes are read and in which lane it is decoded (small ones on the event loop,
large ones and progressive JPEGs on threads of their own) is `uploads.py`'s; what the image
routes share in the OpenAPI description, `route_docs.py`'s. `/read` takes the same body and
lanes, except that a small image is read by the reader processes, or without them on a thread
of its own lane (`serve/read.py`). The routes that store a person's samples and teach the
model are `teach_routes.py`'s.

Hostile clients are bounded before the app: the server's protocol (`protocol.py`) limits
header size and the time a request may take to arrive; `UploadSlotsMiddleware` the large
uploads in flight; `TrustedHostMiddleware` the Host names answered (a page on another
site that rebinds its DNS name to this address cannot read the answers).

`digitlab serve --workers N` runs N processes of this app (`app_from_environment`), each
with its own model: a process's Python code runs on one core at a time. `--readers M` gives
each M reader processes for /read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

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
from digitlab.inference.digit_score import (
    DEFAULT_NOT_DIGIT_THRESHOLD,
    check_threshold,
    is_digit,
    split_outputs,
)
from digitlab.serve.batching import InferenceBatcher
from digitlab.serve.head import HeadAsGetMiddleware
from digitlab.serve.limits import BodySizeLimitMiddleware, UploadSlotsMiddleware
from digitlab.serve.read import (
    batched_predictor,
    read_upload,
    readers_started,
    reading_response,
    start_readers,
    stop_readers,
)
from digitlab.serve.route_docs import IMAGE_ROUTE, THRESHOLD_PARAMETER, error_responses
from digitlab.serve.schemas import (
    HealthResponse,
    PredictionResponse,
    ReadingResponse,
)
from digitlab.serve.teach_routes import add_teaching
from digitlab.serve.teaching import TeachingSettings
from digitlab.serve.uploads import (
    INLINE_MAX_BYTES,
    MAX_BODY_BYTES,
    MAX_LARGE_UPLOADS,
    open_decode_lanes,
    preprocess,
    read_image_bytes,
)

if TYPE_CHECKING:
    from digitlab.inference.predictor import Predictor

#: The environment variables that tell `app_from_environment` which model to serve and
#: which Host names to answer (comma-separated; unset: any).
MODEL_ENVIRONMENT_VARIABLE = "DIGITLAB_SERVE_MODEL"
ALLOWED_HOSTS_ENVIRONMENT_VARIABLE = "DIGITLAB_SERVE_ALLOWED_HOSTS"
NOT_DIGIT_THRESHOLD_ENVIRONMENT_VARIABLE = "DIGITLAB_SERVE_NOT_DIGIT_THRESHOLD"
READERS_ENVIRONMENT_VARIABLE = "DIGITLAB_SERVE_READERS"

_log = logging.getLogger(__name__)

_STATIC_DIR = Path(str(files("digitlab.serve") / "static"))

# Most specific first: the first class an error is an instance of decides its status.
_IMAGE_ERROR_STATUS: tuple[tuple[type[ImageError], int], ...] = (
    (NotAnImageError, 415),
    (ImageTooLargeError, 413),
    (CorruptImageError, 422),
    (NoDigitFoundError, 422),
    (ImageError, 422),
)


def create_app(
    model_path: str | os.PathLike[str] | None = None,
    *,
    predictor: Predictor | None = None,
    allowed_hosts: Sequence[str] | None = None,
    not_digit_threshold: float = DEFAULT_NOT_DIGIT_THRESHOLD,
    teaching: TeachingSettings | None = None,
    reader_processes: int = 0,
) -> FastAPI:
    """Build the digitlab web app.

    `model_path` names the model to serve (default: the shipped model, in ONNX form); it
    is loaded by `load_served_model` when the app starts, so a bad path raises `ModelError`
    at start-up. A caller that has already loaded a `Predictor` (the `serve` command, to
    report a bad model cleanly before the server starts) passes it as `predictor` instead,
    and its own `not_digit_threshold` is the default; else `not_digit_threshold` is, which
    a request may override (`?not_digit_threshold=`). `allowed_hosts` lists the Host names
    answered (others get 400); None answers any. `teaching` says where a person's samples
    live and how the model is taught from them (`serve/teaching.py`), which starts from
    `model_path`'s `.keras` file. `reader_processes` processes read /read's small images,
    all fed from one queue (`readers.py`; ONNX models only); 0 reads them on this
    process's threads. Raises `ConfigError` for a threshold outside 0..1.
    """
    check_threshold(not_digit_threshold)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        serving = (
            predictor
            if predictor is not None
            else await anyio.to_thread.run_sync(load_served_model, model_path, not_digit_threshold)
        )
        open_decode_lanes(app.state)
        await serve_predictor(app, serving)
        # Answer the first request as every later one: with the readers, if they start.
        await readers_started(app)
        try:
            yield
        finally:
            app.state.predictor = None
            stop_readers(app, wait=True)
            app.state.batcher.close()

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
    app.state.reader_processes = reader_processes
    app.state.readers = app.state.readers_starting = None
    add_teaching(app, teaching or TeachingSettings(), model_path, serve_predictor)
    # The last added runs first: the Host check, then HEAD, then the upload bounds, then
    # the check for a newly taught model.
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

    @app.get("/health", responses=error_responses(503))
    async def health(request: Request) -> HealthResponse:
        """Answer 200 once the model is loaded and warmed up, 503 before."""
        return HealthResponse(status="ok", model=_ready_predictor(request).name)

    @app.post("/predict", response_model=PredictionResponse, **IMAGE_ROUTE)
    async def predict(request: Request) -> Response:
        """Classify the digit in one image and show the 28x28 image the model saw."""
        loaded = _ready_predictor(request)
        threshold = _requested_threshold(request, loaded)
        # Taken with the predictor: a request in flight when the model is swapped ends on
        # the model it started with.
        batcher: InferenceBatcher = request.app.state.batcher
        data, name = await read_image_bytes(request)
        image = await preprocess(request, data, name)
        answer = await batcher.predict(image)
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

    @app.post("/read", response_model=ReadingResponse, **IMAGE_ROUTE)
    async def read(request: Request) -> Response:
        """Read the whole number in one image: its digits left to right, each with its box
        in the image's pixels, its probabilities and the 28x28 image the model saw. One
        digit reads as /predict answers."""
        loaded = _ready_predictor(request)
        threshold = _requested_threshold(request, loaded)
        data, name = await read_image_bytes(request)
        reading = await read_upload(request, data, name)
        answer = reading_response(reading, loaded.name, threshold)
        return Response(answer.model_dump_json(), media_type="application/json")

    return app


async def serve_predictor(app: FastAPI, predictor: Predictor) -> InferenceBatcher | None:
    """Make `predictor` answer `app`'s later requests, on an inference thread of its own
    and in new reader processes (`app.state.reader_processes` of them); return the batcher
    it replaces (None at start-up), which the caller closes once the requests holding it
    are done. The readers it replaces stop once their reads are done."""
    # The model's own outputs go through the batcher, digit scores included, so that
    # /read's reader splits them as `predictor` itself would.
    batcher = InferenceBatcher(predictor.outputs)
    reader = await anyio.to_thread.run_sync(batched_predictor, batcher, predictor)
    previous: InferenceBatcher | None = getattr(app.state, "batcher", None)
    app.state.reader, app.state.batcher, app.state.predictor = reader, batcher, predictor
    start_readers(app, predictor)
    return previous


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
    threshold in `$DIGITLAB_SERVE_NOT_DIGIT_THRESHOLD` (default: 0.5), teaching as
    `$DIGITLAB_SERVE_TEACHING` says, and `$DIGITLAB_SERVE_READERS` reader processes
    (default: none): the factory each `digitlab serve --workers N` process starts."""
    hosts = os.environ.get(ALLOWED_HOSTS_ENVIRONMENT_VARIABLE)
    threshold = os.environ.get(NOT_DIGIT_THRESHOLD_ENVIRONMENT_VARIABLE)
    return create_app(
        os.environ.get(MODEL_ENVIRONMENT_VARIABLE) or None,
        allowed_hosts=hosts.split(",") if hosts is not None else None,
        not_digit_threshold=float(threshold) if threshold else DEFAULT_NOT_DIGIT_THRESHOLD,
        teaching=TeachingSettings.from_environment(),
        reader_processes=int(os.environ.get(READERS_ENVIRONMENT_VARIABLE) or 0),
    )


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

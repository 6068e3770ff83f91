"""`/samples` and `/finetune`: a person's corrections stored, and the model taught from them.

`POST /samples` takes its image exactly as `/predict` does (the same body rules, limits,
decoder and errors) and stores the 28x28 digit the model would see (`serve/samples.py`);
`POST /finetune` starts teaching in the background and the served model is swapped when it
ends (`serve/teaching.py`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match, Route

from digitlab.errors import SamplesError, SamplesFullError, TeachingBusyError, TeachingError
from digitlab.serve.route_docs import IMAGE_REQUEST_BODY, error_responses
from digitlab.serve.samples import SAMPLE_ID_PATTERN
from digitlab.serve.schemas import ErrorResponse, FinetuneStatus, SampleCounts, SampleCreated
from digitlab.serve.teaching import (
    MIN_SAMPLES_PER_DIGIT,
    Install,
    TaughtModelMiddleware,
    Teaching,
    TeachingSettings,
    teaching_shortfall,
)
from digitlab.serve.uploads import preprocess, read_image_bytes

if TYPE_CHECKING:
    import os

_CONFLICTS: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ErrorResponse,
        "description": "The samples folder is full, a fine-tune is running already, or there "
        "are too few samples (or no .keras model) to teach from.",
    }
}

# /predict's body and errors (it has no not-digit threshold), and the full store.
_SAMPLE_ROUTE: dict[str, Any] = {
    "openapi_extra": {"requestBody": IMAGE_REQUEST_BODY},
    "responses": {**error_responses(400, 413, 415, 422, 503), **_CONFLICTS},
}


def add_teaching(
    app: FastAPI,
    settings: TeachingSettings,
    served_model: str | os.PathLike[str] | None,
    install: Install,
) -> None:
    """Give `app` the `/samples` and `/finetune` routes and the model swap they lead to."""
    teaching = Teaching(settings, served_model, install)
    app.state.teaching = teaching
    # Routes of the app itself, not of an included router: the 405 handler lists the
    # methods of every route of a path.
    route = functools.partial(app.add_api_route, tags=["teaching"])
    route("/samples", add_sample, methods=["POST"], status_code=201, **_SAMPLE_ROUTE)
    route("/samples", sample_counts, methods=["GET"])
    route(
        "/samples/{sample_id}",
        delete_sample,
        methods=["DELETE"],
        status_code=204,
        responses={
            404: {"model": ErrorResponse, "description": "There is no sample with this id."},
            422: {"model": ErrorResponse, "description": "The id is not 32 lowercase hex digits."},
        },
    )
    route("/finetune", start_finetune, methods=["POST"], status_code=202, responses=_CONFLICTS)
    route("/finetune", finetune_status, methods=["GET"])
    app.add_middleware(TaughtModelMiddleware, teaching=teaching)
    app.add_exception_handler(SamplesError, _conflict_handler)
    app.add_exception_handler(TeachingError, _conflict_handler)
    app.add_exception_handler(RequestValidationError, _invalid_request_handler)
    app.add_exception_handler(405, _method_not_allowed_handler)


def _teaching(request: Request) -> Teaching:
    teaching: Teaching = request.app.state.teaching
    return teaching


async def add_sample(
    request: Request,
    label: Annotated[int, Query(ge=0, le=9, description="The digit the image shows, 0..9.")],
) -> SampleCreated:
    """Store one image as a sample of `label` for teaching the model; it takes the body
    /predict takes. The id is made by the server."""
    data, name = await read_image_bytes(request)
    pixels = await preprocess(request, data, name)
    sample_id = await anyio.to_thread.run_sync(_teaching(request).samples.add, pixels, label)
    return SampleCreated(id=sample_id, label=label)


async def sample_counts(request: Request) -> SampleCounts:
    """How many samples each digit has, and whether there are enough to teach the model."""
    store = _teaching(request).samples
    counts = await anyio.to_thread.run_sync(store.counts)
    return SampleCounts(
        counts=[counts[label] for label in range(10)],
        total=sum(counts.values()),
        max_samples=store.max_samples,
        min_per_digit=MIN_SAMPLES_PER_DIGIT,
        ready=teaching_shortfall(counts) is None,
    )


async def delete_sample(
    request: Request, sample_id: Annotated[str, Path(pattern=SAMPLE_ID_PATTERN)]
) -> Response:
    """Delete one stored sample."""
    if not await anyio.to_thread.run_sync(_teaching(request).samples.delete, sample_id):
        return JSONResponse({"detail": f"there is no sample {sample_id}"}, status_code=404)
    return Response(status_code=204)


async def start_finetune(request: Request) -> FinetuneStatus:
    """Start teaching the model in use from the stored samples, in the background; when it
    ends well, every later answer comes from the taught model. Follow it with GET /finetune."""
    return await anyio.to_thread.run_sync(_teaching(request).start)


async def finetune_status(request: Request) -> FinetuneStatus:
    """Where teaching stands: idle, running (with its progress), done (with the scores
    before and after) or failed (with the reason)."""
    return await anyio.to_thread.run_sync(_teaching(request).status)


async def _conflict_handler(request: Request, error: Exception) -> JSONResponse:
    status = 409 if isinstance(error, SamplesFullError | TeachingError) else 422
    headers = {"Retry-After": "5"} if isinstance(error, TeachingBusyError) else None
    return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)


async def _invalid_request_handler(request: Request, error: Exception) -> JSONResponse:
    # Every error answer is one sentence, like the rest of the API's, not pydantic's list.
    assert isinstance(error, RequestValidationError)
    problems = [
        f"{' '.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors()
    ]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


async def _method_not_allowed_handler(request: Request, error: Exception) -> JSONResponse:
    # /samples and /finetune each have a GET and a POST route; Starlette's 405 would name
    # only the first route's methods in `Allow`.
    allowed = sorted(
        {
            method
            for route in request.app.router.routes
            if isinstance(route, Route) and route.matches(request.scope)[0] != Match.NONE
            for method in route.methods or ()
        }
    )
    return JSONResponse(
        {"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": ", ".join(allowed)}
    )

"""`POST /read`'s parts: where an upload is read, a reader whose model calls join the
app's inference batches, and the answer's JSON.

A small upload is read by the app's reader processes when it has them (`readers.py`).
Any other, and every upload of an app without readers, is read in the server process:
`read_number` calls the classifier several times per image (on candidate digits, joins
and cuts), synchronously. It runs on a worker thread, and each of its model calls goes
through the app's `InferenceBatcher`, so the model still runs on one thread, shared with
/predict's images: runtimes such as TFLite may not be called from two threads at once,
and on a few cores one call of many images costs less than many calls of a few.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING

import anyio.from_thread
import numpy as np

from digitlab.errors import ImageTooLargeError
from digitlab.inference.digit_score import is_digit
from digitlab.reading import read_number
from digitlab.serve.readers import Readers, ReadersUnavailableError, can_read_with
from digitlab.serve.schemas import DigitResponse, ReadingResponse
from digitlab.serve.uploads import INLINE_MAX_IMAGE_MEMORY, in_decode_lane, is_small

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

    from digitlab.inference.predictor import Predictor
    from digitlab.reading import NumberReading
    from digitlab.serve.batching import InferenceBatcher

_log = logging.getLogger(__name__)


async def read_upload(request: Request, data: bytes, name: str) -> NumberReading:
    """The number in an upload's bytes: read by the app's readers when it has them and the
    image is small, else in this process's decoding lanes. Raises `read_number`'s
    `ImageError`s, and 503 when the lane stays busy (`uploads.DECODE_WAIT_S`)."""
    app = request.app
    readers: Readers | None = app.state.readers
    if readers is not None and is_small(data):
        with contextlib.suppress(ImageTooLargeError):
            try:
                return await readers.read(data, name, INLINE_MAX_IMAGE_MEMORY)
            except ReadersUnavailableError as error:
                if app.state.readers is readers:
                    _log.warning("reading numbers in the server process: %s", error)
                    stop_readers(app, wait=False)
    reader = functools.partial(read_number, predictor=app.state.reader)
    return await in_decode_lane(request, data, name, reader, small_on_loop=False)


def start_readers(app: FastAPI, predictor: Predictor) -> None:
    """Replace `app`'s readers, if any, by `app.state.reader_processes` readers of
    `predictor`'s model, started in the background (`readers_started` waits for them);
    none when that is 0 or they cannot load the model (`can_read_with`). Call inside the
    event loop."""
    stop_readers(app, wait=False)
    processes: int = app.state.reader_processes
    if processes < 1 or not can_read_with(predictor):
        return
    assert predictor.source is not None
    readers = Readers(predictor.source, predictor.not_digit_threshold, processes)
    app.state.readers_starting = asyncio.get_running_loop().create_task(_start(app, readers))


async def readers_started(app: FastAPI) -> None:
    """Return once `app`'s readers, if any are starting, take reads or have failed."""
    starting: asyncio.Task[None] | None = app.state.readers_starting
    if starting is not None:
        await asyncio.shield(starting)


def stop_readers(app: FastAPI, wait: bool) -> None:
    """Stop `app`'s readers, running or starting, once their reads are done (`wait`: block
    until then); later reads are read in this process."""
    starting: asyncio.Task[None] | None = app.state.readers_starting
    if starting is not None:
        starting.cancel()
    readers: Readers | None = app.state.readers
    app.state.readers, app.state.readers_starting = None, None
    if readers is not None:
        readers.close(wait)


async def _start(app: FastAPI, readers: Readers) -> None:
    """Start `readers` and make them `app`'s: a model swap meanwhile cancels this."""
    try:
        await readers.start()
    except asyncio.CancelledError:
        readers.close(wait=False)
        raise
    except Exception as error:  # whatever stopped them, read in this process
        _log.warning("reading numbers in the server process: the readers failed: %r", error)
        readers.close(wait=False)
        app.state.readers_starting = None
        return
    app.state.readers, app.state.readers_starting = readers, None


def batched_predictor(batcher: InferenceBatcher, served: Predictor) -> Predictor:
    """A `Predictor` for `served`'s model whose calls queue on `batcher`.

    Build it and use it on worker threads started by anyio (`anyio.to_thread.run_sync`),
    never on the event loop, which must stay free to run the batches it waits for.
    """
    from digitlab.inference.predictor import Predictor

    def run(pixels: np.ndarray) -> np.ndarray:
        outputs: np.ndarray = anyio.from_thread.run(batcher.predict_many, pixels)
        return outputs

    return Predictor(
        run, served.name, served.runtime, not_digit_threshold=served.not_digit_threshold
    )


def reading_response(
    reading: NumberReading, model: str, not_digit_threshold: float
) -> ReadingResponse:
    """`reading` as /read's answer from `model`, each part a digit when its digit score
    reaches `not_digit_threshold` (the request's own)."""
    width, height = reading.size
    return ReadingResponse(
        number=reading.number,
        text=reading.text,
        confidence=reading.confidence,
        digits=[
            DigitResponse(
                digit=digit.digit,
                confidence=digit.confidence,
                box=list(digit.box),
                probabilities=digit.probabilities.tolist(),
                is_digit=bool(is_digit(digit.digit_score, not_digit_threshold)),
                digit_score=digit.digit_score,
                preprocessed=digit.image.tolist(),
            )
            for digit in reading.digits
        ],
        width=width,
        height=height,
        not_digit_threshold=not_digit_threshold,
        model=model,
    )

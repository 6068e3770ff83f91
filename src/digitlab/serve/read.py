"""`POST /read`'s parts: a reader whose model calls join the app's inference batches, and
the answer's JSON.

`read_number` calls the classifier several times per image (on candidate digits, joins
and cuts), synchronously. It runs on a worker thread, and each of its model calls goes
through the app's `InferenceBatcher`, so the model still runs on one thread, shared with
/predict's images: runtimes such as TFLite may not be called from two threads at once,
and on a few cores one call of many images costs less than many calls of a few.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio.from_thread
import numpy as np

from digitlab.inference.digit_score import is_digit
from digitlab.serve.schemas import DigitResponse, ReadingResponse

if TYPE_CHECKING:
    from digitlab.inference.predictor import Predictor
    from digitlab.reading import NumberReading
    from digitlab.serve.batching import InferenceBatcher


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

"""Micro-batching: concurrent requests share one model call on one worker thread.

Inference is CPU-bound and a model call has a fixed cost of its own, so answering 32
concurrent requests with 32 calls on 32 threads thrashes two cores. Instead every request
queues its image; while one batch runs on the worker thread, new arrivals gather into the
next. Under light load a batch is one image and nothing waits; under heavy load batches grow
and the per-image cost falls. The event loop never runs the model itself. A request may
queue several images at once (a number's candidate digits, `predict_many`); they stay
together in one model call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImagePrediction:
    """One image's answer: the predicted class and the probability of every class."""

    digit: int
    probabilities: np.ndarray


class InferenceBatcher:
    """Collects images from concurrent coroutines and predicts them in batches.

    `predict_batch` takes an (N, 28, 28) uint8 array and returns an (N, C) array of
    probabilities; it runs on a single dedicated thread. Use inside a running event loop;
    call `close()` when done.
    """

    def __init__(
        self, predict_batch: Callable[[np.ndarray], np.ndarray], max_batch_size: int = 64
    ) -> None:
        self._predict_batch = predict_batch
        self._max_batch_size = max_batch_size
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digitlab-infer")
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def predict(self, image: np.ndarray) -> ImagePrediction:
        """Predict one (28, 28) uint8 image; raises whatever the model call raised."""
        probabilities = (await self.predict_many(image[np.newaxis]))[0]
        return ImagePrediction(int(np.argmax(probabilities)), probabilities)

    async def predict_many(self, images: np.ndarray) -> np.ndarray:
        """Predict (N, 28, 28) images in one model call, shared with other requests' images;
        returns their (N, C) probabilities. Raises whatever the model call raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((images, future))
        if self._worker is None:
            self._worker = loop.create_task(self._run_batches())
        return await future

    def _next_batch(self) -> list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]:
        """The oldest requests holding up to `max_batch_size` images (at least one request)."""
        count, taken = 0, 0
        for images, _ in self._pending:
            if taken and count + len(images) > self._max_batch_size:
                break
            count += len(images)
            taken += 1
        batch = self._pending[:taken]
        del self._pending[:taken]
        # A client that hung up has cancelled its future: skip its images.
        return [(images, future) for images, future in batch if not future.done()]

    async def _run_batches(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._next_batch()
                if not batch:
                    continue
                images = np.concatenate([images for images, _ in batch])
                try:
                    probabilities = await loop.run_in_executor(
                        self._executor, self._predict_batch, images
                    )
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                ends = np.cumsum([len(images) for images, _ in batch])
                for rows, (_, future) in zip(
                    np.split(probabilities, ends[:-1]), batch, strict=True
                ):
                    if not future.done():
                        future.set_result(rows)
        finally:
            self._worker = None

    def close(self) -> None:
        """Stop the worker thread once the batch in progress (if any) is done."""
        self._executor.shutdown(wait=True)

"""How an uploaded image reaches the model: the image's bytes from a multipart or raw body,
and its decoding within the server's bounds on memory and threads (the decoding lanes).

Small uploads (the page's canvas PNGs are a few KB) are preprocessed on the event loop:
handing them to a thread cost more than their decoding in contention for the GIL. Large
ones go to a few threads, so that one photo does not stall the other connections, and
progressive JPEGs to a lane of their own. A request that finds its lane busy for
`DECODE_WAIT_S` gets 503 rather than waiting behind it.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
import numpy as np
from fastapi import Request
from fastapi.exceptions import HTTPException
from starlette.datastructures import State

from digitlab.errors import ImageTooLargeError
from digitlab.images import to_mnist
from digitlab.images.jpeg_scans import is_progressive

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

#: Uploads over `INLINE_MAX_BYTES` a process holds at once (`UploadSlotsMiddleware`):
#: with their bodies and decoding, a bound on its memory under any number of clients.
MAX_LARGE_UPLOADS = 8

#: Small images read at once by `/read`: the reading runs on threads (its model calls wait
#: for the batcher on the event loop), in a lane of its own so that no photo delays it.
SMALL_READ_THREADS = min(4, os.cpu_count() or 1)

#: Progressive JPEGs decoded at once: their cost grows with their scans, so they have a
#: lane of their own and wait only for each other.
PROGRESSIVE_DECODE_THREADS = 1

#: Seconds a request waits for its decoding lane before it gets 503.
DECODE_WAIT_S = 5.0

_Decoded = TypeVar("_Decoded")


def open_decode_lanes(state: State) -> None:
    """Give an app's `state` its decoding lanes (called once the event loop runs)."""
    state.small_read_limiter = anyio.CapacityLimiter(SMALL_READ_THREADS)
    state.decode_limiter = anyio.CapacityLimiter(DECODE_THREADS)
    state.progressive_decode_limiter = anyio.CapacityLimiter(PROGRESSIVE_DECODE_THREADS)


async def read_image_bytes(request: Request) -> tuple[bytes, str]:
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


async def preprocess(request: Request, data: bytes, name: str) -> np.ndarray:
    """`to_mnist` within this server's bounds on decoding memory (`in_decode_lane`)."""
    return await in_decode_lane(request, data, name, to_mnist, small_on_loop=True)


async def in_decode_lane(
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
    state = request.app.state
    if is_small(data):
        with contextlib.suppress(ImageTooLargeError):
            small = functools.partial(decode, name=name, max_memory_bytes=INLINE_MAX_IMAGE_MEMORY)
            if small_on_loop:
                return small(data)
            return await _on_thread(state.small_read_limiter, small, data)
    lane = state.progressive_decode_limiter if is_progressive(data) else state.decode_limiter
    large = functools.partial(decode, name=name, max_memory_bytes=MAX_IMAGE_MEMORY)
    return await _on_thread(lane, large, data)


def is_small(data: bytes) -> bool:
    """Whether an upload goes to the small images' lane: at most `INLINE_MAX_BYTES`, and no
    progressive JPEG (whose decoding cost grows with its scans, not its size). It is
    decoded there if it takes at most `INLINE_MAX_IMAGE_MEMORY`."""
    return len(data) <= INLINE_MAX_BYTES and not is_progressive(data)


async def _on_thread(
    lane: anyio.CapacityLimiter, decode: Callable[[bytes], _Decoded], data: bytes
) -> _Decoded:
    """`decode(data)` on a thread once `lane` has room; 503 after `DECODE_WAIT_S`."""
    return await wait_for_lane(lane, functools.partial(anyio.to_thread.run_sync, decode, data))


async def wait_for_lane(
    lane: anyio.CapacityLimiter, work: Callable[[], Awaitable[_Decoded]]
) -> _Decoded:
    """`await work()` once `lane` has room (requests wait in arrival order); 503 after
    `DECODE_WAIT_S`."""
    try:
        with anyio.fail_after(DECODE_WAIT_S):
            await lane.acquire()
    except TimeoutError:
        raise HTTPException(
            503, "the server is busy decoding other images; try again in a moment"
        ) from None
    try:
        return await work()
    finally:
        lane.release()

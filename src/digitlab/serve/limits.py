"""A request-body size limit that never reads an oversized body into memory."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(HTTPException):
    """The request body passed the limit while it was being received."""

    def __init__(self, max_body_bytes: int) -> None:
        super().__init__(413, _too_large_detail(max_body_bytes))


def _too_large_detail(max_body_bytes: int) -> str:
    return f"request body too large: the limit is {max_body_bytes:,} bytes"


class BodySizeLimitMiddleware:
    """Pure ASGI middleware answering 413 for HTTP bodies over `max_body_bytes`.

    A declared `Content-Length` over the limit is refused before a byte of the body is read.
    A body without one (chunked) is counted as it streams in, and the read that crosses the
    limit raises `BodyTooLargeError` (an `HTTPException`, so the app answers 413 JSON), which
    means at most one chunk past the limit is ever held.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            response = JSONResponse(
                {"detail": _too_large_detail(self.max_body_bytes)},
                status_code=413,
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return

        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError(self.max_body_bytes)
            return message

        await self.app(scope, counting_receive, send)


class UploadSlotsMiddleware:
    """Pure ASGI middleware bounding the large uploads a process holds at once.

    A request whose body may pass `small_body_bytes` (a declared `Content-Length` over it,
    or none: a chunked body) takes one of `max_uploads` slots until it is answered; with
    none free it gets 503 and `Retry-After` at once, before its body is read. Each upload
    in flight holds its body and its decoding, so this bounds a process's memory however
    many clients send at once. Small bodies (the page's drawings) never wait for a slot.
    """

    def __init__(self, app: ASGIApp, max_uploads: int, small_body_bytes: int) -> None:
        self.app = app
        self.max_uploads = max_uploads
        self.small_body_bytes = small_body_bytes
        # The event loop runs one coroutine at a time: a plain count is race-free.
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._may_be_large(scope):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_uploads:
            response = JSONResponse(
                {
                    "detail": f"the server is busy with {self.max_uploads} large uploads; "
                    "try again in a moment"
                },
                status_code=503,
                headers={"Retry-After": "1", "Connection": "close"},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _may_be_large(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit():
            return int(declared) > self.small_body_bytes
        return b"transfer-encoding" in headers

"""HEAD answered like GET, for every GET route (the page, /health, /docs, static files)."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HeadAsGetMiddleware:
    """Pure ASGI middleware routing HEAD requests to the GET handlers.

    FastAPI's routes answer only the methods they name, so HEAD / was 405. The app sees a
    GET; the server (uvicorn) still knows the request as HEAD and sends the headers,
    `Content-Length` included, without the body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)

"""uvicorn's httptools protocol with the bounds it lacks: header size and request time.

uvicorn reads a request's headers for as long as the client sends them, however large
(httptools has no limit, and uvicorn's `h11_max_incomplete_event_size` applies only to the
h11 parser), and waits for a request, its headers or its body for as long as the client
likes. `GuardedHttpToolsProtocol` answers 431 once a request's head passes
`ConnectionLimits.max_head_bytes`, and gives every request `request_timeout_s` from its
first byte (for a new connection, from the connection) to arrive whole: past that, a
request still in its head gets 408, one in its body has its connection closed (the app
sees a disconnect). The app's own work after the request has arrived is not timed here.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

#: The default bound on a request's line and headers together (64 KiB).
MAX_HEAD_BYTES = 64 * 1024

#: The default time a client has to send one whole request, headers and body.
REQUEST_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    """What one request may take from a connection before it arrives whole."""

    max_head_bytes: int = MAX_HEAD_BYTES
    request_timeout_s: float = REQUEST_TIMEOUT_S


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with a bound on head size and on the time to receive a request.

    uvicorn builds one per connection with `config`, `server_state` and `app_state`; pass
    `limits` through `functools.partial(GuardedHttpToolsProtocol, limits=...)` as the
    `http` option (a partial of this class pickles, so it reaches every worker process).
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: ConnectionLimits = ConnectionLimits(),
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self._reading_head = True
        self._head_bytes = 0
        self._request_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_request_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_request_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # A head still incomplete is refused once its bytes pass the limit, so that one
        # that never ends is never held; a complete one is measured in on_headers_complete.
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self.limits.max_head_bytes:
            self._refuse_large_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._request_deadline is None:
            self._arm_request_deadline()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        head_bytes = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if head_bytes > self.limits.max_head_bytes:
            self._refuse_large_head()
        if not self.transport.is_closing():
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self.transport.is_closing():
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_request_deadline()
        self._reading_head = True
        if not self.transport.is_closing():
            super().on_message_complete()

    def _arm_request_deadline(self) -> None:
        self._request_deadline = self.loop.call_later(
            self.limits.request_timeout_s, self._request_timed_out
        )

    def _cancel_request_deadline(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
            self._request_deadline = None

    def _request_timed_out(self) -> None:
        self._request_deadline = None
        if self.transport.is_closing():
            return
        if self._reading_head and self._head_bytes > 0:
            self._refuse(
                408,
                f"request not received in time: a request has "
                f"{self.limits.request_timeout_s:g} s to arrive whole",
            )
        else:
            self.transport.close()

    def _refuse_large_head(self) -> None:
        self._refuse(
            431, f"request headers too large: the limit is {self.limits.max_head_bytes:,} bytes"
        )

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` with a JSON `detail`, as the app's own errors are, and close."""
        if self.transport.is_closing():
            return
        body = json.dumps({"detail": detail}).encode()
        defaults = self.server_state.default_headers
        head = [STATUS_LINE[status]]
        head += [name + b": " + value + b"\r\n" for name, value in defaults]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()

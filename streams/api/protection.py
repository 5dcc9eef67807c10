"""What keeps one HTTP client from costing the process unbounded memory or time.

An ASGI middleware, so it acts before a route reads anything:

* a body larger than ``FACESTREAM_API_MAX_REQUEST_BYTES`` is 413: at once when
  its Content-Length says so, before a byte is read; and, for a body without
  one, as soon as the bytes read pass the limit;
* more than ``FACESTREAM_API_MAX_REQUESTS`` ``/v1`` requests at once: 503 with
  Retry-After;
* a ``/v1`` request running longer than ``FACESTREAM_API_TIMEOUT_S`` is
  cancelled (its waits for budget, models and Kafka with it) and answered 504.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..errors import ErrorCode
from .problems import OVERLOADED, TIMEOUT, Problem, response
from .routes import V1

#: Routes the limits on requests in flight and their time apply to.
GUARDED_PREFIX = f"{V1}/"


class BodyTooLarge(Exception):
    """Raised out of ``receive`` once a body without a Content-Length passes the limit."""


class Protection:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_bytes = settings.api_max_request_bytes
        self.max_requests = settings.api_max_requests
        self.timeout_s = settings.api_timeout_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await response(self._too_large(f"a body of {declared} bytes"))(scope, receive, send)
            return
        guarded = scope["path"].startswith(GUARDED_PREFIX)
        if guarded and self.in_flight >= self.max_requests:
            problem = Problem(OVERLOADED, f"{self.in_flight} requests in flight, the most this server takes")
            await response(problem)(scope, receive, send)
            return
        started = False
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        self.in_flight += guarded
        try:
            async with asyncio.timeout(self.timeout_s if guarded else None):
                await self.app(scope, counted_receive, watched_send)
        except BodyTooLarge:
            if not started:
                await response(self._too_large("the body"))(scope, receive, send)
        except TimeoutError:
            if not started:
                problem = Problem(TIMEOUT, f"the request took longer than {self.timeout_s:g} s")
                await response(problem)(scope, receive, send)
        finally:
            self.in_flight -= guarded

    def _too_large(self, what: str) -> Problem:
        return Problem(ErrorCode.PAYLOAD_TOO_LARGE, f"{what} exceeds the limit of {self.max_bytes} bytes")


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

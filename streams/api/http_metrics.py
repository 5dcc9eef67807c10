"""HTTP metrics of the API, in the worker's registry (:data:`streams.metrics.REGISTRY`), so ``/metrics`` serves both.

Requests are counted by route *template* (``/v1/galleries/{gallery_id}``), never
by raw path, so a client cannot create series; a path that matches no route
counts as ``other``.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import REGISTRY, STAGE_BUCKETS

UNMATCHED = "other"

REQUESTS_TOTAL = Counter(
    "facestream_http_requests_total",
    "HTTP requests answered by the API, by route template, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "facestream_http_request_seconds",
    "Wall time of one HTTP request, by route template.",
    ["route"],
    buckets=(*STAGE_BUCKETS, 30.0, 60.0),
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "facestream_http_requests_in_flight",
    "HTTP requests being served now.",
    registry=REGISTRY,
)
KNOWN_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


class HttpMetrics:
    """ASGI middleware observing every request, whatever answers it (a route, a refusal, an error page)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in KNOWN_METHODS else UNMATCHED
        status = 500
        started = time.perf_counter()

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, watched_send)
        finally:
            IN_FLIGHT.dec()
            route = route_of(scope)
            REQUEST_SECONDS.labels(route=route).observe(time.perf_counter() - started)
            REQUESTS_TOTAL.labels(route=route, method=method, status=str(status)).inc()


def route_of(scope: Scope) -> str:
    """The template of the route that answered (the router leaves it in the scope), else ``other``."""
    route = scope.get("route")
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED

"""The worker's operational HTTP pages, served by faust's own web server.

``/metrics`` is the Prometheus exposition of :mod:`streams.metrics`;
``/healthz`` answers while the process and its event loop run (a liveness
probe: restart me if this stops answering); ``/readyz`` answers 200 only when
every :class:`~streams.readiness.Readiness` check passes, else 503, with a JSON
body naming each check (a readiness probe: send me no work, page nobody yet).
"""

from __future__ import annotations

import time
from http import HTTPStatus

import faust
from faust.web import Request, Response, View

from streams import metrics
from streams.readiness import Readiness


def install_web(app: faust.App, readiness: Readiness) -> None:
    """Add ``/metrics``, ``/healthz`` and ``/readyz`` to ``app``'s web server."""
    started = time.monotonic()

    @app.page("/metrics")
    async def prometheus_metrics(self: View, request: Request) -> Response:
        await readiness.check_backend()  # facestream_backend_up as of this scrape, probed or not
        body, content_type = metrics.render()
        # As a header, not content_type=: aiohttp would drop the exposition's version parameter.
        return self.bytes(body, headers={"Content-Type": content_type})

    @app.page("/healthz")
    async def healthz(self: View, request: Request) -> Response:
        # Being able to run this coroutine is the proof that the event loop is alive.
        return self.json({"status": "ok", "uptime_s": round(time.monotonic() - started, 3)})

    @app.page("/readyz")
    async def readyz(self: View, request: Request) -> Response:
        checks = await readiness.check()
        ready = all(c.ok for c in checks)
        status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
        body = {"ready": ready, "checks": [c.as_dict() for c in checks]}
        return self.json(body, status=int(status))

"""``/healthz``, ``/readyz`` and ``/metrics``, as the worker serves them (:mod:`streams.web`)."""

from __future__ import annotations

import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ... import metrics
from ..openapi import OpenApiParts
from ..services import ApiServices


def router(services: ApiServices, parts: OpenApiParts) -> APIRouter:
    api = APIRouter()
    started = time.monotonic()
    check = {
        "type": "object",
        "required": ["name", "ok", "detail"],
        "properties": {"name": {"type": "string"}, "ok": {"type": "boolean"}, "detail": {"type": "string"}},
    }
    ready = {
        "type": "object",
        "required": ["ready", "checks"],
        "properties": {"ready": {"type": "boolean"}, "checks": {"type": "array", "items": check}},
    }
    health = {
        "type": "object",
        "required": ["status", "uptime_s"],
        "properties": {"status": {"type": "string"}, "uptime_s": {"type": "number"}},
    }

    @api.get("/healthz", summary="Liveness: the process and its event loop run", responses=parts.answer("Alive.", health))
    async def healthz() -> JSONResponse:
        return JSONResponse({"status": "ok", "uptime_s": round(time.monotonic() - started, 3)})

    @api.get(
        "/readyz",
        summary="Readiness: backend, re-ranker, registry and brokers",
        responses={**parts.answer("Ready.", ready), **parts.answer("Not ready; the failing checks say why.", ready, 503)},
    )
    async def readyz() -> JSONResponse:
        checks = await services.checks()
        ok = all(c.ok for c in checks)
        return JSONResponse({"ready": ok, "checks": [c.as_dict() for c in checks]}, status_code=200 if ok else 503)

    @api.get(
        "/metrics",
        summary="Prometheus metrics: the pipeline's and the HTTP requests'",
        responses={200: {"description": "Prometheus text exposition.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus_metrics() -> Response:
        await services.readiness.check_backend()  # facestream_backend_up as of this scrape
        body, content_type = metrics.render()
        return Response(body, headers={"Content-Type": content_type})

    return api

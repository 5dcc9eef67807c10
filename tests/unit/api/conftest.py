"""The API app in-process on the real ONNX pipeline, without a broker (gallery routes are integration tests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from streams.api.app import create_app
from streams.api.services import ApiServices
from streams.config import Settings
from streams.inference.onnx import OnnxBackend

#: No broker listens here: nothing a unit test calls may need one.
NO_BROKER = "127.0.0.1:9"


@contextlib.asynccontextmanager
async def api_client(max_model_batch: int | None = None, **overrides) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a started app (its lifespan run) with ``Settings`` ``overrides``.

    ``max_model_batch``: the ONNX backend's batch limit for every model (its own default keeps CPU memory low).
    """
    settings = Settings.from_env(None, kafka_bootstrap_servers=NO_BROKER, **overrides)
    backend = OnnxBackend(settings, max_batch_size=max_model_batch) if max_model_batch else None
    app = create_app(settings, ApiServices(settings, backend))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api", timeout=60) as client:
            yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api() -> AsyncIterator[httpx.AsyncClient]:
    # Model calls as large as the stream's batches, as Triton serves them: one detector call per batch of 16.
    async with api_client(max_model_batch=16, max_batch=16, max_wait_ms=50) as client:
        yield client

"""/metrics, /healthz and /readyz served by faust's real aiohttp web app, without a broker.

The backend and the consumer are small test doubles here (this is about the
pages and the verdicts); tests/integration/test_operations.py drives the same
pages with a real broker and a real Triton server.
"""

from __future__ import annotations

import sys
import types

import faust
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from streams.config import Settings
from streams.inference.backend import InferenceBackend, ModelInfo
from streams.kafka.lag import LagMonitor
from streams.progress import Progress
from streams.readiness import Readiness
from streams.web import install_web


class _Backend(InferenceBackend):
    kind = "onnx"

    def __init__(self, ready: bool | Exception) -> None:
        self.ready = ready

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def is_ready(self) -> bool:
        if isinstance(self.ready, Exception):
            raise self.ready
        return self.ready

    def model_info(self, model: str) -> ModelInfo:
        raise NotImplementedError

    async def infer(self, model: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


class _Consumer:
    def __init__(self, assigned: set) -> None:
        self.assigned = assigned

    def assignment(self) -> set:
        return self.assigned


@pytest.fixture
def rerank_module(monkeypatch):
    name = "tests_fake_rerank_module"
    monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    return name


def readiness_of(app: faust.App, **kwargs) -> Readiness:
    settings = Settings()
    lag = LagMonitor(app, settings, [settings.topic("images"), settings.topic("queries")])
    return Readiness(app, settings, lag, Progress(), **kwargs)


@pytest.fixture
async def served(rerank_module):
    app = faust.App("web-test", broker="kafka://127.0.0.1:1", web_enabled=True)
    readiness = readiness_of(app, rerank_module=rerank_module)
    install_web(app, readiness)
    client = TestClient(TestServer(app.web.web_app))
    await client.start_server()
    yield app, readiness, client
    await client.close()


async def test_healthz_answers_json(served):
    _, _, client = served
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok" and body["uptime_s"] >= 0


async def test_metrics_is_the_prometheus_exposition(served):
    _, _, client = served
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    names = {f.name for f in text_string_to_metric_families(await resp.text())}
    assert {"facestream_images", "facestream_consumer_lag", "process_cpu_seconds"} <= names


async def test_each_scrape_refreshes_backend_up(served):
    from streams import metrics

    _, readiness, client = served
    readiness.backend = _Backend(True)
    metrics.BACKEND_UP.labels(backend="onnx").set(0)
    assert 'facestream_backend_up{backend="onnx"} 1.0' in await (await client.get("/metrics")).text()
    readiness.backend.ready = False
    assert 'facestream_backend_up{backend="onnx"} 0.0' in await (await client.get("/metrics")).text()


async def test_readyz_names_every_failed_check(served):
    _, _, client = served
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    checks = {c["name"]: c for c in body["checks"]}
    assert body["ready"] is False
    assert checks["backend"] == {"name": "backend", "ok": False, "detail": "not started"}
    assert checks["reranker"]["ok"] is True
    assert checks["partitions"]["ok"] is False
    assert checks["broker"] == {"name": "broker", "ok": False, "detail": "lag monitor not started"}
    assert checks["progress"]["ok"] is True  # no backlog seen, nothing waits


async def test_readyz_is_200_when_every_check_passes(served):
    app, readiness, client = served
    readiness.backend = _Backend(True)
    app.consumer = _Consumer({("face.images", 0)})
    readiness.lag.observed({("face.images", 0): 0})  # the broker answered: nothing waits
    resp = await client.get("/readyz")
    assert resp.status == 200
    checks = (await resp.json())["checks"]
    assert [c["name"] for c in checks] == ["backend", "reranker", "registry", "partitions", "broker", "progress"]
    assert all(c["ok"] for c in checks)


async def test_backend_failure_is_a_503_with_its_reason_and_backend_up_zero(served):
    from streams import metrics

    app, readiness, client = served
    readiness.backend = _Backend(ConnectionRefusedError("connect failed"))
    app.consumer = _Consumer({("face.images", 0)})
    readiness.lag.observed({})
    resp = await client.get("/readyz")
    assert resp.status == 503
    backend = next(c for c in (await resp.json())["checks"] if c["name"] == "backend")
    assert backend["detail"] == "onnx: ConnectionRefusedError: connect failed"
    assert metrics.BACKEND_UP.labels(backend="onnx")._value.get() == 0

    readiness.backend.ready = True
    assert (await client.get("/readyz")).status == 200
    assert metrics.BACKEND_UP.labels(backend="onnx")._value.get() == 1


async def test_missing_reranker_module_fails_its_check():
    app = faust.App("web-test-2", broker="kafka://127.0.0.1:1")
    check = readiness_of(app, rerank_module="streams.no_such_module").check_reranker()
    assert check.ok is False and "streams.no_such_module" in check.detail


def test_the_web_server_binds_loopback_unless_told_otherwise():
    from streams.app import create_app

    app = create_app(Settings())
    assert app.conf.web_bind == "127.0.0.1"
    assert (app.conf.web_router_enabled, app.conf.web_tables_enabled) == (False, False)

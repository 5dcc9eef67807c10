"""Request limits, API keys, the OpenAPI document and /docs, in-process."""

from __future__ import annotations

import asyncio
import base64

import pytest

from streams.api.keys import HEADER
from tests.unit.api.conftest import api_client

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_a_declared_oversized_body_is_refused_before_it_is_read():
    async with api_client(api_max_request_bytes=1000) as api:
        reply = await api.post("/v1/embeddings", content=b"x" * 5000, headers={"content-type": "application/json"})
        assert reply.status_code == 413 and reply.json()["code"] == "PAYLOAD_TOO_LARGE"

        async def chunks():  # no Content-Length: counted as it is read
            for _ in range(10):
                yield b"x" * 500

        streamed = await api.post("/v1/embeddings", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert (await api.get("/healthz")).status_code == 200


async def test_a_full_queue_is_503_with_retry_after(photo_bytes):
    image = base64.b64encode(photo_bytes["obama.jpg"]).decode()
    async with api_client(api_max_queued_images=2) as api:
        reply = await api.post("/v1/embeddings", json={"images": [image] * 3})
        assert reply.status_code == 503 and reply.json()["code"] == "OVERLOADED"
        assert reply.headers["retry-after"] == "1"
        assert (await api.post("/v1/embeddings", json={"images": [image] * 2})).status_code == 200


async def test_too_many_requests_in_flight_are_503_and_a_slow_one_is_504(photo_bytes):
    image = base64.b64encode(photo_bytes["obama.jpg"]).decode()
    large = base64.b64encode(photo_bytes["obama3.jpg"]).decode()  # 2333 x 1434: tens of ms to decode alone
    async with api_client(api_max_requests=1, api_timeout_s=0.05, max_wait_ms=1000) as api:
        # Eight large photos take longer than the 50 ms a request may take, however fast the models are.
        slow, refused = await asyncio.gather(
            api.post("/v1/embeddings", json={"images": [large] * 8}),
            _later(api.post("/v1/embeddings", json={"images": [image]})),
        )
        assert slow.status_code == 504 and slow.json()["code"] == "TIMEOUT"
        assert refused.status_code == 503 and "retry-after" in refused.headers
        assert (await api.get("/healthz")).status_code == 200  # not a /v1 route: neither limit applies


async def _later(request):
    await asyncio.sleep(0.01)
    return await request


async def test_api_keys_guard_every_v1_route_and_nothing_else():
    async with api_client(api_keys="k-one, k-two") as api:
        body = {"embedding": [1.0], "candidates": [{"id": "a", "embedding": [1.0]}]}
        missing = await api.post("/v1/rerank", json=body)
        assert missing.status_code == 401 and missing.json()["code"] == "UNAUTHORIZED"
        wrong = await api.post("/v1/rerank", json=body, headers={HEADER: "k-three"})
        assert wrong.status_code == 401 and "k-three" not in wrong.text
        assert (await api.post("/v1/rerank", json=body, headers={HEADER: "k-two"})).status_code == 200
        assert (await api.get("/v1/galleries/g", headers={HEADER: ""})).status_code == 401
        assert (await api.get("/healthz")).status_code == 200
        assert (await api.get("/openapi.json")).status_code == 200


async def test_openapi_describes_every_route_with_bodies_and_errors(api):
    document = (await api.get("/openapi.json")).json()
    paths = document["paths"]
    assert {
        "/v1/embeddings", "/v1/rerank", "/v1/search", "/v1/galleries/{gallery_id}",
        "/v1/galleries/{gallery_id}/subjects", "/v1/galleries/{gallery_id}/subjects/{subject_id}",
        "/healthz", "/readyz", "/metrics",
    } <= set(paths)
    for path, operations in paths.items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert any(s.startswith("2") for s in answers), (method, path)
            if path.startswith("/v1"):
                assert "422" in answers and answers["422"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Problem"
                }
            if method == "post":
                assert "application/json" in operation["requestBody"]["content"], path
    assert "multipart/form-data" in paths["/v1/embeddings"]["post"]["requestBody"]["content"]
    face = document["components"]["schemas"]["ImageEmbeddings"]["anyOf"][0]["properties"]["faces"]["items"]
    assert {"bbox", "score", "landmarks", "embedding", "aligned_jpeg"} <= set(face["properties"])


async def test_docs_are_served_from_this_process(api):
    page = await api.get("/docs")
    assert page.status_code == 200
    assets = [part.split('"')[0] for part in page.text.split('src="')[1:] + page.text.split('href="')[1:]]
    assert assets and all(a.startswith("/docs/assets/") for a in assets), assets
    for asset in assets:
        assert (await api.get(asset)).status_code == 200, asset
    assert "http://" not in page.text and "https://" not in page.text


async def test_metrics_count_requests_by_route_template(api):
    await api.get("/healthz")
    await api.get("/no/such/page-whatever")
    text = (await api.get("/metrics")).text
    assert 'facestream_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'facestream_http_requests_total{method="GET",route="other",status="404"}' in text
    assert 'facestream_http_request_seconds_count{route="/healthz"}' in text
    assert "whatever" not in text  # raw paths never become series
    assert "facestream_http_requests_in_flight" in text


async def test_a_backend_that_cannot_serve_is_503_and_the_server_stays_up(photo_bytes):
    image = base64.b64encode(photo_bytes["obama.jpg"]).decode()
    async with api_client(backend="triton", triton_url="127.0.0.1:9", triton_timeout_s=1.0, backend_retries=0) as api:
        reply = await api.post("/v1/embeddings", json={"images": [image]})
        assert reply.status_code == 503 and reply.json()["code"] == "BACKEND_ERROR", reply.text
        assert "retry-after" in reply.headers
        refused = await api.post("/v1/embeddings", json={"images": ["%%%"]})  # no image reaches the models
        assert refused.status_code == 503 and refused.json()["code"] == "BACKEND_ERROR"
        ready = await api.get("/readyz")
        assert ready.status_code == 503
        assert not next(c for c in ready.json()["checks"] if c["name"] == "backend")["ok"]
        assert (await api.get("/healthz")).status_code == 200

"""POST /v1/rerank with inline candidates, in-process: the rerank agent's answer, equal to streams.rerank."""

from __future__ import annotations

import numpy as np
import pytest

from streams import rerank

pytestmark = pytest.mark.asyncio(loop_scope="module")


def unit_rows(count: int, dim: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("method", ["cosine", "query_expansion", "k_reciprocal"])
async def test_inline_ranking_equals_the_reranker(api, method):
    gallery, (query,) = unit_rows(60, 32, 1), unit_rows(1, 32, 2)
    body = {
        "embedding": query.tolist(),
        "candidates": [{"id": f"c{i}", "embedding": row.tolist()} for i, row in enumerate(gallery)],
        "top_k": 5,
        "method": method,
    }
    reply = await api.post("/v1/rerank", json=body)
    assert reply.status_code == 200, reply.text
    result = reply.json()
    if method == "cosine":
        rows, scores = (a[0] for a in rerank.cosine_topk(query[None], gallery, 5))
    elif method == "query_expansion":
        rows, scores = (a[0] for a in rerank.query_expansion(query[None], gallery, 5))
    else:
        distances = rerank.k_reciprocal(query[None], gallery)[0]
        rows = np.argsort(distances, kind="stable")[:5]
        scores = 1.0 - distances[rows]
    assert [m["id"] for m in result["matches"]] == [f"c{r}" for r in rows]
    assert np.allclose([m["score"] for m in result["matches"]], scores, atol=1e-6)
    assert [m["rank"] for m in result["matches"]] == [1, 2, 3, 4, 5]
    assert result["gallery_size"] == 60 and result["method"] == method
    assert "source" not in result


async def test_bad_queries_are_the_workers_refusals(api):
    one = {"id": "a", "embedding": [1.0, 0.0]}
    cases = {
        "mixed dimensions": ({"embedding": [1.0, 0.0], "candidates": [one, {"id": "b", "embedding": [1.0]}]}, "DIMENSION_MISMATCH"),
        "zero query": ({"embedding": [0.0, 0.0], "candidates": [one]}, "BAD_QUERY"),
        "unknown param": ({"embedding": [1.0, 0.0], "candidates": [one], "params": {"k9": 1}}, "BAD_QUERY"),
        "both sources": ({"embedding": [1.0, 0.0], "candidates": [one], "gallery_id": "g"}, "INVALID_REQUEST"),
        "huge value": ({"embedding": [1e39, 0.0], "candidates": [one]}, "INVALID_REQUEST"),
    }
    for name, (body, code) in cases.items():
        reply = await api.post("/v1/rerank", json=body)
        assert reply.status_code == 422 and reply.json()["code"] == code, (name, reply.text)

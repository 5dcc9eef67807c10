"""The query ranker of the rerank agent, without a broker: what a query event is answered with, and how."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest

from streams import rerank
from streams.agents.rerank import QueryRanker
from streams.config import Settings
from streams.context import WorkerContext
from streams.gallery import Galleries


def query_event(ctx, method: str) -> SimpleNamespace:
    """A ``RerankQuery`` for gallery ``g`` as the agent's stream hands it over."""
    record = {
        "query_id": "q1", "gallery_id": "g", "candidates": None, "embedding": [0.6, 0.0, 0.8], "top_k": 2,
        "threshold": None, "method": method, "params": {}, "produced_at": 0,
    }
    value = ctx.codec.encode("RerankQuery", record, topic=ctx.topics.queries)
    message = SimpleNamespace(key=b"g", value=value, topic=ctx.topics.queries, partition=0, offset=7)
    return SimpleNamespace(message=message)


@pytest.mark.parametrize("method", ["cosine", "k_reciprocal", "query_expansion"])
async def test_queries_run_on_the_threads_of_the_settings_the_app_was_made_with(method, monkeypatch, tmp_path):
    """A worker made from Settings(rerank_threads=N) ranks with N threads, whatever FACESTREAM_RERANK_THREADS says."""
    monkeypatch.setenv("FACESTREAM_RERANK_THREADS", "7")
    ctx = WorkerContext.from_settings(Settings(rerank_threads=3, data_dir=str(tmp_path)))
    seen = []
    real = getattr(rerank, {"cosine": "cosine_topk"}.get(method, method))
    monkeypatch.setattr(rerank, real.__name__, lambda *a, **kw: seen.append(kw["threads"]) or real(*a, **kw))
    galleries = Galleries()
    for subject, row in {"a": [1.0, 0.0, 0.0], "b": [0.8, 0.0, 0.6], "c": [0.0, 0.0, 1.0]}.items():
        galleries.upsert("g", subject, np.array(row, dtype=np.float32))
    result = await QueryRanker(ctx, galleries, asyncio.Lock()).answer(query_event(ctx, method))
    assert seen == [3]
    assert [m["id"] for m in result["matches"]][0] == "b"

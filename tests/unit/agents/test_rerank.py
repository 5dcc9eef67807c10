"""The query ranker of the rerank agent, without a broker: what a query event is answered with, and how."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from streams import rerank
from streams.agents.rerank import QueryRanker
from streams.config import Settings
from streams.context import WorkerContext
from streams.errors import RecordError
from streams.gallery import Galleries
from streams.neighbour_graph import NeighbourGraph


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
    # k-reciprocal over a held gallery goes through the gallery's neighbour graph
    owner, name = {"cosine": (rerank, "cosine_topk"), "k_reciprocal": (NeighbourGraph, "k_reciprocal")}.get(
        method, (rerank, method)
    )
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *a, **kw: seen.append(kw["threads"]) or real(*a, **kw))
    galleries = Galleries()
    for subject, row in {"a": [1.0, 0.0, 0.0], "b": [0.8, 0.0, 0.6], "c": [0.0, 0.0, 1.0]}.items():
        galleries.upsert("g", subject, np.array(row, dtype=np.float32))
    result = await QueryRanker(ctx, galleries, asyncio.Lock()).answer(query_event(ctx, method))
    assert seen == [3]
    assert [m["id"] for m in result["matches"]][0] == "b"


SFACE_MODEL = {"detector": "yunet-2023mar", "embedder": "sface-2021dec", "dim": 3, "version": "1"}


def templates() -> Galleries:
    """Subject x with two templates, y with one, in a gallery of the SFace model."""
    galleries = Galleries()
    rows = [("x", "1", [1.0, 0.0, 0.0]), ("x", "2", [0.8, 0.0, 0.6]), ("y", "", [0.0, 0.0, 1.0])]
    for subject, template, row in rows:
        galleries.upsert("g", subject, np.array(row, dtype=np.float32), template, model=SFACE_MODEL)
    return galleries


def query(ctx, **fields) -> SimpleNamespace:
    event = query_event(ctx, "cosine")
    record = {**ctx.codec.decode(event.message.value, expect="RerankQuery"), "top_k": 5, **fields}
    event.message.value = ctx.codec.encode("RerankQuery", record, topic=ctx.topics.queries)
    return event


async def test_a_result_ranks_subjects_and_decides(tmp_path):
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path)))
    result = await QueryRanker(ctx, templates(), asyncio.Lock()).answer(query(ctx, model=SFACE_MODEL))
    assert [m["id"] for m in result["matches"]] == ["x", "y"] and result["gallery_size"] == 3
    assert result["matches"][0]["similarity"] == pytest.approx(0.96)  # x's best template, not its first
    assert (result["decision"], result["subject_id"]) == ("MATCH", "x")  # y scores 0.8, 0.16 behind
    assert result["margin"] == pytest.approx(0.16) and result["match_threshold"] == pytest.approx(0.363)
    wide = WorkerContext.from_settings(Settings(data_dir=str(tmp_path), ambiguity_margin=0.2))
    assert (await QueryRanker(wide, templates(), asyncio.Lock()).answer(query(wide)))["decision"] == "AMBIGUOUS"
    strict = await QueryRanker(ctx, templates(), asyncio.Lock()).answer(query(ctx, match_threshold=0.97))
    assert (strict["decision"], strict["match_threshold"]) == ("UNKNOWN", pytest.approx(0.97))


@pytest.mark.parametrize(
    ("fields", "code"),
    [({"model": {**SFACE_MODEL, "version": "2"}}, "MODEL_MISMATCH"), ({"quality": 0.1}, "LOW_QUALITY")],
)
async def test_queries_of_another_model_or_too_poor_a_face_are_refused(fields, code, tmp_path):
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path)))
    with pytest.raises(RecordError) as refused:
        await QueryRanker(ctx, templates(), asyncio.Lock()).answer(query(ctx, **fields))
    assert refused.value.code.value == code


@pytest.mark.parametrize("fields", [{"quality": float("nan")}, {"quality": 1.5}, {"match_threshold": float("inf")}])
async def test_numbers_out_of_their_range_are_bad_queries(fields, tmp_path):
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path)))
    with pytest.raises(RecordError) as refused:
        await QueryRanker(ctx, templates(), asyncio.Lock()).answer(query(ctx, **fields))
    assert refused.value.code.value == "BAD_QUERY"


def three_subjects() -> Galleries:
    galleries = Galleries()
    for subject, row in {"a": [1.0, 0.0, 0.0], "b": [0.8, 0.0, 0.6], "c": [0.0, 0.0, 1.0]}.items():
        galleries.upsert("g", subject, np.array(row, dtype=np.float32))
    return galleries


async def test_a_k_reciprocal_query_waits_for_the_graph_without_holding_the_lock(monkeypatch, tmp_path):
    """While the gallery's neighbour graph builds, entries go on; the query is then ranked over the gallery
    as it is by then, exactly as the dense reference ranks it."""
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path)))
    release, real_build = threading.Event(), NeighbourGraph._build
    monkeypatch.setattr(NeighbourGraph, "_build", lambda *a: release.wait(10) and real_build(*a))
    galleries, lock = three_subjects(), asyncio.Lock()
    answering = asyncio.create_task(QueryRanker(ctx, galleries, lock).answer(query_event(ctx, "k_reciprocal")))
    await asyncio.sleep(0.1)
    assert not answering.done() and galleries.get("g").neighbour_graph.kept
    await asyncio.wait_for(lock.acquire(), timeout=1)  # the waiting query does not hold it
    galleries.upsert("g", "d", np.array([0.6, 0.0, 0.8], dtype=np.float32))  # journaled onto the building graph
    lock.release()
    release.set()
    result = await asyncio.wait_for(answering, timeout=10)
    assert result["gallery_size"] == 4 and galleries.get("g").neighbour_graph.built
    gallery = galleries.get("g")
    dense = rerank.k_reciprocal(np.array([[0.6, 0.0, 0.8]], dtype=np.float32), gallery.matrix)[0]
    expected = [gallery.ids[row] for row in np.argsort(dense, kind="stable")[:2]]
    assert [m["id"] for m in result["matches"]] == expected
    assert [m["score"] for m in result["matches"]] == pytest.approx(1.0 - np.sort(dense)[:2], abs=1e-5)


async def test_a_k_reciprocal_query_to_a_gallery_too_large_for_a_graph_is_a_bad_query(tmp_path):
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path), rerank_graph_max_rows=2))
    galleries = three_subjects()
    with pytest.raises(RecordError) as refused:
        await QueryRanker(ctx, galleries, asyncio.Lock()).answer(query_event(ctx, "k_reciprocal"))
    assert refused.value.code.value == "BAD_QUERY" and "FACESTREAM_RERANK_GRAPH_MAX_ROWS" in str(refused.value)
    assert not galleries.get("g").neighbour_graph.kept  # nothing started
    ranked = await QueryRanker(ctx, galleries, asyncio.Lock()).answer(query_event(ctx, "cosine"))
    assert ranked["gallery_size"] == 3  # other methods are not bounded by it

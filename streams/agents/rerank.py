"""The rerank agents: ``GalleryEntry``s keep the galleries, ``RerankQuery``s are ranked against them.

The galleries are kept by :class:`~streams.agents.gallery_keeper.GalleryKeeper`: one contiguous matrix per
gallery, changed as entries arrive and rebuilt from a changelog-backed table after a (re)assignment. Queries read
only the matrices, under the lock the keeper changes them under.

Gallery entries and queries are keyed by gallery id with the same partition
count, so a query is read by the worker that holds its gallery, and the table
writes each key to the changelog partition of the entry that set it.

Every query gets one ``RerankResult`` (keyed by query id) or one
``DeadLetter``: UNKNOWN_GALLERY, DIMENSION_MISMATCH, MODEL_MISMATCH, LOW_QUALITY,
BAD_QUERY, or BAD_EVENT for bytes that are not a query. A result ranks
subjects, not templates, and carries the open-set decision
(:mod:`streams.identity`); entries below the enrolment quality gate or of
another model than their gallery's are dead-lettered too. Outputs of a batch are acknowledged by Kafka before
the batch's offsets can be committed. What a record may ask for is bounded
before it is paid for: id lengths, embedding dimension, inline candidates, and
the re-ranking work of one query; a large query is parsed off the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from functools import partial
from pathlib import Path
from typing import Any

import faust
import numpy as np
from faust.types import EventT

from .. import metrics
from ..bounds import check_embedding, check_id, check_key
from ..context import WorkerContext
from ..errors import ErrorCode, RecordError, TooManyItems
from ..gallery import Galleries, Gallery, ModelMismatch
from ..identity import decide, match_threshold
from ..ranking import METHODS, Candidates, Method, rank_subjects_off_loop
from ..vectors import unit_rows, unit_vector
from .dead_letter import now_ms
from .gallery_keeper import GalleryKeeper
from .output import Output
from .outputs import Outputs
from .records import check_quality_fields, parse

INDEX_DIR = "gallery-index"  # under FACESTREAM_DATA_DIR: the galleries' saved approximate indexes


class QueryRanker:
    """Answers one ``RerankQuery``: join with its gallery (or inline candidates), rank, build the result."""

    def __init__(self, ctx: WorkerContext, galleries: Galleries, lock: asyncio.Lock) -> None:
        self.ctx = ctx
        self.galleries = galleries
        self.lock = lock

    async def answer(self, event: EventT) -> dict[str, Any]:
        """The ``RerankResult`` record of one query event; a :class:`RecordError` says why there is none."""
        message = event.message
        settings = self.ctx.settings
        check_key(message.key, settings.max_id_bytes)
        try:
            record = await parse(self.ctx, message.value, "RerankQuery")
        except TooManyItems as exc:  # a million inline candidates: a bad query, refused before decoding
            raise RecordError(ErrorCode.BAD_QUERY, exc.message) from None
        check_id(record["query_id"], "query id", settings.max_id_bytes)
        check_id(record["gallery_id"], "gallery id", settings.max_id_bytes)
        check_embedding(record["embedding"], "the query embedding")
        gate = settings.match_min_quality
        check_quality_fields(record, ErrorCode.BAD_QUERY, "query face quality", gate, "FACESTREAM_MATCH_MIN_QUALITY")
        method = METHODS[record["method"]]
        try:
            arguments = method.arguments(record["params"])
            query = unit_vector(record["embedding"], "the query embedding")
        except ValueError as exc:
            raise RecordError(ErrorCode.BAD_QUERY, str(exc)) from None
        if record["top_k"] < 1:
            raise RecordError(ErrorCode.BAD_QUERY, f"top_k must be at least 1, got {record['top_k']}")

        while True:
            async with self.lock:  # the matrix must not change while the re-ranker reads it
                joined = time.perf_counter()
                candidates, gallery = await self._joined(record, message.key, method, arguments, query)
                building = self._graph_build(method, candidates, arguments)
                if building is None:
                    computed = time.perf_counter()
                    try:
                        ranked = await rank_subjects_off_loop(
                            method, query, candidates, record["top_k"], arguments, settings.rerank_threads
                        )
                    except ValueError as exc:
                        raise RecordError(ErrorCode.BAD_QUERY, f"{record['method']}: {exc}") from None
                    done = time.perf_counter()
                    threshold = match_threshold(
                        record["match_threshold"],
                        gallery.threshold if gallery is not None else None,
                        record["model"] or (gallery.model if gallery is not None else None),
                    )
                    break
            # Its gallery's neighbour graph is being built (O(G^2 d), in the background): waited for without the
            # lock, so that entries and other queries go on; then joined again, as the gallery may have changed.
            try:
                await asyncio.wrap_future(building)
            except ValueError as exc:
                raise RecordError(ErrorCode.BAD_QUERY, f"{record['method']}: {exc}") from None
        verdict = decide(ranked.leaders, threshold, settings.ambiguity_margin)
        matches = [
            {"id": subject, "score": score, "similarity": similarity}
            for subject, score, similarity in ranked.matches
            if record["threshold"] is None or score >= record["threshold"]
        ]
        metrics.RERANK_SECONDS.labels(method=record["method"]).observe(done - computed)
        return {
            "query_id": record["query_id"],
            "gallery_id": record["gallery_id"],
            "matches": [{**m, "rank": rank} for rank, m in enumerate(matches, start=1)],
            "method": record["method"],
            "gallery_size": len(candidates.ids),
            "join_us": round((computed - joined) * 1e6),
            "compute_us": round((done - computed) * 1e6),
            "source": {"topic": message.topic, "partition": message.partition, "offset": message.offset},
            "processed_at": now_ms(),
            **verdict.record(),
        }

    async def _joined(
        self, record: dict[str, Any], key: bytes | None, method: Method, arguments: dict[str, Any], query: np.ndarray
    ) -> tuple[Candidates, Gallery | None]:
        """What the query is ranked against, checked against it: dimension, model, and the work it asks for."""
        candidates, gallery = await self._candidates(record, key)
        rows, dim = candidates.rows.shape
        if dim != query.shape[0]:
            raise RecordError(
                ErrorCode.DIMENSION_MISMATCH, f"query of dimension {query.shape[0]}, candidates of dimension {dim}"
            )
        if gallery is not None:
            try:
                gallery.check_model(record["model"])
            except ModelMismatch as exc:
                raise RecordError(ErrorCode.MODEL_MISMATCH, f"gallery {record['gallery_id']!r}: {exc}") from None
        work = method.cost(candidates, arguments)
        if work > self.ctx.settings.max_query_work:
            raise RecordError(
                ErrorCode.BAD_QUERY,
                f"{record['method']} over {rows} candidates would take about {work:.3g} multiply-adds, "
                f"over the limit of {self.ctx.settings.max_query_work:.3g}",
            )
        return candidates, gallery

    def _graph_build(
        self, method: Method, candidates: Candidates, arguments: dict[str, Any]
    ) -> concurrent.futures.Future[None] | None:
        """The build of the held gallery's neighbour graph this query must wait for, started if need be; None
        when the query can be ranked now. A gallery too large to build one for is a bad query."""
        if not method.builds_graph(candidates, arguments):
            return None
        settings, gallery = self.ctx.settings, candidates.gallery
        if len(gallery) > settings.rerank_graph_max_rows:
            raise RecordError(
                ErrorCode.BAD_QUERY,
                f"k_reciprocal over {len(gallery)} rows would first build the gallery's neighbour graph, "
                f"O(rows^2 x dim): over FACESTREAM_RERANK_GRAPH_MAX_ROWS {settings.rerank_graph_max_rows}",
            )
        return gallery.neighbour_graph.start_build(gallery.matrix, candidates.graph_k1, threads=settings.rerank_threads)

    async def _candidates(self, record: dict[str, Any], key: bytes | None) -> tuple[Candidates, Gallery | None]:
        """What to rank and the gallery it is (None for inline candidates): the stored matrix is not copied."""
        candidates = record["candidates"]
        if candidates is not None:
            inline = await asyncio.get_running_loop().run_in_executor(None, self._inline, candidates)
            return inline, None
        gallery_id = record["gallery_id"]
        if key != gallery_id.encode():
            # Keyed otherwise, the query may sit on another partition than its gallery.
            raise RecordError(ErrorCode.BAD_QUERY, f"record key {key!r} is not the gallery id {gallery_id!r}")
        gallery = self.galleries.get(gallery_id)
        if gallery is None:
            raise RecordError(ErrorCode.UNKNOWN_GALLERY, f"no gallery {gallery_id!r} on this worker's partitions")
        return Candidates.held(gallery, graph_k1=self.ctx.settings.rerank_graph_k1), gallery

    def _inline(self, candidates: list[dict[str, Any]]) -> Candidates:
        """Inline candidates as unit rows, bounded in id length and dimension (runs in a thread).

        Their number is bounded by the codec's ``max_items`` before they are decoded.
        """
        settings = self.ctx.settings
        if not candidates:
            raise RecordError(ErrorCode.BAD_QUERY, "candidates is an empty list")
        for candidate in candidates:
            check_id(candidate["id"], "candidate id", settings.max_id_bytes)
            check_embedding(candidate["embedding"], f"candidate {candidate['id']!r}")
        if len({len(c["embedding"]) for c in candidates}) != 1:
            raise RecordError(ErrorCode.DIMENSION_MISMATCH, "inline candidates have different dimensions")
        try:
            matrix = unit_rows(np.array([c["embedding"] for c in candidates], dtype=np.float64), "a candidate")
        except ValueError as exc:
            raise RecordError(ErrorCode.BAD_QUERY, str(exc)) from None
        return Candidates.inline([c["id"] for c in candidates], matrix)


# --- wiring ----------------------------------------------------------------


def register_rerank_agents(app: faust.App, ctx: WorkerContext) -> None:
    """Declare the gallery table and the ``gallery`` and ``rerank`` agents on ``app``."""
    topics = ctx.topics
    settings = ctx.settings
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    gallery_topic, queries_topic = app.topic(topics.gallery, **raw), app.topic(topics.queries, **raw)
    gallery_outputs = Outputs(app, ctx, gallery_topic, [topics.dlq])
    query_outputs = Outputs(app, ctx, queries_topic, [topics.rerank_results, topics.dlq])
    galleries = Galleries(
        settings.gallery_dtype, index_min=settings.gallery_index_min, index_ef=settings.gallery_index_ef,
        index_dir=Path(settings.data_dir) / INDEX_DIR,
    )
    lock = asyncio.Lock()
    keeper = GalleryKeeper(app, ctx, galleries, lock)
    ranker = QueryRanker(ctx, galleries, lock)

    async def result(event: EventT) -> Output:
        record = await ranker.answer(event)
        value = ctx.codec.encode("RerankResult", record, topic=topics.rerank_results)
        return Output(topics.rerank_results, record["query_id"].encode(), value)

    async def gallery(stream: faust.StreamT) -> None:
        # Entries in batches, like queries: one commit (one transaction, under exactly-once) per batch, not per entry.
        async for events in stream.take_events(settings.gallery_batch, within=settings.max_wait_ms / 1000.0):
            async with gallery_outputs.batch(events):
                # An applied entry's output is its changelog record: only a refusal is sent.
                refusals = zip(events, await keeper.apply(events), strict=True)
                await asyncio.gather(*[await gallery_outputs.refuse(e, why) for e, why in refusals if why is not None])
                # Every changelog record acknowledged before the batch commits, or under exactly-once a stop can
                # lose them while their entries' offsets are committed (seen: 97 of 100,000 entries gone after a
                # restart, when they waited in faust's send buffer).
                await keeper.settled()

    async def rerank_queries(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.max_batch, within=settings.max_wait_ms / 1000.0):
            async with query_outputs.batch(events):
                # Offsets are committed only for acknowledged events: wait for Kafka to take every output first.
                await asyncio.gather(*[await query_outputs.answer(e, partial(result, e)) for e in events])

    @app.on_before_shutdown.connect
    async def save_galleries(sender: faust.App, **_: Any) -> None:
        async with lock:
            await asyncio.to_thread(keeper.save)

    app.agent(gallery_topic, name="gallery")(gallery)
    app.agent(queries_topic, name="rerank")(rerank_queries)

"""The rerank agents: ``GalleryEntry``s keep the galleries, ``RerankQuery``s are ranked against them.

Durability and speed are kept apart. The changelog-backed faust table
``gallery`` holds one key per (gallery, subject) whose value is the entry's
original Avro bytes: an upsert writes one small record to the changelog, not
the whole gallery, and a delete writes a tombstone, so compaction keeps exactly
the live subjects. The query path never reads the table: it reads
:class:`~streams.gallery.Galleries`, one contiguous float32 matrix per gallery,
changed row by row as entries arrive and rebuilt from the table only when
faust has finished recovering it (start-up, rebalance).

Gallery entries and queries are keyed by gallery id with the same partition
count, so a query is read by the worker that holds its gallery, and the table
writes each key to the changelog partition of the entry that set it.

Every query gets one ``RerankResult`` (keyed by query id) or one
``DeadLetter``: UNKNOWN_GALLERY, DIMENSION_MISMATCH, BAD_QUERY, or BAD_EVENT for
bytes that are not a query. Outputs of a batch are acknowledged by Kafka before
the batch's offsets can be committed. What a record may ask for is bounded
before it is paid for: id lengths, embedding dimension, inline candidates, and
the re-ranking work of one query; a large query is parsed off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import faust
import numpy as np
from faust.types import EventT

from .. import metrics
from ..bounds import check_embedding, check_id, check_key
from ..context import WorkerContext
from ..errors import ErrorCode, RecordError, TooManyItems
from ..gallery import DimensionMismatch, Galleries
from ..ranking import METHODS
from ..vectors import unit_rows, unit_vector
from .dead_letter import now_ms
from .gallery_sizes import GallerySizes
from .output import Output
from .outputs import Outputs

log = logging.getLogger(__name__)

TABLE_NAME = "gallery"
# A record this large takes milliseconds to parse: done in a thread so the event loop keeps serving.
INLINE_MAX_PARSE_BYTES = 64 * 1024


def table_key(gallery_id: str, subject_id: str) -> bytes:
    """Changelog key of one subject: a JSON pair, unambiguous whatever characters the ids hold."""
    return json.dumps([gallery_id, subject_id], ensure_ascii=False).encode()


def gallery_of(key: bytes) -> str:
    """The gallery id of a changelog key."""
    return json.loads(key)[0]


# --- the two agents' work --------------------------------------------------


class GalleryKeeper:
    """Applies ``GalleryEntry`` records to its changelog table and to the matrices, and rebuilds these after recovery.

    It remembers the partition of every gallery it has seen (live or in the
    changelog) because faust's memory store forgets, on a rebalance, only the
    keys it recovered itself: galleries written live on a partition that moved
    to another worker must be dropped here, or this worker would keep serving
    and reporting a stale copy.
    """

    def __init__(self, app: faust.App, ctx: WorkerContext, galleries: Galleries, lock: asyncio.Lock) -> None:
        self.app = app
        self.ctx = ctx
        self.galleries = galleries
        self.lock = lock
        self.sizes = GallerySizes(ctx.settings.max_gallery_labels)
        self.partition_of: dict[str, int] = {}
        self.table = app.Table(
            TABLE_NAME,
            default=None,
            partitions=ctx.settings.topic_partitions,
            key_type=bytes,  # bytes in and out: faust's "raw" codec, the same on writes and on recovery
            value_type=bytes,
            on_recover=self.rebuild,
            on_changelog_event=self.note_changelog,
            help="GalleryEntry bytes by [gallery id, subject id]; the changelog the galleries recover from.",
        )

    async def apply(self, event: EventT) -> None:
        """Apply one entry (called inside the event's stream iteration: the table needs it for the partition)."""
        limit = self.ctx.settings.max_id_bytes
        check_key(event.message.key, limit)
        record = await parse(self.ctx, event.message.value, "GalleryEntry")
        gallery_id, subject = record["gallery_id"], record["subject_id"]
        check_id(gallery_id, "gallery id", limit)
        check_id(subject, "subject id", limit)  # it becomes part of the changelog key
        if event.message.key != gallery_id.encode():
            raise RecordError(
                ErrorCode.BAD_EVENT, f"record key {event.message.key!r} is not the gallery id {gallery_id!r}"
            )
        key = table_key(gallery_id, subject)
        self.partition_of[gallery_id] = event.message.partition
        async with self.lock:  # no query reads a matrix while it changes
            if record["op"] == "DELETE":
                left = self.galleries.delete(gallery_id, subject)
                if key in self.table:
                    del self.table[key]
                self.sizes.publish(gallery_id, len(left) if left else 0)
                return
            check_embedding(record["embedding"], "the embedding")
            try:
                embedding = unit_vector(record["embedding"], "the embedding")
            except ValueError as exc:
                raise RecordError(ErrorCode.BAD_EVENT, str(exc)) from None
            try:
                gallery = self.galleries.upsert(gallery_id, subject, embedding)
            except DimensionMismatch as exc:
                raise RecordError(ErrorCode.DIMENSION_MISMATCH, f"gallery {gallery_id!r}: {exc}") from None
            self.table[key] = event.message.value
            self.sizes.publish(gallery_id, len(gallery))

    async def note_changelog(self, event: EventT) -> None:
        """Remember the partition of each gallery read back from the changelog (same number as its source)."""
        self.partition_of[gallery_of(event.key)] = event.message.partition

    async def rebuild(self) -> None:
        """Rebuild every matrix from the recovered table: what this worker holds after a (re)assignment."""
        held = {tp.partition for tp in self.app.consumer.assignment() if tp.topic == self.ctx.topics.gallery}
        async with self.lock:
            before = set(self.galleries)
            self.galleries.clear()
            store = self.table.data
            for key, value in list(store.items()):
                if self.partition_of.get(gallery_of(key)) not in held:
                    del store[key]  # another worker's now: forgotten here, no tombstone to the changelog
                    continue
                record = self.ctx.codec.decode(value, expect="GalleryEntry")
                try:
                    embedding = unit_vector(record["embedding"], "a stored embedding")
                except ValueError as exc:  # written before it was refused on arrival: skip it, keep the gallery
                    log.warning("changelog entry %r skipped: %s", key[:200], exc)
                    continue
                self.galleries.upsert(record["gallery_id"], record["subject_id"], embedding)
            self.partition_of = {g: p for g, p in self.partition_of.items() if p in held}
            for gallery_id in before - set(self.galleries):
                self.sizes.publish(gallery_id, 0)
            for gallery_id in self.galleries:
                self.sizes.publish(gallery_id, len(self.galleries.get(gallery_id)))
        log.info("galleries rebuilt from the table: %s", {g: len(self.galleries.get(g)) for g in self.galleries})


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
        method = METHODS[record["method"]]
        try:
            arguments = method.arguments(record["params"])
            query = unit_vector(record["embedding"], "the query embedding")
        except ValueError as exc:
            raise RecordError(ErrorCode.BAD_QUERY, str(exc)) from None
        if record["top_k"] < 1:
            raise RecordError(ErrorCode.BAD_QUERY, f"top_k must be at least 1, got {record['top_k']}")

        async with self.lock:  # the matrix must not change while the re-ranker reads it
            joined = time.perf_counter()
            ids, matrix = await self._candidates(record, message.key)
            if matrix.shape[1] != query.shape[0]:
                raise RecordError(
                    ErrorCode.DIMENSION_MISMATCH,
                    f"query of dimension {query.shape[0]}, candidates of dimension {matrix.shape[1]}",
                )
            work = method.work(*matrix.shape)
            if work > settings.max_query_work:
                raise RecordError(
                    ErrorCode.BAD_QUERY,
                    f"{record['method']} over {len(ids)} candidates would take about {work:.3g} multiply-adds, "
                    f"over the limit of {settings.max_query_work:.3g}",
                )
            computed = time.perf_counter()
            k = min(record["top_k"], len(ids))
            try:
                rows, scores = await method.run(query, matrix, k, arguments, settings.rerank_threads)
            except ValueError as exc:
                raise RecordError(ErrorCode.BAD_QUERY, f"{record['method']}: {exc}") from None
            done = time.perf_counter()
            matches = [
                {"id": ids[row], "score": float(score)}
                for row, score in zip(rows.tolist(), scores.tolist(), strict=True)
                if record["threshold"] is None or score >= record["threshold"]
            ]
        metrics.RERANK_SECONDS.labels(method=record["method"]).observe(done - computed)
        return {
            "query_id": record["query_id"],
            "gallery_id": record["gallery_id"],
            "matches": [{**m, "rank": rank} for rank, m in enumerate(matches, start=1)],
            "method": record["method"],
            "gallery_size": len(ids),
            "join_us": round((computed - joined) * 1e6),
            "compute_us": round((done - computed) * 1e6),
            "source": {"topic": message.topic, "partition": message.partition, "offset": message.offset},
            "processed_at": now_ms(),
        }

    async def _candidates(self, record: dict[str, Any], key: bytes | None) -> tuple[Sequence[str], np.ndarray]:
        """(ids, matrix) to rank: the inline candidates, else the stored gallery (no copy)."""
        candidates = record["candidates"]
        if candidates is not None:
            return await asyncio.get_running_loop().run_in_executor(None, self._inline, candidates)
        gallery_id = record["gallery_id"]
        if key != gallery_id.encode():
            # Keyed otherwise, the query may sit on another partition than its gallery.
            raise RecordError(ErrorCode.BAD_QUERY, f"record key {key!r} is not the gallery id {gallery_id!r}")
        gallery = self.galleries.get(gallery_id)
        if gallery is None:
            raise RecordError(ErrorCode.UNKNOWN_GALLERY, f"no gallery {gallery_id!r} on this worker's partitions")
        return gallery.ids, gallery.matrix

    def _inline(self, candidates: list[dict[str, Any]]) -> tuple[list[str], np.ndarray]:
        """Inline candidates as (ids, unit rows), bounded in id length and dimension (runs in a thread).

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
        return [c["id"] for c in candidates], matrix


async def parse(ctx: WorkerContext, value: bytes | None, expect: str) -> dict[str, Any]:
    """Decode one record, in a thread when it is large enough to hold up the event loop."""
    if value is not None and len(value) > INLINE_MAX_PARSE_BYTES:
        return await asyncio.get_running_loop().run_in_executor(None, partial(ctx.codec.decode, value, expect=expect))
    return ctx.codec.decode(value, expect=expect)


# --- wiring ----------------------------------------------------------------


def register_rerank_agents(app: faust.App, ctx: WorkerContext) -> None:
    """Declare the gallery table and the ``gallery`` and ``rerank`` agents on ``app``."""
    topics = ctx.topics
    settings = ctx.settings
    raw = {"key_serializer": "raw", "value_serializer": "raw"}
    gallery_topic, queries_topic = app.topic(topics.gallery, **raw), app.topic(topics.queries, **raw)
    gallery_outputs = Outputs(app, ctx, gallery_topic, [topics.dlq])
    query_outputs = Outputs(app, ctx, queries_topic, [topics.rerank_results, topics.dlq])
    galleries = Galleries()
    lock = asyncio.Lock()
    keeper = GalleryKeeper(app, ctx, galleries, lock)
    ranker = QueryRanker(ctx, galleries, lock)

    async def result(event: EventT) -> Output:
        record = await ranker.answer(event)
        value = ctx.codec.encode("RerankResult", record, topic=topics.rerank_results)
        return Output(topics.rerank_results, record["query_id"].encode(), value)

    async def gallery(stream: faust.StreamT) -> None:
        async for event in stream.events():
            async with gallery_outputs.batch([event]):
                # An applied entry's output is its changelog record: only a refusal is sent.
                await (await gallery_outputs.answer(event, partial(keeper.apply, event)))

    async def rerank_queries(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.max_batch, within=settings.max_wait_ms / 1000.0):
            async with query_outputs.batch(events):
                # Offsets are committed only for acknowledged events: wait for Kafka to take every output first.
                await asyncio.gather(*[await query_outputs.answer(e, partial(result, e)) for e in events])

    app.agent(gallery_topic, name="gallery")(gallery)
    app.agent(queries_topic, name="rerank")(rerank_queries)

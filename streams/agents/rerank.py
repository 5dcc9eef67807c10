"""The rerank agents: ``GalleryEntry``s keep the galleries, ``RerankQuery``s are ranked against them.

Durability and speed are kept apart. The changelog-backed faust table
``gallery`` holds one key per (gallery, subject, template) whose value is the
entry's original Avro bytes: an upsert writes one small record to the changelog,
not the whole gallery, and a delete writes a tombstone per template, so
compaction keeps exactly the live templates. The query path never reads the table: it reads
:class:`~streams.gallery.Galleries`, one contiguous matrix per gallery (rows
stored as ``FACESTREAM_GALLERY_DTYPE``), changed row by row as entries arrive
and rebuilt from the table only when faust has finished recovering it
(start-up, rebalance). Entries are applied in batches of up to
``FACESTREAM_GALLERY_BATCH``, one commit each, so bulk enrolment under
exactly-once pays one transaction per batch rather than per entry.

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
import json
import logging
import time
from functools import partial
from pathlib import Path
from typing import Any

import faust
import numpy as np
from faust.types import EventT

from .. import gallery_store, metrics
from ..bounds import check_embedding, check_id, check_key, fits
from ..context import WorkerContext
from ..errors import ErrorCode, RecordError, TooManyItems
from ..gallery import DEFAULT_TEMPLATE, ORIGIN, DimensionMismatch, Galleries, Gallery, ModelMismatch, model_key
from ..identity import decide, match_threshold
from ..kafka.changelog_store import bulk_recovered_table
from ..ranking import METHODS, Candidates, Method, rank_subjects_off_loop
from ..vectors import unit_rows, unit_vector
from .dead_letter import now_ms
from .gallery_sizes import GallerySizes
from .output import Output
from .outputs import Outputs

log = logging.getLogger(__name__)

TABLE_NAME = "gallery"
INDEX_DIR = "gallery-index"  # under FACESTREAM_DATA_DIR: the galleries' saved approximate indexes
SAVED_GALLERIES = "galleries.npz"  # under FACESTREAM_DATA_DIR: the rows saved at stop (streams.gallery_store)
# A record this large takes milliseconds to parse: done in a thread so the event loop keeps serving.
INLINE_MAX_PARSE_BYTES = 64 * 1024


def table_key(gallery_id: str, subject_id: str, template_id: str = DEFAULT_TEMPLATE) -> bytes:
    """Changelog key of one template: JSON, unambiguous whatever characters the ids hold.

    The default template keeps the [gallery, subject] pair written before templates existed.
    """
    ids = [gallery_id, subject_id, template_id] if template_id != DEFAULT_TEMPLATE else [gallery_id, subject_id]
    return json.dumps(ids, ensure_ascii=False).encode()


def millis(value: Any) -> int:
    """A decoded timestamp-millis field as milliseconds (fastavro gives a datetime)."""
    return round(value.timestamp() * 1000) if hasattr(value, "timestamp") else int(value)


def gallery_of(key: bytes) -> str:
    """The gallery id of a changelog key."""
    return json.loads(key)[0]


# --- the two agents' work --------------------------------------------------


class GalleryKeeper:
    """Applies ``GalleryEntry`` records to its changelog table and to the matrices, and rebuilds these after recovery.

    The table is kept in a :class:`~streams.kafka.changelog_store.ChangelogStore`: read back in bulk on
    assignment, and knowing the partition of every key, written live or read back, so that on a rebalance
    the galleries of partitions that moved to another worker are dropped with them. Each row is built with the
    digest of its changelog value as its origin, so that the rows held before a rebuild, or saved at the last
    stop, stand for the values they came from (:mod:`streams.gallery_store`) and only the others are decoded.
    """

    def __init__(self, app: faust.App, ctx: WorkerContext, galleries: Galleries, lock: asyncio.Lock) -> None:
        self.app = app
        self.ctx = ctx
        self.galleries = galleries
        self.lock = lock
        self.sizes = GallerySizes(ctx.settings.max_gallery_labels)
        self.saved_path = Path(ctx.settings.data_dir) / SAVED_GALLERIES
        self._sent: list[asyncio.Future] = []  # changelog records not yet seen acknowledged
        self._changed: set[str] = set()  # galleries whose size is not yet published
        self.table = bulk_recovered_table(
            app,
            TABLE_NAME,
            ctx.settings,
            default=None,
            partitions=ctx.settings.topic_partitions,
            key_type=bytes,  # bytes in and out: faust's "raw" codec, the same on writes and on recovery
            value_type=bytes,
            on_recover=self.rebuild,
            help="GalleryEntry bytes by [gallery id, subject id]; the changelog the galleries recover from.",
        )
        self._changelog = self.table.changelog_topic.get_topic_name()

    async def apply(self, event: EventT) -> None:
        """Apply one entry: to the matrix, and to the table, written to the changelog partition of the event.

        The partition is named here rather than taken from faust's current event, which in a batch is its last.
        """
        limit = self.ctx.settings.max_id_bytes
        check_key(event.message.key, limit)
        record = await parse(self.ctx, event.message.value, "GalleryEntry", arrays=True)
        gallery_id, subject = record["gallery_id"], record["subject_id"]
        check_id(gallery_id, "gallery id", limit)
        check_id(subject, "subject id", limit)  # it becomes part of the changelog key
        template = record["template_id"]
        if template is not None:
            check_id(template, "template id", limit)
        if event.message.key != gallery_id.encode():
            raise RecordError(
                ErrorCode.BAD_EVENT, f"record key {event.message.key!r} is not the gallery id {gallery_id!r}"
            )
        partition = event.message.partition
        async with self.lock:  # no query reads a matrix while it changes
            if record["op"] == "DELETE":
                held = self.galleries.get(gallery_id)
                named = [template] if template is not None else sorted(held.templates(subject)) if held else []
                for name in named or [DEFAULT_TEMPLATE]:
                    await self._erase(partition, table_key(gallery_id, subject, name))
                self.galleries.delete(gallery_id, subject, template)
                self._changed.add(gallery_id)
                return
            gate = self.ctx.settings.enrol_min_quality
            check_quality_fields(record, ErrorCode.BAD_EVENT, "face quality", gate, "FACESTREAM_ENROL_MIN_QUALITY")
            check_embedding(record["embedding"], "the embedding")
            try:
                embedding = unit_vector(record["embedding"], "the embedding")
            except ValueError as exc:
                raise RecordError(ErrorCode.BAD_EVENT, str(exc)) from None
            key = key_of(record)
            if not fits(len(key) + len(event.message.value), self.ctx.settings.max_message_bytes):
                raise RecordError(ErrorCode.PAYLOAD_TOO_LARGE, f"its changelog record of {len(key)} key and "
                                  f"{len(event.message.value)} value bytes would not fit a Kafka record")
            try:
                self.galleries.upsert(gallery_id, subject, embedding, **entry_fields(record),
                                      origin=gallery_store.origin_of(event.message.value))
            except DimensionMismatch as exc:
                raise RecordError(ErrorCode.DIMENSION_MISMATCH, f"gallery {gallery_id!r}: {exc}") from None
            except ModelMismatch as exc:
                raise RecordError(ErrorCode.MODEL_MISMATCH, f"gallery {gallery_id!r}: {exc}") from None
            self._changed.add(gallery_id)
            await self._write(partition, key, event.message.value)

    async def settled(self) -> None:
        """Return once Kafka has taken every changelog record written since the last call (raise if it refused
        one: the batch is then not committed), and publish the sizes of the galleries changed meanwhile."""
        sent, self._sent = self._sent, []
        await asyncio.gather(*sent)
        changed, self._changed = self._changed, set()
        for gallery_id in changed:
            self._publish_size(gallery_id)

    def _publish_size(self, gallery_id: str) -> None:
        """Publish what the gallery holds now (nothing: it is gone)."""
        gallery = self.galleries.get(gallery_id)
        self.sizes.publish(gallery_id, len(gallery) if gallery else 0, gallery.nbytes if gallery else 0)

    async def _write(self, partition: int, key: bytes, value: bytes) -> None:
        """What ``table[key] = value`` does (store, then changelog), to the partition given."""
        self.table.data.put(key, value, partition)
        await self._send_changelog(partition, key, value)

    async def _erase(self, partition: int, key: bytes) -> None:
        """What ``del table[key]`` does for a held key: a tombstone to the changelog partition given."""
        if self.table.data.erase(key):
            await self._send_changelog(partition, key, None)

    async def _send_changelog(self, partition: int, key: bytes, value: bytes | None) -> None:
        """What ``table.send_changelog`` does, handed to the producer at once: faust's producer buffer drains
        one record at a time, with a task and a timer each (measured: a quarter of enrolment's event loop)."""
        try:
            sent = await self.app.producer.send(self._changelog, key, value, partition, None, None)
        except Exception as exc:  # noqa: BLE001 -- the entry is applied already: its batch must not commit
            sent = asyncio.get_running_loop().create_future()
            sent.set_exception(exc)
        sent.add_done_callback(self._changelog_sent)
        self._sent.append(sent)

    def _changelog_sent(self, sent: asyncio.Future) -> None:
        """Once a changelog record is acknowledged, what faust's table does then: the store learns its offset."""
        if not sent.cancelled() and sent.exception() is None:  # else raised by settled()
            self.table._on_changelog_sent(sent)  # reads only the RecordMetadata result of the future

    def save(self) -> None:
        """Save the galleries' rows and approximate indexes for the next start: the streams have stopped, so what
        the galleries hold is what the changelog says. A worker that holds none keeps the last save."""
        self.galleries.save_indexes()
        if len(self.galleries):
            gallery_store.save(self.saved_path, gallery_store.held(self.galleries), self.galleries.dtype)

    async def rebuild(self) -> None:
        """Rebuild every matrix from the recovered table: what this worker holds after a (re)assignment.

        The work (seconds for a million entries) runs in a thread, under the lock that keeps queries and entries
        out, so the event loop goes on serving metrics, readiness and the embed agent meanwhile.
        """
        started = time.perf_counter()
        async with self.lock:
            before = set(self.galleries)
            store = self.table.data  # only this worker's partitions: faust dropped the others' keys
            await self.ctx.schemas_ready(store.values())  # Confluent-framed entries: their writer schemas first
            await asyncio.to_thread(self._load, list(store.items()))
            for gallery_id in before | set(self.galleries):
                self._publish_size(gallery_id)
        seconds = time.perf_counter() - started
        metrics.GALLERY_REBUILD_SECONDS.observe(seconds)
        log.info("galleries rebuilt from the table in %.2f s: %s", seconds,
                 {g: len(self.galleries.get(g)) for g in list(self.galleries)[:20]})

    def _load(self, items: list[tuple[bytes, bytes]]) -> None:
        """The galleries anew from the table's (key, GalleryEntry bytes); an entry that cannot be one is skipped.

        Rows held until now, or else saved at the last stop, stand for the values they were built from; only the
        other values are decoded. A gallery whose neighbour graph was in use gets it built anew, in the
        background: its next k-reciprocal query need not wait the whole build. Approximate indexes are saved
        first and taken up again.
        """
        graphs = {gallery_id: self.galleries.get(gallery_id).neighbour_graph.wanted for gallery_id in self.galleries}
        self.galleries.save_indexes()  # taken up again below by each gallery that is still here
        source = "held" if len(self.galleries) else "saved"
        if source == "held":
            saved = gallery_store.held(self.galleries)
        else:
            saved = gallery_store.load(self.saved_path, self.galleries.dtype)
        self.galleries.clear()
        origins = [gallery_store.origin_of(value) for _, value in items]
        kept, left = gallery_store.paired(saved, origins)
        for part in kept:
            self.galleries.extend(part.gallery_id, part.keys, part.rows, scales=part.scales, origins=part.origins,
                                  model=part.model, thresholds=part.thresholds)
        taken = sum(len(part.keys) for part in kept)
        metrics.GALLERY_REBUILD_ROWS.labels(source=source).inc(taken)
        log.info("rebuild: %d rows taken from the %s galleries, %d entries to decode", taken, source, len(left))
        decoded = self._decode([items[position] for position in left], [origins[position] for position in left])
        metrics.GALLERY_REBUILD_ROWS.labels(source="decoded").inc(decoded)
        for gallery_id, wanted in graphs.items():
            gallery = self.galleries.get(gallery_id)
            if wanted and gallery is not None:
                gallery.neighbour_graph.start_build(gallery.matrix, wanted, threads=self.ctx.settings.rerank_threads)

    def _decode(self, items: list[tuple[bytes, bytes]], origins: list[bytes]) -> int:
        """Add the table's (key, GalleryEntry bytes), of ``origins``, to the galleries, each gallery in the order
        its entries were produced, as live would have taken them after the rows already held; how many rows that
        added."""
        # Each embedding becomes a float32 unit row as soon as its block is decoded: a million entries'
        # embeddings as lists of Python floats would take gigabytes.
        records: list[tuple[bytes, dict[str, Any]]] = []
        units: list[np.ndarray | None] = []
        pending: list[Any] = []
        for (key, value), origin in zip(items, origins, strict=True):
            try:
                record = self.ctx.codec.decode_arrays(value, "GalleryEntry", walked=True)
            except RecordError as exc:  # not written by a worker: nothing to rebuild from
                log.warning("changelog entry %r skipped: %s", key[:200], exc)
                continue
            pending.append(record.pop("embedding"))
            record["origin"] = origin
            records.append((key, record))
            if len(pending) == UNIT_BLOCK:
                units.extend(unit_embeddings(pending))
                pending = []
        units.extend(unit_embeddings(pending))
        # In the order they were produced: the first model named and the newest threshold are those of live.
        by_gallery: dict[str, list[int]] = {}
        for i in sorted(range(len(records)), key=lambda i: millis(records[i][1]["produced_at"])):
            by_gallery.setdefault(records[i][1]["gallery_id"], []).append(i)
        added = 0
        for gallery_id, entries in by_gallery.items():
            held = self.galleries.get(gallery_id)
            kept, model = _as_live_took(entries, records, units, held)
            if not kept:
                continue
            fields = [entry_fields(records[i][1]) for i in kept]
            keys = [(records[i][1]["subject_id"], f["template"]) for i, f in zip(kept, fields, strict=True)]
            thresholds = {k: (f["produced_at"], f["threshold"]) for k, f in zip(keys, fields, strict=True)
                          if f["threshold"] is not None}
            self.galleries.extend(gallery_id, keys, np.stack([units[i] for i in kept]), model=model,
                                  thresholds=thresholds, origins=np.array([records[i][1]["origin"] for i in kept],
                                                                          dtype=ORIGIN))
            added += len(kept)
        return added


def _as_live_took(
    entries: list[int], records: list[tuple[bytes, dict[str, Any]]], units: list[np.ndarray | None],
    held: Gallery | None,
) -> tuple[list[int], dict[str, Any] | None]:
    """The stored entries of one gallery (indices, in production order) that live took after the rows ``held``
    (None: a new gallery), and the gallery's model then.

    As on arrival, the first good embedding fixes the dimension and the first model named fixes the model; an
    entry written before such a refusal existed is skipped, and the gallery kept. A template is taken once: two
    changelog keys of one template (not written by a worker) give the newer entry.
    """
    taken: dict[tuple[str, str], int] = {}
    dim, model = (held.dim, held.model) if held is not None else (None, None)
    for i in entries:
        (key, record), unit = records[i], units[i]
        template = (record["subject_id"], record["template_id"] or DEFAULT_TEMPLATE)
        if unit is None:
            problem = "its embedding is empty, not finite or all zeros"
        elif dim is not None and len(unit) != dim:
            problem = f"embedding of dimension {len(unit)} in a gallery of dimension {dim}"
        elif None not in (model, record["model"]) and model_key(record["model"]) != model_key(model):
            problem = f"an embedding of another model than the gallery's {model_key(model)}"
        elif held is not None and template[1] in held.templates(template[0]):
            problem = "its template is held already, from another changelog key"
        else:
            if template in taken:
                log.warning("changelog entry %r skipped: a newer one of its template follows",
                            records[taken[template]][0][:200])
            taken[template] = i
            dim, model = len(unit), model or record["model"]
            continue
        log.warning("changelog entry %r skipped: %s", key[:200], problem)
    return list(taken.values()), model


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


#: Embeddings a rebuild normalises per numpy call: numpy's per-call cost is paid per block, not per entry.
UNIT_BLOCK = 4096


def unit_embeddings(block: list[list[float]]) -> list[np.ndarray | None]:
    """Each embedding as :func:`unit_vector` makes it, or None where it refuses it; in one call when the block's
    embeddings are all good and of one dimension (a million entries' rebuild would otherwise spend seconds in
    per-call overhead)."""
    try:
        if len({len(e) for e in block}) == 1:
            return list(unit_rows(np.array(block, dtype=np.float64), "a stored embedding"))
    except ValueError:  # a bad entry in the block: one at a time
        pass
    return [_unit_or_none(e) for e in block]


def _unit_or_none(embedding: list[float]) -> np.ndarray | None:
    try:
        return unit_vector(embedding, "a stored embedding")
    except ValueError:
        return None


def check_range(value: float | None, name: str, low: float, high: float, code: ErrorCode) -> None:
    """An optional number a record may carry: absent, or finite within [low, high] (NaN is neither)."""
    if value is not None and not low <= value <= high:
        raise RecordError(code, f"{name} must be within [{low:g}, {high:g}], got {value}")


def check_quality_fields(record: dict[str, Any], malformed: ErrorCode, what: str, gate: float, setting: str) -> None:
    """A gallery entry's or query's ``quality`` and ``match_threshold``: in range (else ``malformed``), and a
    known quality at least ``gate``, the value of ``setting`` (else LOW_QUALITY)."""
    check_range(record["quality"], "quality", 0.0, 1.0, malformed)
    check_range(record["match_threshold"], "match_threshold", -1.0, 1.0, malformed)
    if record["quality"] is not None and record["quality"] < gate:
        raise RecordError(ErrorCode.LOW_QUALITY, f"{what} {record['quality']:.3f} is below {setting} {gate:g}")


def key_of(entry: dict[str, Any]) -> bytes:
    """The table key of a ``GalleryEntry`` upsert."""
    return table_key(entry["gallery_id"], entry["subject_id"], entry["template_id"] or DEFAULT_TEMPLATE)


def entry_fields(entry: dict[str, Any]) -> dict[str, Any]:
    """What a ``GalleryEntry`` upsert tells :meth:`Galleries.upsert` beside its subject and embedding."""
    return {
        "template": entry["template_id"] or DEFAULT_TEMPLATE,
        "model": entry["model"],
        "threshold": entry["match_threshold"],
        "produced_at": millis(entry["produced_at"]),
    }


async def parse(ctx: WorkerContext, value: bytes | None, expect: str, *, arrays: bool = False) -> dict[str, Any]:
    """Decode one record, in a thread when it is large enough to hold up the event loop; ``arrays``: its float
    arrays as numpy float32 (:meth:`~streams.codecs.AvroCodec.decode_arrays`: half the time)."""
    decode = partial(ctx.codec.decode_arrays, value, expect) if arrays else partial(ctx.codec.decode, value, expect)
    if value is not None and len(value) > INLINE_MAX_PARSE_BYTES:
        return await asyncio.get_running_loop().run_in_executor(None, decode)
    return decode()


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
                # In order: a later entry of the same template must win. An applied entry's output is its
                # changelog record: only a refusal is sent.
                await asyncio.gather(*[await gallery_outputs.answer(e, partial(keeper.apply, e)) for e in events])
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

"""The gallery keeper: ``GalleryEntry`` records applied to the galleries and to their changelog table, a batch at
a time, and the galleries rebuilt from that table after a (re)assignment.

Durability and speed are kept apart. The changelog-backed faust table
``gallery`` holds one key per (gallery, subject, template) whose value is the
entry's original Avro bytes: an upsert writes one small record to the changelog,
not the whole gallery, and a delete writes a tombstone per template, so
compaction keeps exactly the live templates. Queries never read the table: they
read :class:`~streams.gallery.Galleries`, one contiguous matrix per gallery,
changed as entries arrive and rebuilt from the table only when faust has
finished recovering it.

Entries come in batches of up to ``FACESTREAM_GALLERY_BATCH``, one commit each,
so bulk enrolment under exactly-once pays one transaction per batch rather than
per entry. A batch costs per entry only what cannot be shared, decoding and
checking its record and sending its changelog record: its embeddings are
normalised in one numpy pass, and each gallery takes its upserts in one bulk
write, checked beforehand entry by entry as one upsert after another would be
(:class:`~streams.gallery.Admission`), so that a refused entry is refused alone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
import numpy as np
from faust.types import EventT

from .. import gallery_store, metrics
from ..bounds import check_embedding, check_id, check_key, fits
from ..context import WorkerContext
from ..errors import ErrorCode, RecordError
from ..gallery import DEFAULT_TEMPLATE, ORIGIN, Admission, DimensionMismatch, Galleries, Gallery, ModelMismatch
from ..kafka.changelog_store import bulk_recovered_table
from ..kafka.changelog_writer import ChangelogWriter
from ..vectors import unit_rows, unit_vector
from .gallery_sizes import GallerySizes
from .records import check_quality_fields, parse

log = logging.getLogger(__name__)

TABLE_NAME = "gallery"
SAVED_GALLERIES = "galleries.npz"  # under FACESTREAM_DATA_DIR: the rows saved at stop (streams.gallery_store)
#: Embeddings normalised per numpy call: numpy's per-call cost is paid per block, not per entry.
UNIT_BLOCK = 4096


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
        self.changelog = ChangelogWriter(app, self.table)

    async def apply(self, events: Sequence[EventT]) -> list[Exception | None]:
        """Apply a batch of entries in order, to the galleries and to the table, each written to the changelog
        partition of its event; per event, None once applied (its output is its changelog record) or why it was
        not (its output is a dead letter). One entry never fails another."""
        outcomes: list[Exception | None] = [None] * len(events)
        checked: list[tuple[int, dict[str, Any], bytes | None]] = []
        for position, event in enumerate(events):
            try:
                checked.append((position, *await self._checked(event)))
            except Exception as exc:  # noqa: BLE001 -- whatever one entry raises is its own dead letter
                outcomes[position] = exc
        upserts = [(position, record) for position, record, key in checked if key is not None]
        units = dict(zip([position for position, _ in upserts],
                         unit_embeddings([record["embedding"] for _, record in upserts], "the embedding"), strict=True))
        async with self.lock:  # no query reads a matrix while it changes
            pending: dict[str, _Upserts] = {}  # per gallery, its upserts since its last delete, written at once
            for position, record, key in checked:
                message, gallery_id = events[position].message, record["gallery_id"]
                if key is None and gallery_id in pending:  # admitted upserts: a failure to write them fails the batch
                    pending.pop(gallery_id).write(self.galleries, gallery_id)
                try:
                    if key is None:
                        await self._delete(message.partition, record)
                        continue
                    if gallery_id not in pending:
                        pending[gallery_id] = _Upserts(self.galleries.get(gallery_id))
                    pending[gallery_id].add(record, units[position], message.value)
                    self._changed.add(gallery_id)
                    await self._write(message.partition, key, message.value)
                except Exception as exc:  # noqa: BLE001 -- as above
                    outcomes[position] = exc
            for gallery_id, upserting in pending.items():
                upserting.write(self.galleries, gallery_id)
        return outcomes

    async def _checked(self, event: EventT) -> tuple[dict[str, Any], bytes | None]:
        """One event's entry, checked as far as it can be alone, and its table key (None: a delete)."""
        limit = self.ctx.settings.max_id_bytes
        check_key(event.message.key, limit)
        record = await parse(self.ctx, event.message.value, "GalleryEntry", arrays=True)
        gallery_id, subject = record["gallery_id"], record["subject_id"]
        check_id(gallery_id, "gallery id", limit)
        check_id(subject, "subject id", limit)  # it becomes part of the changelog key
        if record["template_id"] is not None:
            check_id(record["template_id"], "template id", limit)
        if event.message.key != gallery_id.encode():
            raise RecordError(
                ErrorCode.BAD_EVENT, f"record key {event.message.key!r} is not the gallery id {gallery_id!r}"
            )
        if record["op"] == "DELETE":
            return record, None
        gate = self.ctx.settings.enrol_min_quality
        check_quality_fields(record, ErrorCode.BAD_EVENT, "face quality", gate, "FACESTREAM_ENROL_MIN_QUALITY")
        check_embedding(record["embedding"], "the embedding")
        key, size = key_of(record), len(event.message.value)
        if not fits(len(key) + size, self.ctx.settings.max_message_bytes):
            raise RecordError(ErrorCode.PAYLOAD_TOO_LARGE, f"its changelog record of {len(key)} key and {size} "
                              "value bytes would not fit a Kafka record")
        return record, key

    async def _delete(self, partition: int, record: dict[str, Any]) -> None:
        """A delete entry: a tombstone per template it removes, then the rows."""
        gallery_id, subject, template = record["gallery_id"], record["subject_id"], record["template_id"]
        held = self.galleries.get(gallery_id)
        named = [template] if template is not None else sorted(held.templates(subject)) if held else []
        for name in named or [DEFAULT_TEMPLATE]:
            await self._erase(partition, table_key(gallery_id, subject, name))
        self.galleries.delete(gallery_id, subject, template)
        self._changed.add(gallery_id)

    async def settled(self) -> None:
        """Return once Kafka has taken every changelog record written since the last call (raise if it refused
        one: the batch is then not committed), and publish the sizes of the galleries changed meanwhile."""
        await self.changelog.settled()
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
        await self.changelog.write(partition, key, value)

    async def _erase(self, partition: int, key: bytes) -> None:
        """What ``del table[key]`` does for a held key: a tombstone to the changelog partition given."""
        if self.table.data.erase(key):
            await self.changelog.write(partition, key, None)

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
        units: list[np.ndarray | ValueError] = []
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
                units.extend(unit_embeddings(pending, "a stored embedding"))
                pending = []
        units.extend(unit_embeddings(pending, "a stored embedding"))
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


class _Upserts:
    """One gallery's upserts of a batch: each admitted as its own upsert would be, then all written at once."""

    def __init__(self, gallery: Gallery | None) -> None:
        self.admission = Admission(gallery)
        self.keys: list[tuple[str, str]] = []
        self.rows: list[np.ndarray] = []
        self.origins: list[bytes] = []
        self.thresholds: list[tuple[int, float] | None] = []

    def add(self, record: dict[str, Any], unit: np.ndarray | ValueError, value: bytes) -> None:
        """Take the checked upsert ``record`` of the changelog ``value``, its embedding as ``unit``; raise the
        :class:`RecordError` saying why the gallery refuses it."""
        gallery_id = record["gallery_id"]
        if isinstance(unit, ValueError):
            raise RecordError(ErrorCode.BAD_EVENT, str(unit))
        try:
            self.admission.admit(len(unit), record["model"])
        except DimensionMismatch as exc:
            raise RecordError(ErrorCode.DIMENSION_MISMATCH, f"gallery {gallery_id!r}: {exc}") from None
        except ModelMismatch as exc:
            raise RecordError(ErrorCode.MODEL_MISMATCH, f"gallery {gallery_id!r}: {exc}") from None
        fields = entry_fields(record)
        self.keys.append((record["subject_id"], fields["template"]))
        self.rows.append(unit)
        self.origins.append(gallery_store.origin_of(value))
        threshold = fields["threshold"]
        self.thresholds.append(None if threshold is None else (fields["produced_at"], threshold))

    def write(self, galleries: Galleries, gallery_id: str) -> None:
        """Write what was taken to the gallery."""
        if self.keys:
            galleries.upsert_many(gallery_id, self.keys, np.stack(self.rows), origins=np.array(self.origins, dtype=ORIGIN),
                                  model=self.admission.model, thresholds=self.thresholds)


def _as_live_took(
    entries: list[int], records: list[tuple[bytes, dict[str, Any]]], units: list[np.ndarray | ValueError],
    held: Gallery | None,
) -> tuple[list[int], dict[str, Any] | None]:
    """The stored entries of one gallery (indices, in production order) that live took after the rows ``held``
    (None: a new gallery), and the gallery's model then.

    As on arrival (:class:`~streams.gallery.Admission`), the first good embedding fixes the dimension and the
    first model named fixes the model; an entry written before such a refusal existed is skipped, and the gallery
    kept. A template is taken once: two changelog keys of one template (not written by a worker) give the newer
    entry.
    """
    taken: dict[tuple[str, str], int] = {}
    admission = Admission(held)
    for i in entries:
        (key, record), unit = records[i], units[i]
        template = (record["subject_id"], record["template_id"] or DEFAULT_TEMPLATE)
        try:
            if isinstance(unit, ValueError):
                raise unit
            if held is not None and template[1] in held.templates(template[0]):
                raise ValueError("its template is held already, from another changelog key")
            admission.admit(len(unit), record["model"])
        except ValueError as exc:
            log.warning("changelog entry %r skipped: %s", key[:200], exc)
            continue
        if template in taken:
            log.warning("changelog entry %r skipped: a newer one of its template follows", records[taken[template]][0][:200])
        taken[template] = i
    return list(taken.values()), admission.model


def unit_embeddings(block: Sequence[Sequence[float] | np.ndarray], what: str) -> list[np.ndarray | ValueError]:
    """Each embedding as :func:`unit_vector` makes it, or the ``ValueError`` it refuses it with; in one call when the
    block's embeddings are all good and of one dimension (numpy's per-call cost, paid per entry, would otherwise
    take most of an enrolment's or a rebuild's time)."""
    try:
        if len({len(e) for e in block}) == 1:
            return list(unit_rows(np.array(block, dtype=np.float64), what))
    except ValueError:  # a bad entry in the block: one at a time
        pass
    return [_unit_or_refusal(e, what) for e in block]


def _unit_or_refusal(embedding: Sequence[float] | np.ndarray, what: str) -> np.ndarray | ValueError:
    try:
        return unit_vector(embedding, what)
    except ValueError as exc:
        return exc


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

"""The gallery keeper's changelog writes, without a broker: acknowledged before a batch commits, never assumed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import numpy as np
import pytest
from aiokafka.structs import RecordMetadata, TopicPartition

from streams.agents import gallery_keeper
from streams.bounds import RECORD_OVERHEAD_BYTES
from streams.config import Settings
from streams.context import WorkerContext
from streams.errors import ErrorCode, RecordError
from streams.gallery import Galleries


class _Batch:
    """An aiokafka BatchBuilder holding at most ``room`` records."""

    def __init__(self, room: int) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []
        self.room = room

    def append(self, *, key, value, timestamp):
        if self.records and len(self.records) == self.room:
            return None
        self.records.append((key, value))
        return object()

    def record_count(self) -> int:
        return len(self.records)


class _Producer:
    """faust's producer around an aiokafka one whose batches are settled by the test as Kafka would settle them."""

    def __init__(self, room: int = 100) -> None:
        self.sent: list[tuple[str, int, _Batch, asyncio.Future]] = []
        self.room = room

    def _ensure_producer(self):
        return self

    def create_batch(self) -> _Batch:
        return _Batch(self.room)

    async def send_batch(self, batch, topic, *, partition):
        future = asyncio.get_running_loop().create_future()
        self.sent.append((topic, partition, batch, future))
        return future

    def records(self) -> list[tuple[bytes, bool, int]]:
        """(key, is a tombstone, partition) of every record sent, in the order sent."""
        return [(key, value is None, partition) for _, partition, batch, _ in self.sent for key, value in batch.records]


def _entry_event(ctx: WorkerContext, subject: str, partition: int, op: str = "UPSERT") -> SimpleNamespace:
    row = np.random.default_rng(len(subject)).standard_normal(4)
    record = {"gallery_id": "g", "subject_id": subject, "op": op, "produced_at": 1,
              "embedding": list(row / np.linalg.norm(row)) if op == "UPSERT" else []}
    message = SimpleNamespace(key=b"g", value=ctx.codec.encode("GalleryEntry", record), partition=partition)
    return SimpleNamespace(message=message)


async def test_changelog_records_are_awaited_a_batch_each_and_a_refused_one_fails_the_batch(tmp_path):
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path)))
    app = faust.App("keeper-test", broker="kafka://127.0.0.1:1", store="memory://")
    keeper = gallery_keeper.GalleryKeeper(app, ctx, Galleries(), asyncio.Lock())
    producer = _Producer(room=2)
    keeper.app = keeper.changelog.app = SimpleNamespace(producer=producer, in_transaction=False)
    persisted = []
    keeper.table.data.set_persisted_offset = lambda tp, offset: persisted.append((tp, offset))
    events = [_entry_event(ctx, "a", 2), _entry_event(ctx, "b", 0), _entry_event(ctx, "c", 2),
              _entry_event(ctx, "d", 2), _entry_event(ctx, "a", 2, op="DELETE")]
    assert await keeper.apply(events) == [None] * 5
    assert sorted(keeper.galleries.get("g").ids) == ["b", "c", "d"]
    settled = asyncio.ensure_future(keeper.settled())
    await asyncio.sleep(0.05)
    assert not settled.done()  # the batch waits for Kafka
    key = gallery_keeper.table_key
    assert sorted(producer.records(), key=lambda r: r[2]) == [
        (key("g", "b"), False, 0), (key("g", "a"), False, 2), (key("g", "c"), False, 2), (key("g", "d"), False, 2),
        (key("g", "a"), True, 2),  # the tombstone, to the partition of its entry
    ]
    # partition 2's records in batches of at most two, in the order written
    assert [(p, len(batch.records)) for _, p, batch, _ in producer.sent] == [(2, 2), (0, 1), (2, 2)]
    topic = keeper.changelog.topic
    for offset, (_, partition, _, future) in zip((10, 7, 12), producer.sent, strict=True):
        tp = TopicPartition(topic, partition)
        future.set_result(RecordMetadata(topic, partition, tp, offset, -1, 0, 0))
    await settled
    assert persisted == [(TopicPartition(topic, 2), 11), (TopicPartition(topic, 0), 7), (TopicPartition(topic, 2), 13)]

    assert await keeper.apply([_entry_event(ctx, "e", 1)]) == [None]
    settled = asyncio.ensure_future(keeper.settled())
    await asyncio.sleep(0.05)
    producer.sent[-1][3].set_exception(RuntimeError("NotEnoughReplicas"))
    with pytest.raises(RuntimeError, match="NotEnoughReplicas"):
        await settled
    await keeper.settled()  # nothing left over from the failed batch


async def test_an_entry_whose_changelog_record_cannot_fit_is_refused_before_it_changes_the_gallery(tmp_path):
    subject = "s" * 900
    probe = _entry_event(WorkerContext.from_settings(Settings(data_dir=str(tmp_path))), subject, 0)
    size = len(probe.message.value)  # fits as a record itself, not with its 900-byte changelog key beside it
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path), max_message_bytes=size + RECORD_OVERHEAD_BYTES))
    keeper = gallery_keeper.GalleryKeeper(faust.App("keeper-test-2", broker="kafka://127.0.0.1:1", store="memory://"), ctx,
                                  Galleries(), asyncio.Lock())
    keeper.changelog.app = SimpleNamespace(producer=_Producer(), in_transaction=False)
    [refused] = await keeper.apply([_entry_event(ctx, subject, 0)])
    assert isinstance(refused, RecordError) and refused.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert keeper.galleries.get("g") is None and keeper.changelog.app.producer.sent == []


async def test_a_send_the_producer_refuses_at_once_fails_the_batch_too(tmp_path):
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path)))
    keeper = gallery_keeper.GalleryKeeper(faust.App("keeper-test-3", broker="kafka://127.0.0.1:1", store="memory://"), ctx,
                                  Galleries(), asyncio.Lock())

    def refuse():
        raise RuntimeError("producer not running")

    keeper.changelog.app = SimpleNamespace(producer=SimpleNamespace(_ensure_producer=refuse), in_transaction=False)
    assert await keeper.apply([_entry_event(ctx, "a", 0)]) == [None]
    with pytest.raises(RuntimeError, match="not running"):
        await keeper.settled()


def _event(ctx: WorkerContext, partition: int = 0, key: bytes = b"g", **fields) -> SimpleNamespace:
    record = {"gallery_id": "g", "subject_id": "s", "op": "UPSERT", "produced_at": 1, "embedding": [0.6, 0.8, 0.0],
              **fields}
    return SimpleNamespace(message=SimpleNamespace(key=key, value=ctx.codec.encode("GalleryEntry", record),
                                                   partition=partition))


async def test_each_entry_of_a_batch_is_refused_alone_and_the_others_applied_in_order(tmp_path):
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path)))
    keeper = gallery_keeper.GalleryKeeper(faust.App("keeper-test-4", broker="kafka://127.0.0.1:1", store="memory://"),
                                          ctx, Galleries(), asyncio.Lock())
    producer = _Producer()
    keeper.changelog.app = SimpleNamespace(producer=producer, in_transaction=False)
    model = {"detector": "d", "embedder": "e", "version": "1", "dim": 3}
    garbage = SimpleNamespace(message=SimpleNamespace(key=b"g", value=b"\xc3\x01junk", partition=0))
    events = [
        _event(ctx, subject_id="a", embedding=[1.0, 0.0, 0.0], model=model),
        garbage,
        _event(ctx, key=b"h", subject_id="b"),  # keyed by another gallery
        _event(ctx, subject_id="c", embedding=[1.0, 0.0]),  # the gallery's dimension is 3
        _event(ctx, subject_id="d", embedding=[float("nan"), 0.0, 1.0]),
        _event(ctx, subject_id="e", model={**model, "embedder": "other"}),
        _event(ctx, subject_id="f", embedding=[0.0] * 3),
        _event(ctx, subject_id="g", embedding=[0.5] * 20_000),  # beyond any model's, and the codec's item limit
        _event(ctx, subject_id="h", quality=0.01),
        _event(ctx, subject_id="a", embedding=[0.0, 3.0, 4.0]),  # a later upsert of the same template wins
        _event(ctx, subject_id="i", op="DELETE", embedding=[]),  # deletes nothing held
        _event(ctx, subject_id="j", embedding=[0.0, 0.0, 2.0], match_threshold=0.4),
    ]
    outcomes = await keeper.apply(events)
    codes = [None if why is None else why.code for why in outcomes]
    assert codes == [None, ErrorCode.BAD_EVENT, ErrorCode.BAD_EVENT, ErrorCode.DIMENSION_MISMATCH,
                     ErrorCode.BAD_EVENT, ErrorCode.MODEL_MISMATCH, ErrorCode.BAD_EVENT, ErrorCode.BAD_EVENT,
                     ErrorCode.LOW_QUALITY, None, None, None]
    assert "NaN" in outcomes[4].message and "20000 values" in outcomes[7].message
    gallery = keeper.galleries.get("g")
    assert sorted(gallery.ids) == ["a", "j"] and gallery.model == model and gallery.threshold == pytest.approx(0.4)
    np.testing.assert_allclose(gallery.matrix[gallery.ids.index("a")], [0.0, 0.6, 0.8], atol=1e-7)
    settled = asyncio.ensure_future(keeper.settled())
    await asyncio.sleep(0.05)
    key = gallery_keeper.table_key  # the delete held nothing: no tombstone
    assert producer.records() == [(key("g", "a"), False, 0), (key("g", "a"), False, 0), (key("g", "j"), False, 0)]
    settled.cancel()

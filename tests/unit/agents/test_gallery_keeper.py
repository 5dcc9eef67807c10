"""The gallery keeper's changelog writes, without a broker: acknowledged before a batch commits, never assumed."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import faust
import numpy as np
import pytest

from streams.agents import gallery_keeper
from streams.bounds import RECORD_OVERHEAD_BYTES
from streams.config import Settings
from streams.context import WorkerContext
from streams.errors import ErrorCode, RecordError
from streams.gallery import Galleries


class _Producer:
    """Hands out one future per record, settled by the test as Kafka would settle it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int, asyncio.Future]] = []

    async def send(self, topic, key, value, partition, timestamp, headers):
        future = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, value, partition, future))
        return future


def _entry_event(ctx: WorkerContext, subject: str, partition: int, op: str = "UPSERT") -> SimpleNamespace:
    row = np.random.default_rng(len(subject)).standard_normal(4)
    record = {"gallery_id": "g", "subject_id": subject, "op": op, "produced_at": 1,
              "embedding": list(row / np.linalg.norm(row)) if op == "UPSERT" else []}
    message = SimpleNamespace(key=b"g", value=ctx.codec.encode("GalleryEntry", record), partition=partition)
    return SimpleNamespace(message=message)


async def test_changelog_records_are_awaited_and_a_refused_one_fails_the_batch(tmp_path):
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path)))
    app = faust.App("keeper-test", broker="kafka://127.0.0.1:1", store="memory://")
    keeper = gallery_keeper.GalleryKeeper(app, ctx, Galleries(), asyncio.Lock())
    producer = _Producer()
    keeper.app = SimpleNamespace(producer=producer, in_transaction=False)
    events = [_entry_event(ctx, "a", 2), _entry_event(ctx, "b", 0), _entry_event(ctx, "a", 2, op="DELETE")]
    assert await keeper.apply(events) == [None, None, None]
    assert keeper.galleries.get("g").ids == ["b"]
    assert [(key, value is None, partition) for _, key, value, partition, _ in producer.sent] == [
        (gallery_keeper.table_key("g", "a"), False, 2), (gallery_keeper.table_key("g", "b"), False, 0),
        (gallery_keeper.table_key("g", "a"), True, 2),  # the tombstone, to the partition of its entry
    ]
    settled = asyncio.ensure_future(keeper.settled())
    await asyncio.sleep(0.05)
    assert not settled.done()  # the batch waits for Kafka
    for _, _, _, partition, future in producer.sent[:2]:
        future.set_result(SimpleNamespace(topic_partition=keeper.table.changelog_topic.get_topic_name(), offset=5))
    producer.sent[2][4].set_exception(RuntimeError("NotEnoughReplicas"))
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
    keeper.app = SimpleNamespace(producer=_Producer(), in_transaction=False)
    [refused] = await keeper.apply([_entry_event(ctx, subject, 0)])
    assert isinstance(refused, RecordError) and refused.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert keeper.galleries.get("g") is None and keeper.app.producer.sent == []


async def test_a_send_the_producer_refuses_at_once_fails_the_batch_too(tmp_path):
    ctx = WorkerContext.from_settings(Settings(data_dir=str(tmp_path)))
    keeper = gallery_keeper.GalleryKeeper(faust.App("keeper-test-3", broker="kafka://127.0.0.1:1", store="memory://"), ctx,
                                  Galleries(), asyncio.Lock())

    async def refuse(*_):
        raise RuntimeError("producer not running")

    keeper.app = SimpleNamespace(producer=SimpleNamespace(send=refuse), in_transaction=False)
    assert await keeper.apply([_entry_event(ctx, "a", 0)]) == [None]
    with pytest.raises(RuntimeError, match="not running"):
        await keeper.settled()

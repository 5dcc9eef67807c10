"""A faust table's changelog records written a batch at a time, with aiokafka's batch API.

faust writes a changelog record through its producer buffer, which drains one
record at a time with a task and a timer each, and aiokafka's ``send`` then
makes a future per record and settles each when its batch is acknowledged. A
batch of gallery entries writes hundreds of records at once, so here they are
appended to one batch per changelog partition (a new one when it is full) and
submitted together: one future per Kafka batch, not per record. Once Kafka has
acknowledged a batch, the table's store learns the offset of its last record,
by the very callback faust's table runs for each record it sends.

Every record is awaited by :meth:`ChangelogWriter.settled` before the caller
commits: a record Kafka refused raises there, so the batch that wrote it is not
committed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from aiokafka.structs import RecordMetadata


class ChangelogWriter:
    """Writes ``table``'s changelog records, by partition, through ``app``'s producer."""

    def __init__(self, app: faust.App, table: Any) -> None:
        self.app = app
        self.table = table
        self.topic = table.changelog_topic.get_topic_name()
        self._open: dict[int, Any] = {}  # partition -> its aiokafka BatchBuilder still taking records
        self._sent: list[asyncio.Future] = []  # of the batches submitted since the last settled()

    async def write(self, partition: int, key: bytes, value: bytes | None) -> None:
        """Add one record (a ``None`` value: a tombstone) to the batch of its partition."""
        batch = self._open.get(partition)
        if batch is not None and batch.append(key=key, value=value, timestamp=None) is not None:
            return
        if batch is not None:  # full: sent as it is, and the record starts the next one
            await self._submit(partition)
        try:
            batch = self._open[partition] = self._producer().create_batch()
        except Exception as exc:  # noqa: BLE001 -- no producer: the caller's batch must not commit
            self._sent.append(_failed(exc))
            return
        batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any record (Kafka sizes it)

    async def settled(self) -> None:
        """Submit every open batch and return once Kafka has acknowledged all since the last call; raise what it
        refused (every batch is awaited first, so nothing is left over for the next call)."""
        for partition in list(self._open):
            await self._submit(partition)
        sent, self._sent = self._sent, []
        failures = [result for result in await asyncio.gather(*sent, return_exceptions=True)
                    if isinstance(result, BaseException)]
        if failures:
            raise failures[0]

    async def _submit(self, partition: int) -> None:
        batch = self._open.pop(partition)
        count = batch.record_count()
        try:
            sent = await self._producer().send_batch(batch, self.topic, partition=partition)
        except Exception as exc:  # noqa: BLE001 -- as in write()
            sent = _failed(exc)
        sent.add_done_callback(lambda done: self._acknowledged(done, count))
        self._sent.append(sent)

    def _acknowledged(self, sent: asyncio.Future, count: int) -> None:
        """A batch Kafka took: the store learns its last record's offset, as faust's table learns each record's."""
        if sent.cancelled() or sent.exception() is not None:  # raised by settled()
            return
        first: RecordMetadata = sent.result()
        last = asyncio.get_running_loop().create_future()
        last.set_result(first._replace(offset=first.offset + count - 1))
        self.table._on_changelog_sent(last)  # reads only the RecordMetadata of the future

    def _producer(self) -> Any:
        """The aiokafka producer faust's ``send`` uses for a record outside a transaction."""
        return self.app.producer._ensure_producer()


def _failed(exc: Exception) -> asyncio.Future:
    failed = asyncio.get_running_loop().create_future()
    failed.set_exception(exc)
    return failed


"""Changelog ends asked of the broker, so an exactly-once worker's recovery sees every committed record.

Before recovering a table faust takes each changelog partition's end from the
consumer's ``highwaters()``. Under exactly-once (a ``read_committed`` consumer)
faust-streaming answers from aiokafka's ``last_stable_offset(tp)``, which is only
the value carried by the last *fetch response* of that partition: ``None`` until
the partition has been fetched once. A restarted worker asks right after its
assignment, so unless a fetch of the changelog happened to come back first (a
small changelog, quickly fetched), faust reads the end as -1, believes the
changelog empty and recovers nothing; the gallery comes back empty although every
record is committed.

Here the end is always asked of the broker with ``end_offsets`` (ListOffsets).
aiokafka sends that request with the consumer's isolation level, so under
``read_committed`` the broker answers the last stable offset itself: the end of the
committed records, never an open transaction's. Offsets past the last record
(the final commit marker) are what faust's recovery already skips as "aborted tx
until highwater" once the fetch position passes them.
"""

from __future__ import annotations

from collections.abc import Mapping

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP


class BrokerHighwatersThread(AIOKafkaConsumerThread):
    """faust's aiokafka consumer thread; changelog ends come from the broker under either isolation level."""

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        return await self._ensure_consumer().end_offsets(partitions)

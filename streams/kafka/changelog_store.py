"""A faust table whose active changelog partitions are read in bulk on assignment, then handed to faust's recovery.

faust's memory store keeps nothing across restarts, so faust replays a table's
whole changelog event by event (:mod:`streams.kafka.changelog`: about 6,000
records a second). :class:`ChangelogStore` is that memory store, but when a
rebalance gives it an active changelog partition it does not hold, it first reads
the partition to its end in bulk with librdkafka, and then reports the last
offset it read as *persisted*: faust's recovery, which starts each partition
after its persisted offset, replays only what was written meanwhile. It keeps the
persisted offsets current as faust applies replayed records and acknowledges the
table's own writes, so a later rebalance that keeps a partition replays nothing
twice. Standby partitions are recovered by faust as before.

The store also knows the partition of every key it holds, written live
(:meth:`ChangelogStore.put`) or read back, so that faust drops exactly the keys
of partitions that moved to another worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Set
from typing import Any

import faust
from faust.stores import memory
from faust.types import TP, EventT

from streams import metrics
from streams.config import Settings
from streams.kafka.changelog import read_changelog

log = logging.getLogger(__name__)

#: A bulk read that hears nothing from the broker this long gives up; faust's own recovery takes over.
IDLE_S = 60.0


class ChangelogStore(memory.Store):
    """faust's memory store, each newly assigned active changelog partition read in bulk before faust recovers it."""

    def __init__(self, settings: Settings, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._settings = settings
        self._persisted: dict[TP, int] = {}

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        """``store[key] = value`` of a live write to changelog ``partition``."""
        self.data[key] = value
        self._key_partition[key] = partition

    def erase(self, key: bytes) -> bool:
        """Forget ``key`` (a live delete); whether it was held."""
        self._key_partition.pop(key, None)
        return self.data.pop(key, None) is not None

    def persisted_offset(self, tp: TP) -> int | None:
        return self._persisted.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        """faust's word that a write of the table reached ``offset`` (at-least-once: acknowledged; else committed)."""
        if tp in self._persisted:
            self._persisted[tp] = max(self._persisted[tp], offset)

    def apply_changelog_batch(
        self, batch: Iterable[EventT], to_key: Callable[[Any], Any], to_value: Callable[[Any], Any]
    ) -> None:
        events = list(batch)
        super().apply_changelog_batch(events, to_key, to_value)
        for event in events:
            self.set_persisted_offset(event.message.tp, event.message.offset)

    async def on_rebalance(
        self, assigned: Set[TP], revoked: Set[TP], newly_assigned: Set[TP], generation_id: int = 0
    ) -> None:
        topics = self.table.changelog_topic.topics
        standbys = self.app.assignor.assigned_standbys()
        active = {tp for tp in assigned if tp.topic in topics and tp not in standbys}
        # A partition revoked or become a standby is no longer kept whole here (faust drops its keys).
        self._persisted = {tp: offset for tp, offset in self._persisted.items() if tp in active}
        unread = active - self._persisted.keys()
        if unread:
            await self._read(unread)

    async def _read(self, tps: Set[TP]) -> None:
        topic = next(iter(tps)).topic
        partitions = {tp.partition for tp in tps}
        started = time.perf_counter()
        try:
            state = await asyncio.to_thread(read_changelog, self._settings, topic, partitions, idle_s=IDLE_S)
        except Exception as exc:  # noqa: BLE001 -- the broker or the read failed: faust replays, slowly but surely
            log.warning("bulk read of %s partitions %s failed (%s): faust recovers them event by event",
                        topic, sorted(partitions), exc)
            return
        stale = [key for key, partition in self._key_partition.items() if partition in partitions]
        for key in stale:  # what a standby copy or an earlier assignment held: the read has it as it is now
            self.data.pop(key, None)
            del self._key_partition[key]
        self.data.update(state.values)
        self._key_partition.update(state.partition_of)
        for tp in tps:
            self._persisted[tp] = state.ends[tp.partition] - 1  # faust's persisted offset: the last one applied
        seconds = time.perf_counter() - started
        metrics.CHANGELOG_READ_SECONDS.observe(seconds)
        log.info("read %d live records of %s partitions %s in bulk in %.2f s", len(state.values), topic,
                 sorted(partitions), seconds)


class BulkRecoveredTable(faust.Table):
    """A faust table kept in a :class:`ChangelogStore`; declared through :func:`bulk_recovered_table`."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        self._settings = settings
        super().__init__(*args, **kwargs)

    def _new_store(self) -> ChangelogStore:
        return ChangelogStore(
            self._settings, "memory://", self.app, self, table_name=self.name, key_type=self.key_type,
            key_serializer=self.key_serializer, value_type=self.value_type, value_serializer=self.value_serializer,
            loop=self.loop, options=self.options,
        )


def bulk_recovered_table(app: faust.App, name: str, settings: Settings, **kwargs: Any) -> BulkRecoveredTable:
    """What ``app.Table(name, **kwargs)`` declares, kept in a :class:`ChangelogStore`."""
    table = BulkRecoveredTable(app, name=name, beacon=app.tables.beacon, settings=settings, **kwargs)
    app.tables.add(table)
    return table

"""Consumer lag per partition, as Kafka sees it: high watermark minus the group's committed offset.

Read from the broker, not from faust's in-memory positions, because the
committed offset is what a restarted or rebalanced worker resumes from: a
worker that fetches but never commits (faust-streaming #312, #318) shows a
growing lag here although its consumer position advances.

Each worker reports the partitions it holds now, so the series of all workers
add up to the group's lag with no double counting, and a partition moved away
by a rebalance stops being reported by its former holder at the next refresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import faust
import mode
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition
from faust.exceptions import ConsumerNotStarted

from streams import metrics
from streams.config import Settings
from streams.errors import KafkaAuthenticationFailed
from streams.kafka_config import confluent_consumer

log = logging.getLogger(__name__)

Partition = tuple[str, int]


def partition_lag(low: int, high: int, committed: int) -> int:
    """Records of one partition the group has not committed yet.

    With nothing committed the group starts from the earliest offset (faust's
    default ``auto_offset_reset``), so every retained record counts.
    """
    start = low if committed < 0 else committed
    return max(0, high - start)


class LagMonitor(mode.Service):
    """Refreshes ``facestream_consumer_lag`` every ``interval_s`` for the held partitions of ``topics``."""

    def __init__(self, app: faust.App, settings: Settings, topics: Iterable[str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.settings = settings
        self.topics = frozenset(topics)
        self.interval_s = settings.lag_interval_s
        self._reported: set[Partition] = set()
        self._client: Consumer | None = None

    async def on_start(self) -> None:
        # Same group id as the workers, but never subscribed: it only reads that group's committed offsets.
        conf = confluent_consumer(self.settings, group_id=self.app.conf.id, **{"client.id": f"{self.app.conf.id}-lag"})
        self._client = await asyncio.to_thread(Consumer, conf)

    async def on_stop(self) -> None:
        if self._client is not None:
            await asyncio.to_thread(self._client.close)
            self._client = None

    @mode.Service.task
    async def _refresh_periodically(self) -> None:
        async for _ in self.itertimer(self.interval_s, name="consumer-lag"):
            try:
                await self.refresh()
            except KafkaException as exc:
                # Keep the last values; a broker hiccup must not stop the monitor or the worker.
                log.warning("consumer lag not refreshed: %s", exc.args[0].str())
            except KafkaAuthenticationFailed as exc:  # credentials revoked: retrying cannot help
                log.error("consumer lag monitor stopped: %s", exc)
                return

    def held_partitions(self) -> set[Partition]:
        try:
            assigned = self.app.consumer.assignment()
        except ConsumerNotStarted:
            return set()
        return {(tp.topic, tp.partition) for tp in assigned if tp.topic in self.topics}

    async def refresh(self) -> dict[Partition, int]:
        """Read and publish the lag of every held partition; forget partitions no longer held."""
        held = self.held_partitions()
        lags = await asyncio.to_thread(self._read_lags, sorted(held)) if held else {}
        for topic, partition in self._reported - lags.keys():
            metrics.CONSUMER_LAG.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(lag)
        self._reported = set(lags)
        return lags

    def _read_lags(self, partitions: list[Partition]) -> dict[Partition, int]:
        assert self._client is not None, "LagMonitor.refresh() before start()"
        # Never subscribed, so nothing else polls: serve the queued error and log callbacks here.
        self._client.poll(0)
        timeout = max(1.0, self.interval_s)
        committed = self._client.committed([TopicPartition(t, p) for t, p in partitions], timeout=timeout)
        lags = {}
        for tp in committed:
            low, high = self._client.get_watermark_offsets(tp, timeout=timeout, cached=False)
            offset = OFFSET_INVALID if tp.error else tp.offset
            lags[(tp.topic, tp.partition)] = partition_lag(low, high, offset)
        return lags


def install_lag_monitor(app: faust.App, settings: Settings, topics: list[str]) -> LagMonitor:
    """Start a :class:`LagMonitor` with ``app`` (and stop it with it)."""
    monitor = LagMonitor(app, settings, topics)
    app.service(monitor)
    return monitor

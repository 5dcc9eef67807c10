"""Consumer lag per partition, as Kafka sees it: high watermark minus the group's committed offset.

Read from the broker, not from faust's in-memory positions, because the
committed offset is what a restarted or rebalanced worker resumes from: a
worker that fetches but never commits (faust-streaming #312, #318) shows a
growing lag here although its consumer position advances.

Each worker reports the partitions it holds now, so the series of all workers
add up to the group's lag with no double counting, and a partition moved away
by a rebalance stops being reported by its former holder at the next refresh.

The monitor is also the worker's witness of the broker for ``/readyz``: it
remembers when a broker last answered it, and since when each input topic has
had a backlog, so a stalled agent can be told from an idle one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import faust
import mode
from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, TopicPartition
from faust.exceptions import ConsumerNotStarted

from streams import metrics
from streams.config import Settings
from streams.errors import KafkaAuthenticationFailed
from streams.kafka.config import confluent_consumer

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

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        topics: Iterable[str],
        *,
        clock: Callable[[], float] = time.monotonic,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.settings = settings
        self.topics = frozenset(topics)
        self.interval_s = settings.lag_interval_s
        self.clock = clock
        #: Latest lag read from the broker, per held partition.
        self.lags: dict[Partition, int] = {}
        #: Monotonic time a broker last answered; the monitor's start until one has.
        self.broker_answered_at: float | None = None
        self._backlog_since: dict[str, float] = {}
        self._client: Consumer | None = None

    async def on_start(self) -> None:
        self.broker_answered_at = self.clock()
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
        lags = await asyncio.to_thread(self._read_lags, sorted(self.held_partitions()))
        self.observed(lags)
        return lags

    def observed(self, lags: dict[Partition, int]) -> None:
        """The broker answered just now with these lags: publish them, and note when each backlog began."""
        now = self.clock()
        self.broker_answered_at = now
        for topic, partition in self.lags.keys() - lags.keys():
            metrics.CONSUMER_LAG.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(topic=topic, partition=str(partition)).set(lag)
        self.lags = dict(lags)
        backlogged = {topic for (topic, _), lag in lags.items() if lag > 0}
        self._backlog_since = {topic: self._backlog_since.get(topic, now) for topic in backlogged}

    def backlog_since(self, topic: str) -> float | None:
        """Since when the held partitions of ``topic`` have had lag without a break; None when they have none."""
        return self._backlog_since.get(topic)

    def topic_lag(self, topic: str) -> int:
        """Latest lag of ``topic``, summed over its held partitions."""
        return sum(lag for (t, _), lag in self.lags.items() if t == topic)

    def _read_lags(self, partitions: list[Partition]) -> dict[Partition, int]:
        assert self._client is not None, "LagMonitor.refresh() before start()"
        # Never subscribed, so nothing else polls: serve the queued error and log callbacks here.
        self._client.poll(0)
        timeout = max(1.0, self.interval_s)
        if not partitions:
            # Holding nothing, still prove the broker answers (for /readyz): one topic's metadata is the cheapest ask.
            self._client.list_topics(topic=min(self.topics), timeout=timeout)
            return {}
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

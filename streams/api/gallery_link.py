"""Galleries through their one owner, Kafka: the API never holds a copy that could drift.

* A gallery query is a ``RerankQuery`` published to the queries topic keyed by
  gallery id (so it reaches the worker that holds the gallery), answered by the
  ``RerankResult`` or ``DeadLetter`` with its query id: one reader thread
  follows the results and dead-letter topics from where they ended when the
  link started, and hands each answer to the request waiting for it.
* Enrolment and deletion are ``GalleryEntry`` records on the gallery topic,
  answered once Kafka has acknowledged them; the workers apply them.
* A gallery's size, dimension and model are read, per request, from the
  changelog of the workers' gallery table: the entries the workers accepted
  and hold now (refused ones never reach it), on the one partition the gallery
  lives on, up to its end when the request came. Nothing is kept between requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from typing import Any

from aiokafka.partitioner import murmur2
from confluent_kafka import Consumer, KafkaError, Message
from confluent_kafka.admin import AdminClient

from ..agents.gallery_keeper import TABLE_NAME, gallery_of
from ..codecs import AvroCodec
from ..config import Settings
from ..errors import ErrorCode, RecordError
from ..kafka import Producer, TopicNames, confluent_consumer, end_offsets, messages
from ..kafka.changelog import read_changelog
from ..kafka.config import confluent_common
from ..readiness import CheckResult
from .problems import NOT_SENT, TIMEOUT, Problem

log = logging.getLogger(__name__)

#: How long one poll of the reader thread blocks, so it notices a stop this fast.
POLL_S = 0.2
#: Longest wait for a broker's metadata while checking readiness.
BROKER_CHECK_S = 2.0
#: Once a flush returned, how long its delivery report may take to reach the event loop.
DELIVERY_REPORT_S = 1.0


def changelog_topic(settings: Settings) -> str:
    """The changelog faust keeps for the workers' gallery table (``<app id>-<table>-changelog``)."""
    return f"{settings.app_id}-{TABLE_NAME}-changelog"


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Java's (and aiokafka's, and our producers') partitioner gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class GalleryLink:
    """The API's Kafka side: publish with acknowledgement, ask and await an answer, read a gallery's facts."""

    def __init__(self, settings: Settings, codec: AvroCodec) -> None:
        self.settings = settings
        self.codec = codec
        self.topics = TopicNames.from_settings(settings)
        self._producer: Producer | None = None
        self._admin: AdminClient | None = None
        self._waiting: dict[str, asyncio.Future[tuple[str, dict[str, Any]]]] = {}
        self._reader: threading.Thread | None = None
        self._started = asyncio.Lock()
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- publishing ----------------------------------------------------------
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.settings, flush_s=self.settings.api_timeout_s)
        return self._producer

    async def publish(self, schema: str, topic: str, key: bytes, record: dict[str, Any]) -> None:
        """Encode and publish one record; returns once Kafka has acknowledged it (503 NOT_SENT otherwise)."""
        value = await asyncio.to_thread(self.codec.encode, schema, record, topic=topic)  # may ask the registry
        loop = asyncio.get_running_loop()
        delivered: asyncio.Future[KafkaError | None] = loop.create_future()

        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            loop.call_soon_threadsafe(lambda: delivered.done() or delivered.set_result(error))

        producer = self.producer()
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
        await asyncio.to_thread(producer.flush)  # serves the delivery callbacks
        try:
            error = await asyncio.wait_for(delivered, DELIVERY_REPORT_S)
        except TimeoutError:
            error = "no acknowledgement in time"
        if error is not None:
            raise Problem(NOT_SENT, f"Kafka did not take the {schema}: {error}")

    # --- request / reply -----------------------------------------------------
    async def ask(self, query: dict[str, Any]) -> dict[str, Any]:
        """Publish a RerankQuery and return its RerankResult; its dead letter is the request's problem."""
        await self._start_reader()
        query_id = query["query_id"]
        answer = self._waiting[query_id] = asyncio.get_running_loop().create_future()
        try:
            await self.publish("RerankQuery", self.topics.queries, query["gallery_id"].encode(), query)
            name, record = await answer
        finally:
            self._waiting.pop(query_id, None)
        if name == "DeadLetter":
            raise Problem(record["error_code"], record["message"])
        return record

    async def _start_reader(self) -> None:
        async with self._started:
            if self._reader is not None:
                return
            self._loop = asyncio.get_running_loop()
            consumer = Consumer(confluent_consumer(self.settings, group_id=f"facestream-api-{uuid.uuid4().hex[:8]}"))
            try:
                # Fixed before any query is sent: no answer can come before the reader listens.
                ends = await asyncio.to_thread(end_offsets, consumer, [self.topics.rerank_results, self.topics.dlq])
            except Exception as exc:
                consumer.close()
                raise Problem(NOT_SENT, f"Kafka is not reachable: {exc}"[:1000]) from None
            consumer.assign(ends)
            self._reader = threading.Thread(target=self._read, args=(consumer,), name="gallery-replies", daemon=True)
            self._reader.start()

    def _read(self, consumer: Consumer) -> None:
        """The reader thread: every answer on the results and dead-letter topics to the request awaiting it."""
        try:
            for msg in messages(consumer, until=self._stop.is_set, poll_s=POLL_S):
                try:
                    answer = self._answer_in(msg.value())
                except Exception:  # e.g. the registry down for a moment: that record is lost to us, not the thread
                    log.exception("cannot read the answer at %s[%d]@%d", msg.topic(), msg.partition(), msg.offset())
                    continue
                if answer is not None:
                    self._loop.call_soon_threadsafe(self._hand_over, *answer)
        finally:
            consumer.close()

    def _answer_in(self, value: bytes | None) -> tuple[str, str, dict[str, Any]] | None:
        """(query id, schema, record) when ``value`` answers a query; None for anybody else's records."""
        try:
            name, record = self.codec.decode_named(value or b"")
            if name == "RerankResult":
                return record["query_id"], name, record
            if name == "DeadLetter" and record["source"]["topic"] == self.topics.queries:
                query = self.codec.decode(record["value"] or b"", expect="RerankQuery")
                return query["query_id"], name, record
        except (RecordError, KeyError, TypeError):
            pass  # not an answer, or a dead letter whose query we cannot read back (not one of ours)
        return None

    def _hand_over(self, query_id: str, name: str, record: dict[str, Any]) -> None:
        waiter = self._waiting.get(query_id)
        if waiter is not None and not waiter.done():
            waiter.set_result((name, record))

    # --- a gallery's facts ---------------------------------------------------
    async def describe(self, gallery_id: str) -> dict[str, Any]:
        """Size, dimension and model of a gallery, as the workers hold it; 404 UNKNOWN_GALLERY when empty."""
        return await asyncio.to_thread(self._describe, gallery_id, time.monotonic() + self.settings.api_timeout_s)

    def _describe(self, gallery_id: str, deadline: float) -> dict[str, Any]:
        topic = changelog_topic(self.settings)
        metadata = self._admin_client().list_topics(topic, timeout=max(0.1, deadline - time.monotonic())).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise Problem(ErrorCode.UNKNOWN_GALLERY, f"no gallery {gallery_id!r}: no worker has kept a gallery yet")
        partition = partition_of(gallery_id.encode(), len(metadata.partitions))
        try:
            state = read_changelog(self.settings, topic, [partition], deadline=deadline,
                                   keep=lambda key: gallery_of(key) == gallery_id)
        except TimeoutError:
            raise Problem(TIMEOUT, f"the changelog of gallery {gallery_id!r} was not read in time") from None
        return self._facts(gallery_id, list(state.values.values()))

    def _facts(self, gallery_id: str, values: list[bytes]) -> dict[str, Any]:
        records = [self.codec.decode(value, expect="GalleryEntry") for value in values]
        if not records:
            raise Problem(ErrorCode.UNKNOWN_GALLERY, f"no gallery {gallery_id!r}")
        latest = max(records, key=lambda r: r["produced_at"])
        return {
            "gallery_id": gallery_id,
            "size": len({r["subject_id"] for r in records}),
            "dimension": len(latest["embedding"]),
            "model": latest["model"],
        }

    # --- operations ----------------------------------------------------------
    async def check_broker(self) -> CheckResult:
        """Whether a broker answers a metadata request now (readiness)."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self._metadata), BROKER_CHECK_S + 1)
        except Exception as exc:  # noqa: BLE001 -- any failure means not ready, with its reason
            return CheckResult("broker", False, f"{type(exc).__name__}: {str(exc)[:200]}")
        return CheckResult("broker", True, "a broker answered")

    def _metadata(self) -> None:
        self._admin_client().list_topics(timeout=BROKER_CHECK_S)

    def _admin_client(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient(confluent_common(self.settings))
        return self._admin

    async def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, POLL_S * 10)
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush)

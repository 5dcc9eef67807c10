"""The topics facestream reads and writes, and their declaration on the cluster.

Topics are created up front with an admin client (the broker's automatic topic
creation is off in production clusters and in ``scripts/kafka-local``), with
partitions, replication and ``max.message.bytes`` from the settings, so image
payloads fit everywhere under the same limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streams.config import Settings
from streams.kafka.config import confluent_common

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicNames:
    images: str
    embeddings: str
    dlq: str
    gallery: str
    queries: str
    rerank_results: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicNames:
        return cls(
            images=settings.topic("images"),
            embeddings=settings.topic("embeddings"),
            dlq=settings.topic("dlq"),
            gallery=settings.topic("gallery"),
            queries=settings.topic("queries"),
            rerank_results=settings.topic("rerank-results"),
        )

    def all(self) -> list[str]:
        return [self.images, self.embeddings, self.dlq, self.gallery, self.queries, self.rerank_results]

    def written_by_workers(self) -> list[tuple[str, str]]:
        """(schema name, topic) of every record a worker writes: the subjects it registers before its first batch."""
        return [("FaceEmbeddings", self.embeddings), ("DeadLetter", self.dlq), ("RerankResult", self.rerank_results)]


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the missing topics; return the names created. Existing topics are left as they are."""
    admin = AdminClient(confluent_common(settings))
    config = {"max.message.bytes": str(settings.max_message_bytes)}
    wanted = [
        NewTopic(name, settings.topic_partitions, settings.topic_replication, config=config)
        for name in TopicNames.from_settings(settings).all()
    ]
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        log.info("created topics %s", created)
    _wait_for_leaders(admin, [t.topic for t in wanted], timeout_s)
    return created


def _wait_for_leaders(admin: AdminClient, topics: list[str], timeout_s: float) -> None:
    """Return once every partition of ``topics`` has a leader: a topic is usable only then."""
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=timeout_s).topics
        leaderless = [
            name
            for name in topics
            if name not in metadata
            or metadata[name].error is not None
            or any(p.leader < 0 for p in metadata[name].partitions.values())
        ]
        if not leaderless:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without partition leaders after {timeout_s:g} s: {leaderless}")
        time.sleep(0.2)


def end_offsets(consumer: Consumer, topics: list[str], timeout_s: float = 10.0) -> list[TopicPartition]:
    """Every partition of ``topics`` at its current end: assigned, a reader sees only what comes after now."""
    ends = []
    for topic in topics:
        for partition in consumer.list_topics(topic, timeout=timeout_s).topics[topic].partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
            ends.append(TopicPartition(topic, partition, high))
    return ends

"""Commands that publish, without a broker: what they would have sent to Kafka, decoded."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streams.cli import _common
from streams.codecs import AvroCodec


class RecordingProducer:
    """Stands in for :class:`streams.kafka.Producer`: every record is acknowledged at once and kept."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, bytes]] = []
        self.acked = self.failed = self.unsent = 0

    def produce(self, topic: str, *, key: bytes, value: bytes) -> None:
        self.records.append((topic, key, value))
        self.acked += 1

    def flush(self) -> int:
        return 0

    def __enter__(self) -> RecordingProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def published(monkeypatch) -> Callable[[], list[tuple[str, str, dict]]]:
    """(topic, key, decoded value) of each record a command has published so far; no broker is asked anything."""
    producer = RecordingProducer()
    monkeypatch.setattr(_common, "verify_kafka_credentials", lambda settings: None)
    monkeypatch.setattr(_common.KafkaCommand, "producer", lambda self, flush_s: producer)
    codec = AvroCodec()
    return lambda: [(topic, key.decode(), codec.decode(value)) for topic, key, value in producer.records]

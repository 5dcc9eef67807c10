"""Read a facestream topic back in tests: decoded records with their Kafka coordinates."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer

from streams.codecs import AvroCodec
from streams.config import Settings
from streams.kafka import confluent_consumer, messages


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    headers: dict[str, bytes]
    schema: str
    record: dict[str, Any]


def read_topic(
    settings: Settings,
    topic: str,
    *,
    until: Callable[[list[Received]], bool],
    timeout_s: float = 60.0,
    settle_s: float = 0.0,
    isolation: str = "read_committed",
    codec: AvroCodec | None = None,
) -> list[Received]:
    """Everything on ``topic`` from the beginning, until ``until(records)`` holds (then ``settle_s`` more).

    ``codec``: one that already holds the schemas it will need (a reader while the registry is down).
    """
    codec = codec or AvroCodec.from_settings(settings)
    consumer = Consumer(
        confluent_consumer(settings, group_id=f"test-reader-{uuid.uuid4().hex[:8]}", **{"isolation.level": isolation})
    )
    consumer.subscribe([topic])
    records: list[Received] = []
    settle_until = None

    def settled() -> bool:
        nonlocal settle_until
        if settle_until is None and until(records):
            settle_until = time.monotonic() + settle_s
        return settle_until is not None and time.monotonic() >= settle_until

    try:
        for msg in messages(consumer, timeout_s=timeout_s, until=settled):
            schema, record = codec.decode_named(msg.value())
            records.append(
                Received(msg.topic(), msg.partition(), msg.offset(), msg.key(), dict(msg.headers() or []), schema, record)
            )
    finally:
        consumer.close()
    return records

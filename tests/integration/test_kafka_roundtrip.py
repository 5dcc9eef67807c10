"""The real broker carries facestream records: produce with confluent-kafka, consume them back."""

from __future__ import annotations

import hashlib
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from streams.codecs import AvroCodec
from streams.kafka import TopicNames, confluent_consumer, confluent_producer, ensure_topics, messages

pytestmark = pytest.mark.integration


def test_topics_are_declared_once_with_the_size_limit(stream_settings):
    created = ensure_topics(stream_settings)
    assert sorted(created) == sorted(TopicNames.from_settings(stream_settings).all())
    assert ensure_topics(stream_settings) == []


def test_image_events_roundtrip_through_the_broker(stream_settings, photo_bytes):
    ensure_topics(stream_settings)
    topic = TopicNames.from_settings(stream_settings).images
    codec = AvroCodec()
    # The biggest payload the settings allow must pass broker, topic, producer and consumer limits.
    big = bytes(stream_settings.max_image_bytes)
    payloads = {**photo_bytes, "big.bin": big}
    producer = Producer(confluent_producer(stream_settings))
    errors = []
    for name, data in payloads.items():
        value = codec.encode("ImageEvent", {"id": name, "image": data, "produced_at": int(time.time() * 1000)})
        producer.produce(topic, key=name.encode(), value=value, on_delivery=lambda err, msg: errors.append(err))
    assert producer.flush(30) == 0
    assert [str(e) for e in errors if e is not None] == [] and len(errors) == len(payloads)

    consumer = Consumer(confluent_consumer(stream_settings, group_id=f"{stream_settings.app_id}-roundtrip"))
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    received = {}
    for msg in messages(consumer, timeout_s=120, until=lambda: len(received) >= len(payloads), poll_s=1.0):
        event = codec.decode(msg.value(), expect="ImageEvent")
        assert msg.key().decode() == event["id"]
        received[event["id"]] = event["image"]
    watermarks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    consumer.close()
    assert sum(high - low for low, high in watermarks.values()) == len(payloads), watermarks
    # Compare digests: a failed comparison of 16 MiB payloads would make pytest diff them for minutes.
    assert sorted(received) == sorted(payloads), f"missing: {sorted(set(payloads) - set(received))}"
    digest = {name: hashlib.sha256(data).hexdigest() for name, data in payloads.items()}
    assert {name: hashlib.sha256(data).hexdigest() for name, data in received.items()} == digest

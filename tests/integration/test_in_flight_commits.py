"""Two batches in flight, one of them slow: the committed offset never passes it, and a crash does not lose it.

With ``agent_concurrency`` = 2 the actors take alternating events of one
partition. faust alone committed past an event still in flight when the other
actor answered later ones; after a SIGKILL that event was never processed.
"""

from __future__ import annotations

import time
import uuid

import pytest
from confluent_kafka import OFFSET_INVALID, Consumer, Producer, TopicPartition

from streams.cli.produce import image_event
from streams.codecs import AvroCodec
from streams.kafka import TopicNames, confluent_consumer, confluent_producer, ensure_topics
from tests.support.ports import free_port
from tests.support.topics import read_topic
from tests.support.worker import WorkerProcess

pytestmark = pytest.mark.integration

GOOD = 9


def committed_offset(settings, topic: str) -> int:
    """The worker group's committed offset of partition 0 (OFFSET_INVALID when none)."""
    conf = confluent_consumer(settings, group_id=settings.app_id, **{"client.id": f"probe-{uuid.uuid4().hex[:6]}"})
    consumer = Consumer(conf)
    try:
        (tp,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset
    finally:
        consumer.close()


def test_a_slow_event_holds_the_commit_and_is_answered_after_a_crash(stream_settings, photo_bytes, tmp_path):
    settings = stream_settings.replace(  # a static member comes back on the same web address (faust's assignor checks it)
        topic_partitions=1, agent_concurrency=2, max_batch=1, max_wait_ms=10, group_instance_id="in-flight-0",
        web_port=free_port(),
    )
    topics = TopicNames.from_settings(settings)
    ensure_topics(settings)
    codec = AvroCodec()
    producer = Producer(confluent_producer(settings))
    ids = ["slow-0", *(f"good-{n}" for n in range(1, GOOD + 1))]
    for event_id in ids:
        record = image_event(event_id, photo_bytes["obama.jpg"], "image/jpeg", "obama.jpg")
        producer.produce(topics.images, key=event_id.encode(), value=codec.encode("ImageEvent", record), partition=0)
    assert producer.flush(30) == 0

    slow = WorkerProcess(settings, tmp_path / "slow.log", module="tests.support.slow_worker",
                         env={"FACESTREAM_TEST_SLOW_S": "300"})
    with slow:
        answered = read_topic(settings, topics.embeddings, until=lambda r: len(r) >= 3, timeout_s=90)
        assert "slow-0" not in {r.record["image_id"] for r in answered}
        time.sleep(3)  # three commit intervals: anything committable is committed by now
        held = committed_offset(settings, topics.images)
        slow.kill()
    assert held in (OFFSET_INVALID, 0), f"committed offset {held} passes the slow event at offset 0"

    with WorkerProcess(settings, tmp_path / "restarted.log"):
        outputs = read_topic(settings, topics.embeddings, until=lambda r: "slow-0" in {x.record["image_id"] for x in r},
                             timeout_s=90)
    assert {r.record["image_id"] for r in outputs} == set(ids)

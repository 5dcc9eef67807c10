"""The producer and the read loop without a broker: librdkafka against a closed port, and scripted polls.

tests/integration/test_kafka_roundtrip.py drives both against a real broker.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, Message

from streams.config import Settings
from streams.kafka import Producer, confluent_consumer, messages

NO_BROKER = Settings(kafka_bootstrap_servers="127.0.0.1:1")


class ScriptedConsumer:
    """Answers each poll with the next scripted message; None (scripted, or after the script) waits the timeout."""

    def __init__(self, *script: Message | None) -> None:
        self.script = list(script)
        self.polls: list[float] = []

    def poll(self, timeout: float) -> Message | None:
        self.polls.append(timeout)
        msg = self.script.pop(0) if self.script else None
        if msg is None:
            time.sleep(timeout)
        return msg


def record(offset: int) -> Message:
    return Message(topic="t", partition=0, offset=offset, value=b"%d" % offset)


def test_records_are_yielded_and_error_events_handed_over():
    down = KafkaError(KafkaError._TRANSPORT, "broker down")
    consumer = ScriptedConsumer(record(0), None, Message(error=down), record(1))
    errors = []
    read = messages(consumer, timeout_s=0.3, poll_s=0.01, on_error=errors.append)
    assert [m.offset() for m in read] == [0, 1]
    assert [e.str() for e in errors] == ["broker down"]


def test_until_is_asked_before_every_poll_even_while_nothing_arrives():
    consumer = ScriptedConsumer()
    assert list(messages(consumer, until=lambda: len(consumer.polls) == 3, poll_s=0.01)) == []
    assert len(consumer.polls) == 3


def test_until_stops_the_read_before_the_next_record():
    consumer = ScriptedConsumer(record(0), record(1), record(2))
    taken = []
    for msg in messages(consumer, until=lambda: len(taken) == 2):
        taken.append(msg.offset())
    assert taken == [0, 1] and len(consumer.script) == 1


def test_the_idle_clock_restarts_with_each_record_but_not_with_an_error_event():
    blip = Message(error=KafkaError(KafkaError._TRANSPORT, "blip"))
    # Polls of 0.05 s, idle after 0.175 s: records 0.1 s apart keep the read alive, an error event does not.
    consumer = ScriptedConsumer(
        record(0), None, None, record(1), None, None, record(2), None, None, blip, None, None, record(3)
    )
    assert [m.offset() for m in messages(consumer, idle_s=0.175, poll_s=0.05)] == [0, 1, 2]
    assert consumer.script[-1].offset() == 3


def test_the_deadline_ends_a_read_of_a_real_consumer_and_caps_its_last_poll():
    consumer = Consumer(confluent_consumer(NO_BROKER, group_id="unit-read-loop"))
    try:
        started = time.monotonic()
        assert list(messages(consumer, timeout_s=0.25, poll_s=0.2)) == []
        assert 0.25 <= time.monotonic() - started < 0.38  # two full polls would take 0.4 s
    finally:
        consumer.close()


def test_a_full_local_queue_waits_for_room_and_every_record_is_accounted_for():
    seen = []

    def delivered(error, msg):
        seen.append((msg.key(), error.code()))

    # One record fits in the queue; it leaves it when its 200 ms delivery timeout fails it (no broker).
    limits = {"queue.buffering.max.messages": 1, "message.timeout.ms": 200}
    with Producer(NO_BROKER, flush_s=10, on_delivery=delivered, **limits) as producer:
        producer.produce("t", key=b"a", value=b"1")
        producer.produce("t", key=b"b", value=b"2")  # BufferError inside, until "a" has failed
    assert seen == [(b"a", KafkaError._MSG_TIMED_OUT), (b"b", KafkaError._MSG_TIMED_OUT)]
    assert (producer.acked, producer.failed, producer.unsent) == (0, 2, 0)


def test_leaving_the_block_flushes_and_counts_what_is_still_queued():
    with Producer(NO_BROKER, flush_s=0.2) as producer:
        producer.produce("t", key=b"a", value=b"1")
    assert (producer.acked, producer.failed, producer.unsent) == (0, 0, 1)


def test_an_exception_leaving_the_block_is_not_held_up_by_a_flush():
    producer = Producer(NO_BROKER, flush_s=30)
    started = time.monotonic()
    with pytest.raises(RuntimeError), producer:
        producer.produce("t", key=b"a", value=b"1")
        raise RuntimeError("the caller failed")
    assert time.monotonic() - started < 5 and producer.unsent == 0

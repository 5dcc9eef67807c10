"""A compacted changelog read to its end in bulk (:mod:`streams.kafka.changelog`), on the real broker.

What a worker's recovery and the API's gallery facts both rest on: the latest
value of every key, tombstones honoured, partitions kept apart, and under
``read_committed`` nothing of a transaction that was aborted or is still open.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.kafka import Producer, confluent_producer
from streams.kafka.changelog import read_changelog
from streams.kafka.config import confluent_common

pytestmark = pytest.mark.integration


def _topic(settings, partitions: int = 3) -> str:
    name = f"{settings.topic_prefix}changelog"
    admin = AdminClient(confluent_common(settings))
    admin.create_topics([NewTopic(name, partitions, 1, config={"cleanup.policy": "compact"})])[name].result(30)
    deadline = time.monotonic() + 30
    while len(admin.list_topics(name, timeout=10).topics[name].partitions) < partitions:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return name


def test_the_latest_value_of_every_key_by_partition_with_tombstones_applied(stream_settings):
    topic = _topic(stream_settings)
    with Producer(stream_settings, flush_s=30) as producer:
        for i in range(3000):
            producer.produce(topic, key=b"k%d" % (i % 1000), value=b"v%d" % i, partition=i % 1000 % 2)
        for i in range(0, 1000, 10):
            producer.produce(topic, key=b"k%d" % i, value=None, partition=i % 2)
    state = read_changelog(stream_settings, topic, [0, 1, 2], idle_s=30)
    live = [i for i in range(1000) if i % 10]
    assert state.values == {b"k%d" % i: b"v%d" % (2000 + i) for i in live}
    assert state.partition_of == {b"k%d" % i: i % 2 for i in live}
    assert state.ends == {0: 1600, 1: 1500, 2: 0}  # 1500 values each, the 100 tombstones on 0, the third empty

    only = read_changelog(stream_settings, topic, [1], idle_s=30, keep=lambda key: key.endswith(b"1"))
    assert only.values == {b"k%d" % i: b"v%d" % (2000 + i) for i in live if i % 10 == 1}
    assert only.ends == {1: 1500}


def test_aborted_and_open_transactions_are_not_read(stream_settings):
    topic = _topic(stream_settings, partitions=1)
    conf = confluent_producer(stream_settings)

    def transactional(tid: str) -> KafkaProducer:
        producer = KafkaProducer({**conf, "transactional.id": f"{topic}-{tid}"})
        producer.init_transactions(30)
        producer.begin_transaction()
        return producer

    committed = transactional("committed")
    committed.produce(topic, key=b"a", value=b"committed", partition=0)
    committed.commit_transaction(30)
    aborted = transactional("aborted")
    aborted.produce(topic, key=b"a", value=b"aborted", partition=0)
    aborted.produce(topic, key=b"b", value=b"aborted", partition=0)
    aborted.flush(30)
    aborted.abort_transaction(30)
    open_ = transactional("open")
    open_.produce(topic, key=b"c", value=b"open", partition=0)
    open_.flush(30)
    try:
        state = read_changelog(stream_settings, topic, [0], idle_s=30)
        assert state.values == {b"a": b"committed"}
        # 0 committed, 1 its marker, 2-3 aborted, 4 their marker, 5 the open transaction's first: the last stable offset
        assert state.ends[0] == 5
    finally:
        open_.abort_transaction(30)


def test_a_partition_the_broker_does_not_have_is_a_timeout_not_a_hang(stream_settings):
    topic = _topic(stream_settings, partitions=1)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"partitions \[5\]"):
        read_changelog(stream_settings, topic, [0, 5], idle_s=3)
    assert time.monotonic() - started < 20

"""The plain clients outside faust: one producer for publishing, one loop for reading records back.

Commands, scripts, benchmarks and tests publish through :class:`Producer` and
read through :func:`messages`, so a full local queue, the final flush, delivery
counts, deadlines and client error events are each handled once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from functools import partial
from types import TracebackType
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaError, Message

from streams.config import Settings
from streams.kafka.config import confluent_producer

DeliveryCallback = Callable[[KafkaError | None, Message], None]

#: While librdkafka's local queue is full, deliveries are served this long before the record is queued again.
QUEUE_FULL_WAIT_S = 0.1


class Producer:
    """confluent-kafka's producer as the project configures it, counting what Kafka acknowledged.

    A full local queue never fails :meth:`produce`: it drains as the broker
    acknowledges records (or they time out). Leaving the ``with`` block flushes
    for up to ``flush_s``; ``failed`` and ``unsent`` then say what was not
    delivered. An exception leaving the block skips the flush, so the error is
    not held up by a broker that does not answer.
    """

    def __init__(
        self, settings: Settings, *, flush_s: float, on_delivery: DeliveryCallback | None = None, **extra: Any
    ) -> None:
        self._producer = confluent_kafka.Producer(confluent_producer(settings, **extra))
        self._on_delivery = on_delivery
        self.flush_s = flush_s
        #: Records the broker acknowledged.
        self.acked = 0
        #: Records whose delivery failed.
        self.failed = 0
        #: Records still queued when the last flush gave up.
        self.unsent = 0

    def produce(
        self, topic: str, *, key: bytes, value: bytes, on_delivery: DeliveryCallback | None = None,
        partition: int | None = None,
    ) -> None:
        """Queue one record (to ``partition``, else the key's), waiting for room in the local queue when it is full;
        ``on_delivery`` hears of it alone."""
        delivered = self._delivered if on_delivery is None else partial(self._delivered, also=on_delivery)
        where = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, key=key, value=value, on_delivery=delivered, **where)
                break
            except BufferError:
                self._producer.poll(QUEUE_FULL_WAIT_S)
        self._producer.poll(0)

    def flush(self) -> int:
        """Wait up to ``flush_s`` for every queued record; how many are still queued."""
        self.unsent = self._producer.flush(self.flush_s)
        return self.unsent

    def _delivered(
        self, error: KafkaError | None, message: Message, also: DeliveryCallback | None = None
    ) -> None:
        if error is None:
            self.acked += 1
        else:
            self.failed += 1
        for callback in (self._on_delivery, also):
            if callback is not None:
                callback(error, message)

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.flush()


def messages(
    consumer: confluent_kafka.Consumer,
    *,
    timeout_s: float | None = None,
    idle_s: float | None = None,
    until: Callable[[], bool] | None = None,
    poll_s: float = 0.5,
    on_error: Callable[[KafkaError], None] | None = None,
) -> Iterator[Message]:
    """The records an assigned or subscribed ``consumer`` receives, until ``until()`` holds or time is up.

    ``until`` is asked before every poll, so the caller's condition ends the read
    even while nothing arrives; ``timeout_s`` bounds the whole read, ``idle_s``
    the wait for the next record. Error events are not records: they go to
    ``on_error`` (or are skipped) and never reset the idle clock. The caller
    owns the consumer: it assigns or subscribes before, and closes it after.
    """
    started = time.monotonic()
    deadline = math.inf if timeout_s is None else started + timeout_s
    idle_deadline = math.inf if idle_s is None else started + idle_s
    while until is None or not until():
        now = time.monotonic()
        stop_at = min(deadline, idle_deadline)
        if now >= stop_at:
            return
        msg = consumer.poll(min(poll_s, stop_at - now))
        if msg is None:
            continue
        if msg.error():
            if on_error is not None:
                on_error(msg.error())
            continue
        if idle_s is not None:
            idle_deadline = time.monotonic() + idle_s
        yield msg

"""Where an agent's output records go, so that delivery guarantees hold.

Every output goes to the partition of the input it answers (facestream's
topics are co-partitioned). Under at-least-once that is only tidy; under
exactly-once it is what makes the guarantee true: faust-streaming puts an
agent's output in a transaction only when the app also consumes the output
topic, so outputs to ``embeddings``, ``dlq`` or ``rerank-results`` would be
visible before their input's offset is committed, and replayed after a crash.
Here each output is written into the transaction of its input partition, the
one faust commits that partition's offsets in, and each batch is committed
before the next one writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from typing import Any

import faust
from faust.types import EventT

from ..config import Settings
from ..logs import trace_headers, traceparent_from_headers


class Outputs:
    """Sends the outputs of one input topic's agent."""

    def __init__(self, app: faust.App, settings: Settings, source: faust.TopicT, topics: Iterable[str]) -> None:
        self.app = app
        self.source = source
        self.exactly_once = settings.processing_guarantee == "exactly_once"
        self._topics = {name: app.topic(name, key_serializer="raw", value_serializer="raw") for name in topics}
        # Under exactly-once one batch at a time: a second batch's outputs must never ride along in
        # the transaction that commits the first batch's offsets.
        self.concurrency = 1 if self.exactly_once else settings.agent_concurrency

    async def send(self, topic: str, event: EventT, key: bytes | None, value: bytes) -> Awaitable[Any]:
        """Queue one output answering ``event``; the returned future resolves once Kafka acknowledged it."""
        partition = event.message.partition
        headers = trace_headers(traceparent_from_headers(event.message.headers))
        if self.exactly_once:
            return await self.app.producer.send(
                topic, key, value, partition, None, headers, transactional_id=self._transactional_id(partition)
            )
        return await self._topics[topic].send(key=key, value=value, partition=partition, headers=headers)

    async def batch_done(self, events: Sequence[EventT]) -> None:
        """Under exactly-once, commit the batch's offsets together with its outputs, now."""
        if not self.exactly_once:
            return  # faust acknowledges the events when the agent takes the next batch
        for event in events:
            event.ack()
        # Consumer.commit returns at once when a commit is in flight, and that one may have read the
        # acknowledged offsets before ours were added: a second call commits them or waits for one
        # that began after them.
        await self.app.consumer.commit()
        await self.app.consumer.commit()

    def _transactional_id(self, partition: int) -> str:
        # faust's own format (TransactionManager.transactional_id_format), for the source topic's group.
        group = self.app.assignor.group_for_topic(self.source.get_topic_name())
        return f"{self.app.conf.id}-{group}-{partition}"

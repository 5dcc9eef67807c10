"""Where an agent's output records go, and when its input events count as answered.

Exactly one output per input, by construction:

* :meth:`Outputs.answer` turns whatever happens while building one event's
  output into that event's output: a result, or a dead letter for a typed
  error, for any other exception (``PROCESSING_FAILED``), or for a result too
  large for a Kafka record. One event never fails another. An agent that works
  out a whole batch at once sends :meth:`Outputs.refuse` for each event it
  could not answer.
* :meth:`Outputs.batch` holds every event of a batch unacknowledged until Kafka
  has acknowledged all of its outputs. faust acknowledges a ``take_events``
  batch when the agent body finishes *or raises* (and when it is cancelled); the
  hold keeps such events uncommitted. If the batch machinery itself fails
  (Kafka refuses a send under exactly-once), the worker stops at once, without
  committing, and its successor reads the batch again.

Every output goes to the partition of the input it answers (facestream's
topics are co-partitioned). Under at-least-once that is only tidy; under
exactly-once it is what makes the guarantee true: faust-streaming puts an
agent's output in a transaction only when the app also consumes the output
topic, so outputs would be visible before their input's offset is committed,
and replayed after a crash. Here each output is written into the transaction of
its input partition, the one faust commits that partition's offsets in, and
each batch is committed before the next one writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import faust
from aiokafka.errors import MessageSizeTooLargeError, RecordTooLargeError
from faust.types import EventT

from ..backoff import backoff_delays
from ..bounds import fits
from ..context import WorkerContext
from ..errors import ErrorCode, RecordError
from ..logs import trace_headers, traceparent_from_headers
from ..shutdown import FORCED_EXIT_STATUS
from .dead_letter import dead_letter
from .output import Output

log = logging.getLogger(__name__)

#: References an event holds while its batch runs: the stream's own and the batch's hold.
HELD_REFERENCES = 2
TOO_LARGE = (MessageSizeTooLargeError, RecordTooLargeError)


class Outputs:
    """Sends the outputs of one input topic's agent."""

    def __init__(self, app: faust.App, ctx: WorkerContext, source: faust.TopicT, topics: Iterable[str]) -> None:
        self.app = app
        self.ctx = ctx
        self.source = source
        self.exactly_once = ctx.settings.processing_guarantee == "exactly_once"
        self._topics = {name: app.topic(name, key_serializer="raw", value_serializer="raw") for name in topics}
        # Under exactly-once one batch at a time: a second batch's outputs must never ride along in
        # the transaction that commits the first batch's offsets.
        self.concurrency = 1 if self.exactly_once else ctx.settings.agent_concurrency

    @contextlib.asynccontextmanager
    async def batch(self, events: Sequence[EventT]) -> AsyncIterator[None]:
        """Hold ``events`` while the body answers them; release them (and commit, under exactly-once) after."""
        for event in events:
            event.message.incref()
        try:
            # A registry outage makes the batch wait here, held and uncommitted, never dead-lettered.
            await self.ctx.schemas_ready(event.message.value for event in events)
            yield
        except Exception as exc:  # noqa: BLE001 -- any failure here means outputs may be missing: stop, commit nothing
            stop_unanswered(exc)
        for event in events:
            # Our hold and the stream's reference at once, so the offset is committable now; faust's own
            # acknowledgement after the body then finds the message acknowledged already.
            event.message.ack(self.app.consumer, HELD_REFERENCES)
        self.ctx.progress.answered(self.source.get_topic_name())
        if self.exactly_once:
            # Consumer.commit returns at once when a commit is in flight, and that one may have read the
            # acknowledged offsets before ours were added: a second call commits them or waits for one
            # that began after them.
            await self.app.consumer.commit()
            await self.app.consumer.commit()

    async def answer(self, event: EventT, build: Callable[[], Awaitable[Output | None]]) -> Awaitable[Any]:
        """Send the one output answering ``event``; the returned awaitable resolves once Kafka acknowledged it.

        ``build`` returns the output, or None when the event's effect is its output (a gallery entry's
        changelog record); whatever it raises makes the output a dead letter.
        """
        try:
            output = await build()
        except Exception as exc:  # noqa: BLE001 -- whatever one event raises is that event's dead letter
            return await self.refuse(event, exc)
        if output is None:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        size = len(output.key or b"") + len(output.value)
        if not fits(size, self.ctx.settings.max_message_bytes):
            too_large = f"the output of {size} bytes does not fit the record limit of {self.ctx.settings.max_message_bytes}"
            output = dead_letter(self.ctx, event, RecordError(ErrorCode.PAYLOAD_TOO_LARGE, too_large))
        return await self._sent(event, output)

    async def refuse(self, event: EventT, exc: Exception) -> Awaitable[Any]:
        """Send the dead letter saying why ``event`` has no other output (:meth:`answer`'s awaitable): a
        :class:`RecordError`'s code, else ``PROCESSING_FAILED``, logged with its traceback."""
        if not isinstance(exc, RecordError):
            log.error("event %s[%d]@%d failed", event.message.topic, event.message.partition, event.message.offset,
                      exc_info=exc)
            exc = RecordError.of(exc)
        return await self._sent(event, dead_letter(self.ctx, event, exc))

    async def _sent(self, event: EventT, output: Output) -> Awaitable[Any]:
        future = await self._send(event, output)
        return future if self.exactly_once else self._delivered(event, output, future)

    async def _delivered(self, event: EventT, output: Output, future: Awaitable[Any]) -> Any:
        """At-least-once: send again until Kafka takes the output (a dead letter, should it be refused as too large)."""
        delays = backoff_delays(self.ctx.settings)
        while True:
            try:
                return await future
            except TOO_LARGE as exc:
                output = dead_letter(self.ctx, event, RecordError(ErrorCode.PAYLOAD_TOO_LARGE, f"Kafka refused the output: {exc}"))
            except Exception as exc:  # noqa: BLE001 -- broker trouble: retrying keeps the event; giving up would lose it
                delay = next(delays)
                log.warning("output to %s not acknowledged (%s), sending again in %.1f s", output.topic, exc, delay)
                await asyncio.sleep(delay)
            future = await self._send(event, output)

    async def _send(self, event: EventT, output: Output) -> Awaitable[Any]:
        partition = event.message.partition
        headers = trace_headers(traceparent_from_headers(event.message.headers))
        if self.exactly_once:
            return await self.app.producer.send(
                output.topic, output.key, output.value, partition, None, headers,
                transactional_id=self._transactional_id(partition),
            )
        return await self._topics[output.topic].send(key=output.key, value=output.value, partition=partition, headers=headers)

    def _transactional_id(self, partition: int) -> str:
        # faust's own format (TransactionManager.transactional_id_format), for the source topic's group.
        group = self.app.assignor.group_for_topic(self.source.get_topic_name())
        return f"{self.app.conf.id}-{group}-{partition}"


def stop_unanswered(exc: BaseException) -> None:
    """The batch machinery failed: exit now, so no offset of an unanswered event can be committed."""
    log.critical("stopping the worker: a batch could not be answered (%s: %s); it is read again after restart",
                 type(exc).__name__, exc, exc_info=exc)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(FORCED_EXIT_STATUS)

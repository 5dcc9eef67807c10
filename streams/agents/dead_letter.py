"""Dead letters: what an agent publishes for a record it cannot use, instead of failing on it."""

from __future__ import annotations

import logging
import time

from faust.types import EventT

from .. import metrics
from ..context import WorkerContext
from ..errors import RecordError
from ..logs import log_context, traceparent_from_headers

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


def dead_letter_value(ctx: WorkerContext, event: EventT, error: RecordError) -> bytes:
    """The encoded ``DeadLetter`` for ``event``: its original bytes and coordinates, the code, the reason."""
    message = event.message
    with log_context(traceparent=traceparent_from_headers(message.headers)):
        log.info("dead-lettering %s[%d]@%d: %s", message.topic, message.partition, message.offset, error)
    metrics.DLQ_TOTAL.labels(error_code=error.code.value).inc()
    record = {
        "source": {"topic": message.topic, "partition": message.partition, "offset": message.offset},
        "key": message.key,
        "value": message.value,
        "error_code": error.code.value,
        "message": error.message,
        "at": now_ms(),
    }
    return ctx.codec.encode("DeadLetter", record, topic=ctx.topics.dlq)

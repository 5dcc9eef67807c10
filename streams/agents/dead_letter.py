"""Dead letters: what an agent publishes for a record it cannot use, instead of failing on it.

A dead letter always fits a Kafka record: a key longer than the id limit, or a
value too large to repeat beside it, is kept as its first bytes plus the
original length and SHA-256, so the record can still be identified and matched
to its source while the output stays bounded.
"""

from __future__ import annotations

import logging
import time

from faust.types import EventT

from .. import metrics
from ..bounds import clipped, fits
from ..context import WorkerContext
from ..errors import RecordError
from ..logs import log_context, traceparent_from_headers
from .output import Output

log = logging.getLogger(__name__)

#: Longest human-readable reason kept (exception messages can repeat their input).
MAX_MESSAGE_CHARS = 2000


def now_ms() -> int:
    return int(time.time() * 1000)


def dead_letter(ctx: WorkerContext, event: EventT, error: RecordError) -> Output:
    """The ``DeadLetter`` answering ``event``: its original bytes (or a bounded prefix), coordinates, code, reason."""
    message = event.message
    with log_context(traceparent=traceparent_from_headers(message.headers)):
        log.info("dead-lettering %s[%d]@%d: %s", message.topic, message.partition, message.offset, str(error)[:500])
    metrics.DLQ_TOTAL.labels(error_code=error.code.value).inc()
    if message.topic == ctx.topics.images:
        metrics.IMAGES_TOTAL.labels(result="dlq").inc()
    settings = ctx.settings
    key, key_size, key_sha256 = clipped(message.key, settings.max_id_bytes)
    value: bytes | None = message.value
    value_size = value_sha256 = None
    # The record carries the key twice (Kafka key and field), the value once, and the reason.
    if not fits(2 * len(key or b"") + len(value or b"") + 4 * MAX_MESSAGE_CHARS, settings.max_message_bytes):
        value, value_size, value_sha256 = clipped(value, settings.dead_letter_prefix_bytes)
    record = {
        "source": {"topic": message.topic, "partition": message.partition, "offset": message.offset},
        "key": key,
        "value": value,
        "error_code": error.code.value,
        "message": error.message[:MAX_MESSAGE_CHARS],
        "at": now_ms(),
        "key_size": key_size,
        "key_sha256": key_sha256,
        "value_size": value_size,
        "value_sha256": value_sha256,
    }
    topic = ctx.topics.dlq
    return Output(topic, key, ctx.codec.encode("DeadLetter", record, topic=topic))

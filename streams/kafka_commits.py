"""Commits that never pass an unanswered event: faust's aiokafka transport with a safe commit offset.

faust commits, per partition, the end of the first run of consecutive acknowledged
offsets, and it checks that run against the committed offset with an off-by-one
(and not at all before the first commit). With ``agent_concurrency`` > 1 two
actors take alternating events of one partition, so offsets 6, 8, 10 can be
acknowledged while 5, 7, 9 are still in flight, and faust commits past them:
after a crash they are never processed.

Here a partition's commit offset is bounded by its oldest event still in flight
(delivered to a stream, not yet acknowledged), whatever the concurrency. Offsets
that never arrive as messages (transaction markers, compacted records) need no
special case: only delivered messages are tracked.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message


class AnsweredOffsetsConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer; commits only offsets below every unacknowledged delivered message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight: defaultdict[TP, set[int]] = defaultdict(set)

    def track_message(self, message: Message) -> None:
        self._in_flight[message.tp].add(message.offset)
        super().track_message(message)

    def ack(self, message: Message) -> bool:
        self._in_flight[message.tp].discard(message.offset)
        return super().ack(message)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._in_flight.pop(tp, None)  # a partition assigned again is read again from its committed offset
        await super().on_partitions_revoked(revoked)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        in_flight = self._in_flight.get(tp)
        oldest = min(in_flight) if in_flight else None
        done = sorted(o for o in acked if oldest is None or o < oldest)
        if not done:
            return None
        acked[:] = [o for o in acked if oldest is not None and o >= oldest]
        self._acked_index[tp].difference_update(done)
        return done[-1] + 1


class AnsweredOffsetsTransport(faust_aiokafka.Transport):
    """The ``kafka://`` transport with :class:`AnsweredOffsetsConsumer`."""

    Consumer = AnsweredOffsetsConsumer

"""Commits that never pass an unanswered event: faust's aiokafka transport with a safe commit offset.

faust commits, per partition, the end of the first run of consecutive acknowledged
offsets, and it checks that run against the committed offset with an off-by-one
(and not at all before the first commit). With ``agent_concurrency`` > 1 two
actors take alternating events of one partition, so offsets 6, 8, 10 can be
acknowledged while 5, 7, 9 are still in flight, and faust commits past them:
after a crash they are never processed.

Here a partition's commit offset is bounded by its oldest event still in flight
(taken by a stream, not yet acknowledged), whatever the concurrency. The agents
hold every event of a batch until its outputs are acknowledged (see
``streams/agents/outputs.py``), so an event in flight is never garbage and never
forgotten. Offsets that never arrive as messages (transaction markers,
compacted records) need no special case: only delivered messages are tracked.
"""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams.kafka.highwaters import BrokerHighwatersThread


class AnsweredOffsetsConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer; commits only offsets below every unacknowledged delivered message."""

    def _new_consumer_thread(self) -> BrokerHighwatersThread:
        return BrokerHighwatersThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        # A stream tracks a message when it takes it from the agent's queue (one FIFO queue shared by
        # the actors), so every message not yet taken is newer than every tracked one.
        oldest = min((m.offset for m in self._unacked_messages if m.tp == tp and not m.acked), default=None)
        done = sorted(o for o in acked if oldest is None or o < oldest)
        if not done:
            return None
        acked[:] = [o for o in acked if oldest is not None and o >= oldest]
        self._acked_index[tp].difference_update(done)
        return done[-1] + 1


class AnsweredOffsetsTransport(faust_aiokafka.Transport):
    """The ``kafka://`` transport with :class:`AnsweredOffsetsConsumer`."""

    Consumer = AnsweredOffsetsConsumer

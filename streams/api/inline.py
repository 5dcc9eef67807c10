"""Inline ``RerankQuery``s ranked in this process, by the very code the rerank agent runs.

A query with inline candidates needs no gallery, so no worker: it is encoded as
the ``RerankQuery`` record it would be on the queries topic and handed to the
rerank agent's :class:`~streams.agents.rerank.QueryRanker`, which bounds it,
ranks it and builds its ``RerankResult`` exactly as for a record read from
Kafka. Its refusals are the same ``RecordError``s a worker dead-letters.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from ..agents.rerank import QueryRanker
from ..context import WorkerContext
from ..errors import ErrorCode, RecordError
from ..gallery import Galleries

#: The topic an in-process query says it was read from.
HTTP_SOURCE = "http"


@dataclass(frozen=True)
class _Message:
    """The fields of a Kafka message the ranker reads."""

    key: bytes
    value: bytes
    topic: str = HTTP_SOURCE
    partition: int = 0
    offset: int = 0
    headers: list = field(default_factory=list)


@dataclass(frozen=True)
class _Event:
    message: _Message


class InlineRanker:
    """Ranks inline queries with a :class:`QueryRanker` over no stored gallery."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self._ranker = QueryRanker(ctx, Galleries(), asyncio.Lock())
        self._count = itertools.count()

    async def rank(self, query: dict[str, Any]) -> dict[str, Any]:
        """The ``RerankResult`` record of ``query`` (a RerankQuery with candidates); raises ``RecordError``."""
        try:
            value = self.ctx.codec.encode("RerankQuery", query)
        except (ValueError, TypeError, OverflowError) as exc:  # a value the schema cannot hold
            raise RecordError(ErrorCode.BAD_QUERY, f"the query does not fit a RerankQuery: {exc}") from None
        message = _Message(query["gallery_id"].encode(), value, offset=next(self._count))
        return await self._ranker.answer(_Event(message))

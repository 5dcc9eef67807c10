"""The worker context's lifecycle: the backend is started at start-up, retried until it serves, closed at stop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from streams.codecs import AvroCodec
from streams.config import Settings
from streams.context import WorkerContext
from streams.errors import BackendError
from streams.kafka import TopicNames


class FlakyPipeline:
    """A pipeline whose backend refuses its first ``failures`` starts, as a Triton server still loading does."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts = self.closes = 0
        self.serving = asyncio.Event()

    async def start(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise BackendError("models still loading")
        self.serving.set()

    async def close(self) -> None:
        self.closes += 1


def context(pipeline: FlakyPipeline) -> WorkerContext:
    settings = Settings(retry_backoff_ms=10)
    pool = ThreadPoolExecutor(1)
    return WorkerContext(settings, TopicNames.from_settings(settings), AvroCodec(), pipeline, pool)


async def test_the_backend_starts_with_the_context_without_any_event_retried_until_it_serves():
    pipeline = FlakyPipeline(failures=2)
    ctx = context(pipeline)
    await ctx.start()
    try:
        await asyncio.wait_for(pipeline.serving.wait(), 5)
        assert pipeline.starts == 3
        assert await ctx.started_pipeline() is pipeline and pipeline.starts == 3  # started once, not again
    finally:
        await ctx.stop()
    assert pipeline.closes == 1


async def test_stopping_closes_the_backend_and_the_decode_threads():
    pipeline = FlakyPipeline(failures=0)
    ctx = context(pipeline)
    await ctx.start()
    await asyncio.wait_for(pipeline.serving.wait(), 5)
    await ctx.stop()
    assert pipeline.closes == 1
    with pytest.raises(RuntimeError, match="shutdown"):
        ctx.decode_pool.submit(print)


async def test_a_backend_never_started_is_not_closed():
    pipeline = FlakyPipeline(failures=10**6)
    ctx = context(pipeline)
    await ctx.start()
    await ctx.stop()  # while the start-up task is still retrying
    assert pipeline.closes == 0

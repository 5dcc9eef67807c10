"""What the agents of one worker share: settings, topics, codec, the face pipeline, thread pools.

The backend is started once, lazily, by the first agent that needs it (or by the
start-up task), so a worker whose Triton server is still loading keeps its
Kafka session alive and reports "not ready" instead of crashing.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .bounds import MAX_EMBEDDING_DIM
from .codecs import AvroCodec
from .config import Settings
from .inference import create_backend
from .kafka import TopicNames
from .pipeline import FacePipeline
from .progress import Progress


@dataclass
class WorkerContext:
    settings: Settings
    topics: TopicNames
    codec: AvroCodec
    pipeline: FacePipeline
    decode_pool: ThreadPoolExecutor
    progress: Progress = field(default_factory=Progress)
    _started: asyncio.Lock = field(default_factory=asyncio.Lock)
    _running: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerContext:
        return cls(
            settings=settings,
            topics=TopicNames.from_settings(settings),
            codec=AvroCodec(settings.schema_registry_url, max_items=max(settings.max_candidates, MAX_EMBEDDING_DIM)),
            pipeline=FacePipeline(create_backend(settings), settings),
            decode_pool=ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode"),
        )

    async def started_pipeline(self) -> FacePipeline:
        """The pipeline, its backend started (once)."""
        if not self._running:
            async with self._started:
                if not self._running:
                    await self.pipeline.start()
                    self._running = True
        return self.pipeline

    async def close(self) -> None:
        if self._running:
            await self.pipeline.close()
            self._running = False
        self.decode_pool.shutdown(wait=False, cancel_futures=True)

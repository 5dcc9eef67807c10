"""What the agents of one worker share (settings, topics, codec, the face pipeline, thread pools), and its lifecycle.

The context is a mode Service started and stopped with the faust app. Once
started it loads the models in the background and keeps trying, with backoff,
until they load: a worker whose Triton server is still loading keeps its Kafka
session alive and reports "not ready" instead of crashing, and ``/readyz``
turns 200 as soon as the backend serves, even while no event arrives to make
an agent ask for it. An agent that needs the backend first starts it itself
(once, whoever comes first). Stopping the app closes the backend and the
decode threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import mode

from .backoff import backoff_delays
from .bounds import MAX_EMBEDDING_DIM
from .codecs import AvroCodec
from .config import Settings
from .inference import create_backend
from .kafka import TopicNames
from .pipeline import FacePipeline
from .progress import Progress
from .registry import RegistryUnavailable

log = logging.getLogger(__name__)


class WorkerContext(mode.Service):
    """The parts one worker's agents share; ``app.service(ctx)`` starts and stops it with the app."""

    def __init__(
        self,
        settings: Settings,
        topics: TopicNames,
        codec: AvroCodec,
        pipeline: FacePipeline,
        decode_pool: ThreadPoolExecutor,
        progress: Progress | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.topics = topics
        self.codec = codec
        self.pipeline = pipeline
        self.decode_pool = decode_pool
        self.progress = progress or Progress()
        self._backend_lock = asyncio.Lock()
        self._backend_started = False
        #: Why the last registry request failed, while the worker waits for the registry (None: no wait).
        self.registry_trouble: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerContext:
        return cls(
            settings=settings,
            topics=TopicNames.from_settings(settings),
            codec=AvroCodec.from_settings(settings, max_items=max(settings.max_candidates, MAX_EMBEDDING_DIM)),
            pipeline=FacePipeline(create_backend(settings), settings),
            decode_pool=ThreadPoolExecutor(settings.decode_threads, thread_name_prefix="decode"),
        )

    async def started_pipeline(self) -> FacePipeline:
        """The pipeline, its backend started (once)."""
        if not self._backend_started:
            async with self._backend_lock:
                if not self._backend_started:
                    await self.pipeline.start()
                    self._backend_started = True
        return self.pipeline

    @mode.Service.task
    async def _start_backend(self) -> None:
        """Load the models before the first batch arrives; readiness reports the backend down meanwhile."""
        for delay in backoff_delays(self.settings):
            try:
                await self.started_pipeline()
                return
            except Exception as exc:  # noqa: BLE001 -- whatever it is, the next try may succeed
                log.warning("backend not ready at start-up, next try in %.1f s: %s", delay, exc)
                await self.sleep(delay)

    async def schemas_ready(self, values: Iterable[bytes | None] = ()) -> None:
        """Return once the registry has answered all that decoding ``values`` and writing any output needs.

        Without a registry, or with everything cached, this returns at once. While the registry is down it
        waits with backoff (the events stay held, unanswered and uncommitted), then the batch goes on.
        """
        values = list(values)
        writes = self.topics.written_by_workers()
        delays = backoff_delays(self.settings)
        while self.codec.needs_registry(values, writes):
            try:
                await asyncio.to_thread(self.codec.ask_registry, values, writes)
                self.registry_trouble = None
            except RegistryUnavailable as exc:
                self.registry_trouble = str(exc)
                delay = next(delays)
                log.warning("schema registry not answering, next try in %.1f s: %s", delay, exc)
                await self.sleep(delay)

    def schemas_pending(self) -> str | None:
        """Why this worker cannot write its outputs yet (subjects not registered), None once it can."""
        if not self.codec.needs_registry((), self.topics.written_by_workers()):
            return None
        return f"subjects not registered yet: {self.registry_trouble or 'first try in progress'}"

    @mode.Service.task
    async def _register_schemas(self) -> None:
        """Register the subjects this worker writes before its first batch; readiness waits for it."""
        await self.schemas_ready()

    async def on_shutdown(self) -> None:
        # After the app has drained its streams and this service's start-up task is cancelled: nothing uses them now.
        if self._backend_started:
            await self.pipeline.close()
            self._backend_started = False
        self.decode_pool.shutdown(wait=False, cancel_futures=True)

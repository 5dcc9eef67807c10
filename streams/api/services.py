"""What the routes of one API process share, started and stopped with the app.

The face pipeline, its decode threads and the codec come from a
:class:`~streams.context.WorkerContext`, exactly as a worker's agents get them;
decoded pixels from a :class:`~streams.pixel_budget.PixelBudget` of the same
size; the model calls from one :class:`~streams.api.batcher.MicroBatcher`; the
galleries from the :class:`~streams.api.gallery_link.GalleryLink` to Kafka.
The pipeline keeps the aligned crops of every face, so a request may ask for
them whatever the server's ``FACESTREAM_EMIT_ALIGNED`` says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import numpy as np

from ..codecs import AvroCodec
from ..config import Settings
from ..context import WorkerContext
from ..inference.backend import InferenceBackend
from ..errors import ErrorCode
from ..pipeline import FacePipeline, ImageFaces, ModelIdentity
from ..pixel_budget import PixelBudget
from ..readiness import CheckResult, Readiness
from .batcher import MicroBatcher
from .gallery_link import GalleryLink
from .problems import Problem

log = logging.getLogger(__name__)


class ApiServices:
    def __init__(self, settings: Settings, backend: InferenceBackend | None = None) -> None:
        """``backend``: the inference backend to run on, instead of the one the settings name."""
        self.settings = settings
        # The in-process ranker parses the queries this process encodes for it: no registry on that path.
        ctx_settings = settings.replace(emit_aligned=True, schema_registry_url="")
        self.ctx = WorkerContext.from_settings(ctx_settings)
        if backend is not None:
            self.ctx.pipeline = FacePipeline(backend, ctx_settings)
        self.budget = PixelBudget(settings.max_pixels_in_flight)
        self.batcher = MicroBatcher(
            self._process,
            max_batch=settings.max_batch,
            max_wait_s=settings.max_wait_ms / 1000.0,
            capacity=settings.api_max_queued_images,
        )
        self.galleries = GalleryLink(settings, AvroCodec.from_settings(settings))
        self.readiness = Readiness(None, settings, None, None, self.ctx.pipeline.backend, registry=self.galleries.codec.registry)
        self._batching: asyncio.Task | None = None

    async def _process(self, images: list[np.ndarray]) -> list[ImageFaces]:
        """One pipeline call; the backend is started first if it has not loaded yet."""
        return await (await self.ctx.started_pipeline()).process(images)

    async def identity(self) -> ModelIdentity:
        """The models answering, once the backend serves; 503 BACKEND_ERROR while it cannot."""
        try:
            return (await self.ctx.started_pipeline()).identity
        except Exception as exc:  # noqa: BLE001 -- whatever keeps the models from loading, the client can only retry
            raise Problem(ErrorCode.BACKEND_ERROR, f"the inference backend cannot serve: {exc}"[:1000]) from None

    async def start(self) -> None:
        try:
            await self.ctx.started_pipeline()
        except Exception as exc:  # noqa: BLE001 -- served later, when it loads; /readyz says why meanwhile
            log.warning("backend not ready at start-up: %s", exc)
        self._batching = asyncio.create_task(self.batcher.run(), name="micro-batcher")

    async def close(self) -> None:
        if self._batching is not None:
            self._batching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._batching
        await self.galleries.close()
        await self.ctx.on_shutdown()

    async def checks(self) -> list[CheckResult]:
        """What ``/readyz`` reports: the backend, the re-ranker, the registry and the brokers."""
        return [
            await self.readiness.check_backend(),
            self.readiness.check_reranker(),
            await self.readiness.check_registry(),
            await self.galleries.check_broker(),
        ]

"""The embed agent: ``ImageEvent``s in, exactly one ``FaceEmbeddings`` or ``DeadLetter`` out per event.

Events are taken in micro-batches (``max_batch`` events or ``max_wait_ms``,
whichever comes first) so the models see one tensor per batch. Each event is
decoded and validated on its own in a thread pool: a bad one becomes a
dead-letter record and never fails its batch. Backend failures are retried
with backoff until the backend answers: the events of a batch are only
acknowledged (and so their offsets only committed) after Kafka has
acknowledged every output of the batch, so nothing is lost. ``agent_concurrency``
batches run at once, so the models work on one batch while another waits for
Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

import cv2
import faust
import numpy as np
from faust.types import EventT

from .. import metrics
from ..backoff import backoff_delays
from ..context import WorkerContext
from ..errors import BackendError, ErrorCode, RecordError
from ..logs import log_context, new_batch_id
from ..pipeline import ImageFaces
from .dead_letter import dead_letter_value, now_ms
from .outputs import Outputs

log = logging.getLogger(__name__)

#: send(topic, input event, key, value) -> a future that resolves once Kafka acknowledged the record.
Send = Callable[[str, EventT, bytes | None, bytes], Awaitable[Awaitable[Any]]]


@dataclass
class Prepared:
    """One event after decoding: either a valid image with its ImageEvent, or the reason it failed."""

    event: EventT
    record: dict[str, Any] | None = None
    image: np.ndarray | None = None
    error: RecordError | None = None




def read_uri(uri: str) -> bytes:
    """Fetch a payload kept outside Kafka; ``file://`` is supported."""
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise RecordError(ErrorCode.URI_UNREADABLE, f"unsupported URI scheme {parsed.scheme!r} (only file://)")
    try:
        with open(unquote(parsed.path), "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise RecordError(ErrorCode.URI_UNREADABLE, f"cannot read {uri}: {exc.strerror}") from None


class EmbedBatch:
    """Turns one batch of events into output records; the agent body calls :meth:`handle`."""

    def __init__(self, ctx: WorkerContext, send: Send) -> None:
        self.ctx = ctx
        self.send = send

    async def handle(self, events: Sequence[EventT]) -> None:
        metrics.BATCH_SIZE.observe(len(events))
        loop = asyncio.get_running_loop()
        with metrics.STAGE_SECONDS.labels(stage="decode").time():
            prepared = await asyncio.gather(
                *(loop.run_in_executor(self.ctx.decode_pool, self._prepare, event) for event in events)
            )
        good = [p for p in prepared if p.error is None]
        results = await self._faces(good)
        pending = []
        produce_started = time.perf_counter()
        for item in prepared:
            if item.error is not None:
                pending.append(await self._dead_letter(item.event, item.error))
            else:
                pending.append(await self._embeddings(item, results[id(item)]))
        # Offsets are committed only for acknowledged events: wait for Kafka to take every output first.
        await asyncio.gather(*pending)
        metrics.STAGE_SECONDS.labels(stage="produce").observe(time.perf_counter() - produce_started)
        done = time.time()
        for item in prepared:
            metrics.END_TO_END_SECONDS.observe(max(0.0, done - item.event.message.timestamp))

    def _prepare(self, event: EventT) -> Prepared:
        try:
            record = self.ctx.codec.decode(event.message.value, expect="ImageEvent")
            if record["image"] is not None:
                data = record["image"]
            elif record["uri"]:
                data = read_uri(record["uri"])
            else:
                raise RecordError(ErrorCode.BAD_EVENT, "the event carries neither image bytes nor a uri")
            return Prepared(event, record, self.ctx.pipeline.decode(data, record["content_type"]))
        except RecordError as exc:
            return Prepared(event, error=exc)

    async def _faces(self, good: list[Prepared]) -> dict[int, ImageFaces | RecordError]:
        """Faces of every good image; one model failure never takes the other images down."""
        if not good:
            return {}
        try:
            faces = await self._with_backend_retries([p.image for p in good])
            _observe_stages(faces[0])  # the timings are the batch's, repeated on each of its images
            return {id(p): f for p, f in zip(good, faces, strict=True)}
        except BackendError:
            raise
        except Exception:
            log.exception("batch of %d images failed; retrying them one by one", len(good))
        results: dict[int, ImageFaces | RecordError] = {}
        for item in good:
            try:
                (results[id(item)],) = await self._with_backend_retries([item.image])
                _observe_stages(results[id(item)])
            except BackendError:
                raise
            except Exception as exc:
                results[id(item)] = RecordError(ErrorCode.PROCESSING_FAILED, f"{type(exc).__name__}: {exc}")
        return results

    async def _with_backend_retries(self, images: list[np.ndarray]) -> list[ImageFaces]:
        """Retry backend failures with capped exponential backoff until the backend answers again.

        Good images are never dead-lettered for a backend outage: the batch waits,
        its offsets stay uncommitted, and /readyz reports the backend down.
        """
        delays = enumerate(backoff_delays(self.ctx.settings), start=1)
        while True:
            try:
                pipeline = await self.ctx.started_pipeline()
                return await pipeline.process(images)
            except BackendError as exc:
                attempt, delay = next(delays)
                metrics.BACKEND_UP.labels(backend=self.ctx.settings.backend).set(0)
                log.warning("backend failed (attempt %d), retrying in %.1f s: %s", attempt, delay, exc)
                await asyncio.sleep(delay)

    async def _embeddings(self, item: Prepared, result: ImageFaces | RecordError) -> Awaitable[Any]:
        if isinstance(result, RecordError):
            return await self._dead_letter(item.event, result)
        metrics.FACES_TOTAL.inc(len(result.faces))
        metrics.IMAGES_TOTAL.labels(result="ok" if result.faces else "no_face").inc()
        identity = self.ctx.pipeline.identity
        message = item.event.message
        record = {
            "image_id": item.record["id"],
            "source": {"topic": message.topic, "partition": message.partition, "offset": message.offset},
            "faces": [
                {
                    "bbox": face.bbox.tolist(),
                    "score": face.score,
                    "landmarks": face.landmarks.reshape(-1).tolist(),
                    "embedding": face.embedding.tolist(),
                    "aligned_jpeg": _jpeg(face.aligned) if face.aligned is not None else None,
                }
                for face in result.faces
            ],
            "model": {
                "detector": identity.detector,
                "embedder": identity.embedder,
                "dim": identity.dim,
                "version": identity.version,
            },
            "timings_ms": {k: float(v) for k, v in result.timings_ms.items()},
            "attributes": item.record["attributes"],
            "processed_at": now_ms(),
        }
        topic = self.ctx.topics.embeddings
        value = self.ctx.codec.encode("FaceEmbeddings", record, topic=topic)
        return await self.send(topic, item.event, item.record["id"].encode(), value)

    async def _dead_letter(self, event: EventT, error: RecordError) -> Awaitable[Any]:
        metrics.IMAGES_TOTAL.labels(result="dlq").inc()
        value = dead_letter_value(self.ctx, event, error)
        return await self.send(self.ctx.topics.dlq, event, event.message.key, value)


def _observe_stages(faces: ImageFaces) -> None:
    """One observation per model call of each stage the pipeline timed."""
    for stage in ("detect", "align", "embed"):
        if stage in faces.timings_ms:
            metrics.STAGE_SECONDS.labels(stage=stage).observe(faces.timings_ms[stage] / 1000.0)


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes() if ok else b""


def register_embed_agent(app: faust.App, ctx: WorkerContext) -> faust.types.AgentT:
    """Declare the embed agent on ``app``: raw bytes in, so a malformed record can be dead-lettered."""
    images = app.topic(ctx.topics.images, key_serializer="raw", value_serializer="raw")
    outputs = Outputs(app, ctx.settings, images, [ctx.topics.embeddings, ctx.topics.dlq])
    batch = EmbedBatch(ctx, outputs.send)
    settings = ctx.settings

    async def embed(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.max_batch, within=settings.max_wait_ms / 1000.0):
            with log_context(batch_id=new_batch_id()):
                await batch.handle(events)
            await outputs.batch_done(events)

    return app.agent(images, name="embed", concurrency=outputs.concurrency)(embed)

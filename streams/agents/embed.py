"""The embed agent: ``ImageEvent``s in, exactly one ``FaceEmbeddings`` or ``DeadLetter`` out per event.

Events are taken in micro-batches (``max_batch`` events or ``max_wait_ms``,
whichever comes first) so the models see one tensor per batch. Each event is
checked and decoded on its own in a thread pool: whatever goes wrong with one
event becomes its dead letter and never fails its batch. Decoded pixels come
from a worker-wide budget, so huge images wait instead of multiplying memory.
Backend failures are retried with backoff until the backend answers. The
events of a batch are acknowledged (and so their offsets committable) only
after Kafka has acknowledged every output of the batch, so nothing is lost.
``agent_concurrency`` batches run at once, so the models work on one batch
while another waits for Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import faust
import numpy as np
from faust.types import EventT

from .. import metrics
from ..backoff import backoff_delays
from ..bounds import check_attributes, check_id, check_key
from ..claim_check import ClaimCheck
from ..context import WorkerContext
from ..errors import BackendError, ErrorCode, RecordError
from ..face_records import face_output, model_record
from ..logs import log_context, new_batch_id
from ..pipeline import ImageFaces
from ..pixel_budget import PixelBudget
from ..vision.image import ImageHeader, decode_pixels
from .dead_letter import now_ms
from .output import Output
from .outputs import Outputs

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """One event on its way through the batch: its ImageEvent and payload, then its decoded image, or why it failed."""

    event: EventT
    record: dict[str, Any] | None = None
    data: bytes | None = None
    header: ImageHeader | None = None
    image: np.ndarray | None = None
    error: RecordError | None = None

    def fail(self, error: RecordError) -> None:
        self.error, self.data, self.image = error, None, None


class EmbedBatch:
    """Turns one batch of events into output records; the agent body calls :meth:`handle`."""

    def __init__(self, ctx: WorkerContext, outputs: Outputs, budget: PixelBudget, claim_check: ClaimCheck) -> None:
        self.ctx = ctx
        self.outputs = outputs
        self.budget = budget
        self.claim_check = claim_check

    async def handle(self, events: Sequence[EventT]) -> None:
        metrics.BATCH_SIZE.observe(len(events))
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        prepared = await asyncio.gather(
            *(loop.run_in_executor(self.ctx.decode_pool, self._prepare, event) for event in events)
        )
        decode_s = time.perf_counter() - started
        results, chunk_decode_s = await self._faces_within_budget([p for p in prepared if p.error is None])
        metrics.STAGE_SECONDS.labels(stage="decode").observe(decode_s + chunk_decode_s)  # once per batch
        produce_started = time.perf_counter()
        pending = [await self.outputs.answer(item.event, partial(self._output, item, results)) for item in prepared]
        # Offsets are committed only for acknowledged events: wait for Kafka to take every output first.
        await asyncio.gather(*pending)
        metrics.STAGE_SECONDS.labels(stage="produce").observe(time.perf_counter() - produce_started)
        done = time.time()
        for item in prepared:
            metrics.END_TO_END_SECONDS.observe(max(0.0, done - item.event.message.timestamp))

    def _prepare(self, event: EventT) -> Prepared:
        """Everything about one event that needs no decoded pixel (runs in the decode pool)."""
        item = Prepared(event)
        try:
            settings = self.ctx.settings
            check_key(event.message.key, settings.max_id_bytes)
            record = item.record = self.ctx.codec.decode(event.message.value, expect="ImageEvent")
            check_id(record["id"], "image id", settings.max_id_bytes)
            check_attributes(record["attributes"], settings.max_attributes_bytes)
            if record["image"] is not None:
                item.data = record["image"]
                record["image"] = None  # the payload lives in item.data only, and only until it is decoded
            elif record["uri"]:
                item.data = self.claim_check.read(record["uri"])
            else:
                raise RecordError(ErrorCode.BAD_EVENT, "the event carries neither image bytes nor a uri")
            item.header = self.ctx.pipeline.inspect(item.data, record["content_type"])
        except Exception as exc:  # noqa: BLE001 -- whatever one event raises is that event's dead letter
            item.fail(RecordError.of(exc))
        return item

    def _decode(self, item: Prepared) -> Prepared:
        """Decode one inspected payload (runs in the decode pool); the bytes are dropped once decoded."""
        try:
            item.image = decode_pixels(item.data, item.header)
        except Exception as exc:  # noqa: BLE001 -- e.g. MemoryError on one image: its dead letter, not the batch's
            item.fail(RecordError.of(exc))
        item.data = None
        return item

    async def _faces_within_budget(self, good: list[Prepared]) -> tuple[dict[int, ImageFaces | RecordError], float]:
        """Decode and run the models on ``good`` in chunks whose pixels fit the worker's budget; (faces, decode seconds).

        A chunk waits for budget only while it holds none, so two batches in flight never wait
        on each other; a batch of ordinary photos is one chunk, one detector call.
        """
        results: dict[int, ImageFaces | RecordError] = {}
        decode_s = 0.0
        loop = asyncio.get_running_loop()
        waiting = list(good)
        while waiting:
            chunk = [waiting.pop(0)]
            await self.budget.take(chunk[0].header.pixels)
            while waiting and self.budget.try_take(waiting[0].header.pixels):
                chunk.append(waiting.pop(0))
            try:
                started = time.perf_counter()
                await asyncio.gather(*(loop.run_in_executor(self.ctx.decode_pool, self._decode, p) for p in chunk))
                decode_s += time.perf_counter() - started
                results.update(await self._faces([p for p in chunk if p.error is None]))
            finally:
                for item in chunk:
                    item.image = None  # the models are done with it: its memory goes back with its budget
                    self.budget.give(item.header.pixels)
        return results, decode_s

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
                results[id(item)] = RecordError.of(exc)
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

    async def _output(self, item: Prepared, results: dict[int, ImageFaces | RecordError]) -> Output:
        """The ``FaceEmbeddings`` answering one event; a :class:`RecordError` makes it a dead letter."""
        if item.error is not None:
            raise item.error
        result = results[id(item)]
        if isinstance(result, RecordError):
            raise result
        message = item.event.message
        record = {
            "image_id": item.record["id"],
            "source": {"topic": message.topic, "partition": message.partition, "offset": message.offset},
            "faces": [face_output(face) for face in result.faces],
            "model": model_record(self.ctx.pipeline.identity),
            "timings_ms": {k: float(v) for k, v in result.timings_ms.items()},
            "attributes": item.record["attributes"],
            "processed_at": now_ms(),
        }
        topic = self.ctx.topics.embeddings
        output = Output(topic, item.record["id"].encode(), self.ctx.codec.encode("FaceEmbeddings", record, topic=topic))
        metrics.FACES_TOTAL.inc(len(result.faces))
        metrics.IMAGES_TOTAL.labels(result="ok" if result.faces else "no_face").inc()
        return output


def _observe_stages(faces: ImageFaces) -> None:
    """One observation per model call of each stage the pipeline timed."""
    for stage in metrics.PIPELINE_STAGES:
        if stage in faces.timings_ms:
            metrics.STAGE_SECONDS.labels(stage=stage).observe(faces.timings_ms[stage] / 1000.0)


def register_embed_agent(app: faust.App, ctx: WorkerContext) -> faust.types.AgentT:
    """Declare the embed agent on ``app``: raw bytes in, so a malformed record can be dead-lettered."""
    images = app.topic(ctx.topics.images, key_serializer="raw", value_serializer="raw")
    outputs = Outputs(app, ctx, images, [ctx.topics.embeddings, ctx.topics.dlq])
    settings = ctx.settings
    batch = EmbedBatch(ctx, outputs, PixelBudget(settings.max_pixels_in_flight), ClaimCheck.from_settings(settings))

    async def embed(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.max_batch, within=settings.max_wait_ms / 1000.0):
            with log_context(batch_id=new_batch_id()):
                async with outputs.batch(events):
                    await batch.handle(events)

    return app.agent(images, name="embed", concurrency=outputs.concurrency)(embed)

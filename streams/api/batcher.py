"""One micro-batcher in front of :meth:`FacePipeline.process`, so concurrent requests share model calls.

Each request hands in its decoded images one by one and awaits their faces. The
batcher's single loop takes what is waiting the way the embed agent takes events
(``max_batch`` images, or whatever came within ``max_wait_ms`` of the first),
and runs one pipeline call for all of them: 32 concurrent one-image requests
cost two detector calls at a batch of 16, not 32. One call runs at a time, so
while the models work the next batch fills. The wait for a batch to fill ends
early when no admitted image is still on its way (being decoded): then only a
new request could join, and the models would sit idle waiting for it.

What waits is bounded: a request first reserves room for its images
(:meth:`MicroBatcher.reserve`), and a request that does not fit is refused at
once (503) instead of queueing without end. A backend failure fails the images
of its call (the request answers 503); anything else that fails a call is
retried image by image, so one bad image never fails the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from .. import metrics
from ..errors import BackendError, RecordError
from ..pipeline import ImageFaces

log = logging.getLogger(__name__)

Process = Callable[[list[np.ndarray]], Awaitable[list[ImageFaces]]]


class QueueFull(Exception):
    """The images of a request do not fit the queue now."""


@dataclass
class _Job:
    image: np.ndarray
    future: asyncio.Future[ImageFaces] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Reservation:
    """Room for one request's images: each is handed in (:meth:`faces`) or given up (:meth:`skip`) once."""

    def __init__(self, batcher: MicroBatcher, images: int) -> None:
        self.batcher = batcher
        self.left = images

    async def faces(self, image: np.ndarray) -> ImageFaces:
        """The faces of one decoded image, computed in a batch with whatever else is waiting."""
        job = _Job(image)
        self._arrived()
        self.batcher._jobs.put_nowait(job)
        return await job.future

    def skip(self) -> None:
        """One image of the request will not come (it was rejected before decoding finished)."""
        self._arrived()

    def _arrived(self) -> None:
        if self.left > 0:
            self.left -= 1
            self.batcher.expected -= 1


class MicroBatcher:
    """Batches images across requests for one event loop; :meth:`run` is its loop, started once as a task."""

    def __init__(self, process: Process, *, max_batch: int, max_wait_s: float, capacity: int) -> None:
        self.process = process
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.capacity = capacity
        #: Images of admitted requests not answered yet (on their way, waiting, or in a model call).
        self.reserved = 0
        #: Images of admitted requests not handed in yet (still being checked or decoded).
        self.expected = 0
        self._jobs: asyncio.Queue[_Job] = asyncio.Queue()

    @contextlib.contextmanager
    def reserve(self, images: int) -> Iterator[Reservation]:
        """Room for ``images`` for the duration of the block; raises :class:`QueueFull` when there is none."""
        if self.reserved + images > self.capacity:
            raise QueueFull(f"{self.reserved} images wait for the models, room for {self.capacity}")
        self.reserved += images
        self.expected += images
        reservation = Reservation(self, images)
        try:
            yield reservation
        finally:
            self.reserved -= images
            self.expected -= reservation.left

    async def run(self) -> None:
        """Take batches and answer them, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._jobs.get()]
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                if self._jobs.empty():
                    if self.expected == 0:
                        break  # nothing admitted is on its way: waiting would only idle the models
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(self._jobs.get(), remaining))
                    except TimeoutError:
                        break
                else:
                    batch.append(self._jobs.get_nowait())
            await self._answer([job for job in batch if not job.future.done()])  # a timed-out request left

    async def _answer(self, batch: list[_Job]) -> None:
        if not batch:
            return
        metrics.BATCH_SIZE.observe(len(batch))
        try:
            results = await self.process([job.image for job in batch])
        except BackendError as exc:
            for job in batch:
                _settle(job, exc)
            return
        except Exception:
            log.exception("batch of %d images failed; retrying them one by one", len(batch))
            for job in batch:
                await self._answer_alone(job)
            return
        for job, result in zip(batch, results, strict=True):
            _settle(job, result)

    async def _answer_alone(self, job: _Job) -> None:
        try:
            (result,) = await self.process([job.image])
        except BackendError as exc:
            _settle(job, exc)
        except Exception as exc:  # noqa: BLE001 -- this image's own failure, told to its request alone
            _settle(job, RecordError.of(exc))
        else:
            _settle(job, result)


def _settle(job: _Job, outcome: ImageFaces | Exception) -> None:
    job.image = None  # the models are done with it
    if job.future.done():
        return
    if isinstance(outcome, Exception):
        job.future.set_exception(outcome)
    else:
        job.future.set_result(outcome)

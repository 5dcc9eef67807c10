"""The micro-batcher's promises: shared calls, bounded waits, bounded queue, one bad image fails alone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from streams.api.batcher import MicroBatcher, QueueFull
from streams.errors import BackendError, ErrorCode, RecordError
from streams.pipeline import ImageFaces


class Recorder:
    """A process function that answers each image with its own value, remembering each call's batch."""

    def __init__(self, fail_on: float | None = None, backend_down: bool = False) -> None:
        self.calls: list[list[float]] = []
        self.fail_on = fail_on
        self.backend_down = backend_down

    async def __call__(self, images: list[np.ndarray]) -> list[ImageFaces]:
        values = [float(image[0]) for image in images]
        self.calls.append(values)
        await asyncio.sleep(0.01)  # a model call takes time; more requests arrive meanwhile
        if self.backend_down:
            raise BackendError("backend down")
        if self.fail_on in values:
            raise ValueError("this image breaks the model")
        return [ImageFaces([], {"value": v}) for v in values]


async def running(batcher: MicroBatcher):
    task = asyncio.create_task(batcher.run())
    await asyncio.sleep(0)
    return task


async def faces(batcher: MicroBatcher, *values: float) -> list:
    """One request of ``values`` (one image each): reserved, handed in, answered (or its exceptions)."""
    with batcher.reserve(len(values)) as slot:
        return await asyncio.gather(*(slot.faces(np.array([v])) for v in values), return_exceptions=True)


async def test_concurrent_images_share_calls_of_at_most_max_batch():
    process = Recorder()
    batcher = MicroBatcher(process, max_batch=16, max_wait_s=0.05, capacity=64)
    task = await running(batcher)
    try:
        results = await faces(batcher, *range(32))
    finally:
        task.cancel()
    assert [r.timings_ms["value"] for r in results] == list(range(32))  # every image gets its own answer
    assert [len(c) for c in process.calls] == [16, 16]


async def test_an_image_waits_for_its_admitted_company_at_most_max_wait_and_alone_not_at_all():
    process = Recorder()
    batcher = MicroBatcher(process, max_batch=16, max_wait_s=0.05, capacity=64)
    task = await running(batcher)
    loop = asyncio.get_running_loop()
    try:
        started = loop.time()
        await faces(batcher, 1)
        alone = loop.time() - started
        with batcher.reserve(2) as slot:  # the second image is still decoding when the first arrives
            started = loop.time()
            await slot.faces(np.array([2]))
            waited = loop.time() - started
        with batcher.reserve(2) as slot:
            first = asyncio.create_task(slot.faces(np.array([3])))
            await asyncio.sleep(0.01)
            await asyncio.gather(first, slot.faces(np.array([4])))
    finally:
        task.cancel()
    assert alone < 0.04  # nothing else admitted: the models need not idle
    assert 0.04 <= waited < 0.5
    assert process.calls == [[1.0], [2.0], [3.0, 4.0]]


async def test_the_queue_refuses_what_does_not_fit_and_frees_room_after():
    batcher = MicroBatcher(Recorder(), max_batch=4, max_wait_s=0.01, capacity=3)
    with batcher.reserve(2):
        with pytest.raises(QueueFull):
            with batcher.reserve(2):
                pass
        assert batcher.reserved == batcher.expected == 2
    assert batcher.reserved == batcher.expected == 0
    with batcher.reserve(3) as slot:
        slot.skip()
        assert batcher.expected == 2
    assert batcher.expected == 0


async def test_one_bad_image_fails_alone_and_a_backend_failure_fails_its_call():
    process = Recorder(fail_on=2.0)
    batcher = MicroBatcher(process, max_batch=8, max_wait_s=0.02, capacity=64)
    task = await running(batcher)
    try:
        results = await faces(batcher, *range(4))
        assert isinstance(results[2], RecordError) and results[2].code is ErrorCode.PROCESSING_FAILED
        assert [r.timings_ms["value"] for i, r in enumerate(results) if i != 2] == [0, 1, 3]
        process.backend_down = True
        (outcome,) = await faces(batcher, 9)
        assert isinstance(outcome, BackendError)
    finally:
        task.cancel()


async def test_an_abandoned_image_is_skipped():
    process = Recorder()
    batcher = MicroBatcher(process, max_batch=8, max_wait_s=0.05, capacity=64)
    task = await running(batcher)
    try:
        with batcher.reserve(2) as slot:  # its sibling is still decoding, so the batch waits
            abandoned = asyncio.create_task(slot.faces(np.array([7])))
            await asyncio.sleep(0.001)
            abandoned.cancel()  # its request timed out before the batch left
        (answered,) = await faces(batcher, 8)
    finally:
        task.cancel()
    assert answered.timings_ms["value"] == 8
    assert process.calls == [[8.0]]

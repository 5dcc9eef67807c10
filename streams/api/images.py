"""The faces of a request's images: checked, decoded within the pixel budget, batched with other requests.

Each image goes the embed agent's way: its header is inspected before any
pixel is decoded (size, type, dimensions: a decompression bomb costs nothing),
its decoded pixels are taken from the process's budget (huge images wait
instead of multiplying memory), it is decoded in the decode threads, and its
faces come from the micro-batcher. A rejected image is that image's typed error;
a backend that cannot serve is the whole request's 503.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError, ErrorCode, RecordError
from ..pipeline import Face, ImageFaces
from ..vision.image import decode_pixels
from .batcher import QueueFull, Reservation
from .bodies import Payload
from .problems import OVERLOADED, Problem
from .records import image_error, image_json
from .services import ApiServices


@dataclass
class ImageAnswer:
    """One image's faces (those the request's options keep) and timings, or its error."""

    index: int
    faces: list[Face] = field(default_factory=list)
    found: ImageFaces | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: RecordError | None = None

    def json(self, services: ApiServices, aligned: bool) -> dict[str, Any]:
        if self.error is not None:
            return image_error(self.index, self.error.code.value, self.error.message)
        identity = services.ctx.pipeline.identity
        return image_json(self.index, self.faces, self.found, identity, self.timings_ms, aligned)


def kept(faces: list[Face], options: Any) -> list[Face]:
    """The faces an answer keeps: the pipeline's (best first), narrowed by the request's options."""
    def big(face: Face) -> bool:
        x1, y1, x2, y2 = face.bbox.tolist()
        return min(x2 - x1, y2 - y1) >= options.min_face_size

    return [f for f in faces if f.score >= options.score_threshold and big(f)][: options.max_faces]


async def answer_images(services: ApiServices, payloads: list[Payload], options: Any) -> list[ImageAnswer]:
    """Every payload's answer, in order; 503 when the model queue has no room or the backend cannot serve."""
    try:
        with services.batcher.reserve(sum(p.error is None for p in payloads)) as slot:
            return list(await asyncio.gather(*(_answer(services, slot, p, options) for p in payloads)))
    except QueueFull as exc:
        raise Problem(OVERLOADED, f"the model queue is full ({exc}); retry later") from None
    except BackendError as exc:
        raise Problem(ErrorCode.BACKEND_ERROR, f"the inference backend cannot serve: {exc}"[:1000]) from None


async def _answer(services: ApiServices, slot: Reservation, payload: Payload, options: Any) -> ImageAnswer:
    if payload.error is not None:
        return ImageAnswer(payload.index, error=payload.error)
    pipeline = services.ctx.pipeline
    started = time.perf_counter()
    try:
        header = pipeline.inspect(payload.data, payload.content_type)
    except RecordError as exc:
        slot.skip()
        return ImageAnswer(payload.index, error=exc)
    await services.budget.take(header.pixels)
    try:
        loop = asyncio.get_running_loop()
        try:
            image = await loop.run_in_executor(services.ctx.decode_pool, decode_pixels, payload.data, header)
        except Exception as exc:  # noqa: BLE001 -- e.g. MemoryError on one image: its error, not the request's
            slot.skip()
            return ImageAnswer(payload.index, error=RecordError.of(exc))
        decoded = time.perf_counter()
        try:
            found = await slot.faces(image)
        except RecordError as exc:
            return ImageAnswer(payload.index, error=exc)
        finally:
            del image
        timings = {"decode": round((decoded - started) * 1000.0, 3), "request": round((time.perf_counter() - started) * 1000.0, 3)}
        return ImageAnswer(payload.index, kept(found.faces, options), found, timings)
    finally:
        services.budget.give(header.pixels)


def largest(faces: list[Face]) -> Face | None:
    """The face with the largest box: the person a photo is of, not a face in the background."""
    def area(face: Face) -> float:
        x1, y1, x2, y2 = face.bbox.tolist()
        return (x2 - x1) * (y2 - y1)

    return max(faces, key=area, default=None)

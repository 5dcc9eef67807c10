"""FacePipeline: decoded images in, faces (box, score, landmarks, L2-normalised embedding) out.

A batch of images costs as few model calls as the backend's max batch size
allows: images are letterboxed into uint8 tensors of that many canvases (images
of one canvas shape together, see :mod:`streams.vision.letterbox`), one
detector call each, and the faces of *all* images are aligned into a single
embedder batch. That is what makes Triton's GPU worth having; per-image calls
would not be. Canvases and raw detector outputs live only while their call runs,
and no more calls run at once than the backend runs in parallel, so the memory of
detection does not grow with the batch.

Decoding bytes is deliberately not part of :meth:`FacePipeline.process`: the
worker runs :meth:`FacePipeline.decode` per event (in a thread pool), sends
rejections to the dead-letter topic, and hands only valid images to
``process``, so one bad image never fails a batch.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Coroutine
from typing import Any, TypeVar
from dataclasses import dataclass

import numpy as np

from streams import metrics
from streams.config import Settings
from streams.inference.backend import InferenceBackend
from streams.models.families import DETECTORS, SFACE
from streams.vectors import unit_rows
from streams.vision.align import align_faces
from streams.vision.detect import Detections, FaceFilter, select_faces
from streams.vision.image import ImageHeader, ImageLimits, decode_image, inspect_image
from streams.vision.letterbox import canvas_shape, letterbox_batch
from streams.vision.quality import FaceQuality, face_quality


T = TypeVar("T")


@dataclass(frozen=True)
class Face:
    bbox: np.ndarray  # float32 [4]: x1, y1, x2, y2 in original pixels
    score: float
    landmarks: np.ndarray  # float32 [5, 2]: image-left eye, image-right eye, nose, left/right mouth corner
    embedding: np.ndarray  # float32 [dim], unit L2 norm
    aligned: np.ndarray | None  # uint8 [112, 112, 3] BGR crop, when Settings.emit_aligned
    quality: FaceQuality | None = None  # sharpness, pose, size and their overall score (streams.vision.quality)


@dataclass(frozen=True)
class ImageFaces:
    faces: list[Face]
    timings_ms: dict[str, float]  # stage -> milliseconds spent on the whole batch this image was part of


@dataclass(frozen=True)
class ModelIdentity:
    """Which models produced an embedding; written into every output record."""

    detector: str
    embedder: str
    dim: int
    version: str


async def timed_infer(backend: InferenceBackend, model: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    """One backend call, observed in facestream_inference_seconds."""
    with metrics.INFERENCE_SECONDS.labels(model=model).time():
        return await backend.infer(model, batch)


async def infer_chunked(backend: InferenceBackend, model: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``model`` on a batch of any size, outputs concatenated in order.

    The batch goes in pieces of at most the model's max batch size, as many at once as the backend
    runs calls in parallel (:attr:`InferenceBackend.parallel_calls`); a batch smaller than that many
    full pieces is split evenly, so that every parallel run has work.
    """
    calls = backend.parallel_calls
    step = min(backend.model_info(model).max_batch_size or len(batch), max(1, -(-len(batch) // calls)))
    limit = asyncio.Semaphore(calls)

    async def piece(first: int) -> dict[str, np.ndarray]:
        async with limit:
            return await timed_infer(backend, model, batch[first : first + step])

    parts = await all_of([piece(first) for first in range(0, len(batch), step)])
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


async def all_of(coroutines: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Their results, run together; the first failure cancels the others and is raised as itself.

    Not as the ExceptionGroup a TaskGroup raises: callers tell a BackendError (retried until the backend
    answers, events held) from an image's own failure (its dead letter) by its type.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
    except ExceptionGroup as failed:
        raise failed.exceptions[0]  # noqa: B904 -- the cause itself, with its own traceback
    return [t.result() for t in tasks]


class FacePipeline:
    def __init__(self, backend: InferenceBackend, settings: Settings) -> None:
        self.detector = DETECTORS[settings.detector_format]  # Settings takes no other spelling
        self.embedder = SFACE
        self.backend = backend
        self.settings = settings
        self._limits = ImageLimits.from_settings(settings)
        self._filter = FaceFilter(
            settings.score_threshold, settings.nms_threshold, settings.min_face_size, settings.max_faces
        )

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        await self.backend.close()

    @property
    def identity(self) -> ModelIdentity:
        """The families running and the embedder's version; its dimension comes from its metadata (backend started)."""
        info = self.backend.model_info(self.settings.embedder_model)
        (output,) = info.outputs
        return ModelIdentity(self.detector.identity, self.embedder.identity, output.shape[-1], info.version)

    def decode(self, data: bytes, content_type: str | None = None) -> np.ndarray:
        """Validate and decode one payload (thread-safe, CPU-bound); raises ``ImageRejected``."""
        return decode_image(data, self._limits, content_type)

    def inspect(self, data: bytes, content_type: str | None = None) -> ImageHeader:
        """Validate one payload without decoding it: its header says what decoding will cost."""
        return inspect_image(data, self._limits, content_type)

    async def process(self, images: list[np.ndarray]) -> list[ImageFaces]:
        """Faces of every decoded BGR image, in input order; an image without faces has an empty list."""
        if not images:
            return []
        started = time.perf_counter()
        timings: dict[str, float] = {}
        detections = await self.detect(images, timings)
        clock = time.perf_counter()
        crops = [align_faces(image, d.landmarks) for image, d in zip(images, detections, strict=True)]
        all_crops = np.concatenate(crops)  # images is not empty, and an image without faces adds [0, 112, 112, 3]
        timings["align"] = (time.perf_counter() - clock) * 1000.0
        clock = time.perf_counter()
        embeddings = await self._embed(all_crops)
        timings["embed"] = (time.perf_counter() - clock) * 1000.0
        timings["total"] = (time.perf_counter() - started) * 1000.0
        return self._assemble(detections, crops, embeddings, timings)

    async def detect(self, images: list[np.ndarray], timings: dict[str, float] | None = None) -> list[Detections]:
        """Detections of every image, in input order.

        Images of one canvas shape share detector calls of up to the max batch size, and as many calls
        run at once as the backend runs in parallel. Letterboxing runs off the event loop (shrinking a
        large photo takes milliseconds). ``timings`` gets each stage's milliseconds summed over the calls
        (letterbox, detect, decode_boxes); calls overlap, so their sum may exceed the time that passed.
        """
        timings = {} if timings is None else timings
        square = self._square_canvas()
        shapes = [canvas_shape(*image.shape[:2], self.settings.canvas_size, square=square) for image in images]
        step = self.backend.model_info(self.settings.detector_model).max_batch_size or len(images)
        pieces = []
        by_shape = itertools.groupby(sorted(range(len(images)), key=shapes.__getitem__), shapes.__getitem__)
        for shape, group in by_shape:
            members = list(group)
            pieces += [(shape, members[first : first + step]) for first in range(0, len(members), step)]
        detections: list[Detections | None] = [None] * len(images)
        limit = asyncio.Semaphore(self.backend.parallel_calls)  # canvases and raw outputs of that many calls at most
        loop = asyncio.get_running_loop()

        def lap(stage: str, since: float) -> float:
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + (now - since) * 1000.0
            return now

        async def piece(shape: tuple[int, int], members: list[int]) -> None:
            async with limit:
                clock = time.perf_counter()
                chunk = [images[i] for i in members]
                canvas, scales = await loop.run_in_executor(
                    None, letterbox_batch, chunk, self.settings.canvas_size, shape
                )
                clock = lap("letterbox", clock)
                outputs = await timed_infer(self.backend, self.settings.detector_model, canvas)
                clock = lap("detect", clock)
                del canvas
                for j, i in enumerate(members):
                    candidates = self.detector.decode(outputs, j, shape, self.settings.score_threshold)
                    detections[i] = select_faces(candidates, scales[j], images[i].shape[:2], self._filter)
                lap("decode_boxes", clock)

        await all_of([piece(shape, members) for shape, members in pieces])
        return detections

    def _square_canvas(self) -> bool:
        fit = self.settings.canvas_fit
        return self.backend.square_canvas if fit == "auto" else fit == "square"

    async def _embed(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:
            return np.zeros((0, self.identity.dim), np.float32)
        (raw,) = (await infer_chunked(self.backend, self.settings.embedder_model, crops)).values()
        return unit_rows(raw)

    def _assemble(
        self, detections: list[Detections], crops: list[np.ndarray], embeddings: np.ndarray, timings: dict[str, float]
    ) -> list[ImageFaces]:
        results, start = [], 0
        for dets, image_crops in zip(detections, crops, strict=True):
            faces = [
                Face(
                    bbox=dets.boxes[k],
                    score=float(dets.scores[k]),
                    landmarks=dets.landmarks[k],
                    embedding=embeddings[start + k],
                    aligned=image_crops[k] if self.settings.emit_aligned else None,
                    quality=face_quality(image_crops[k], dets.landmarks[k], float(dets.scores[k])),
                )
                for k in range(len(dets))
            ]
            start += len(dets)
            results.append(ImageFaces(faces, dict(timings)))
        return results

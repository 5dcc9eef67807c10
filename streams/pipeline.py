"""FacePipeline: decoded images in, faces (box, score, landmarks, L2-normalised embedding) out.

A batch of images costs as few model calls as the backend's max batch size
allows: images are letterboxed into uint8 tensors of that many canvases, one
detector call each, and the faces of *all* images are aligned into a single
embedder batch. That is what makes Triton's GPU worth having; per-image calls
would not be. Canvases and raw detector outputs live one call at a time, so the
memory of detection does not grow with the batch.

Decoding bytes is deliberately not part of :meth:`FacePipeline.process`: the
worker runs :meth:`FacePipeline.decode` per event (in a thread pool), sends
rejections to the dead-letter topic, and hands only valid images to
``process``, so one bad image never fails a batch.
"""

from __future__ import annotations

import time
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
from streams.vision.letterbox import letterbox_batch
from streams.vision.quality import FaceQuality, face_quality


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


async def infer_chunked(backend: InferenceBackend, model: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Run ``model`` on a batch of any size, in pieces of the backend's max batch size, outputs concatenated."""
    step = backend.model_info(model).max_batch_size or len(batch)
    parts = []
    for i in range(0, len(batch), step):
        with metrics.INFERENCE_SECONDS.labels(model=model).time():  # one backend call: facestream_inference_seconds
            parts.append(await backend.infer(model, batch[i : i + step]))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


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
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = timings.get(stage, 0.0) + (now - clock) * 1000.0
            clock = now

        detections: list[Detections] = []
        step = self.backend.model_info(self.settings.detector_model).max_batch_size or len(images)
        for first in range(0, len(images), step):
            chunk = images[first : first + step]
            canvas, scales = letterbox_batch(chunk, self.settings.canvas_size)
            lap("letterbox")
            outputs = await infer_chunked(self.backend, self.settings.detector_model, canvas)
            lap("detect")
            detections += [
                select_faces(self._candidates(outputs, i, canvas.shape[1:3]), scales[i], image.shape[:2], self._filter)
                for i, image in enumerate(chunk)
            ]
            lap("decode_boxes")
        crops = [align_faces(image, d.landmarks) for image, d in zip(images, detections, strict=True)]
        all_crops = np.concatenate(crops)  # images is not empty, and an image without faces adds [0, 112, 112, 3]
        lap("align")
        embeddings = await self._embed(all_crops)
        lap("embed")
        timings["total"] = sum(timings.values())
        return self._assemble(detections, crops, embeddings, timings)

    def _candidates(self, outputs: dict[str, np.ndarray], index: int, canvas_hw: tuple[int, int]) -> Detections:
        return self.detector.decode(outputs, index, canvas_hw, self.settings.score_threshold)

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

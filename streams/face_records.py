"""The pipeline's results in the shape of the Avro ``Face`` and ``ModelIdentity`` records.

The embed agent publishes them and ``facestream embed`` prints them, so each
field is named and converted from the pipeline's dataclasses here, once.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import cv2

from streams.pipeline import Face, ModelIdentity

#: Quality of the aligned crops' JPEG.
ALIGNED_JPEG_QUALITY = 90


def face_record(face: Face) -> dict[str, Any]:
    """A ``Face`` record without its optional aligned crop (encoding it is the publisher's choice)."""
    return {
        "bbox": face.bbox.tolist(),
        "score": face.score,
        "landmarks": face.landmarks.reshape(-1).tolist(),
        "embedding": face.embedding.tolist(),
        "quality": None if face.quality is None else dataclasses.asdict(face.quality),  # FaceQuality's field names
    }


def face_output(face: Face) -> dict[str, Any]:
    """The ``Face`` record as published: :func:`face_record` plus the aligned crop as JPEG when the pipeline kept it."""
    crop = face.aligned
    return {**face_record(face), "aligned_jpeg": None if crop is None else aligned_jpeg(crop)}


def aligned_jpeg(crop: Any) -> bytes:
    """An aligned 112x112 BGR crop as JPEG; empty when OpenCV cannot encode it."""
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, ALIGNED_JPEG_QUALITY])
    return buf.tobytes() if ok else b""


def model_record(identity: ModelIdentity) -> dict[str, Any]:
    """The ``ModelIdentity`` record every output carries: embeddings of different models are never compared."""
    return {
        "detector": identity.detector,
        "embedder": identity.embedder,
        "dim": identity.dim,
        "version": identity.version,
    }

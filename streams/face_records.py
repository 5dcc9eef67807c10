"""The pipeline's results in the shape of the Avro ``Face`` and ``ModelIdentity`` records.

The embed agent publishes them and ``facestream embed`` prints them, so each
field is named and converted from the pipeline's dataclasses here, once.
"""

from __future__ import annotations

from typing import Any

from streams.pipeline import Face, ModelIdentity


def face_record(face: Face) -> dict[str, Any]:
    """A ``Face`` record without its optional aligned crop (encoding it is the publisher's choice)."""
    return {
        "bbox": face.bbox.tolist(),
        "score": face.score,
        "landmarks": face.landmarks.reshape(-1).tolist(),
        "embedding": face.embedding.tolist(),
    }


def model_record(identity: ModelIdentity) -> dict[str, Any]:
    """The ``ModelIdentity`` record every output carries: embeddings of different models are never compared."""
    return {
        "detector": identity.detector,
        "embedder": identity.embedder,
        "dim": identity.dim,
        "version": identity.version,
    }

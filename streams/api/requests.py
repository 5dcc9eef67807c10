"""The request bodies, bounded by the settings before anything is paid for.

Each bound a worker checks on a record (id bytes, embedding length, inline
candidates) is a bound of the request schema too, so ``/openapi.json`` says what
the API takes and a request outside it is a 422 without touching a model. Per
request face options may only narrow what the server's settings keep: a face
the pipeline drops cannot be asked back.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..bounds import MAX_EMBEDDING_DIM
from ..config import Settings
from ..ranking import METHODS

FLOAT32_MAX = float(np.finfo(np.float32).max)
INT32_MAX = 2**31 - 1
#: Most method parameters one query may name (the methods take at most three).
MAX_PARAMS = 8
#: Longest parameter name.
MAX_PARAM_NAME = 64

Float32 = Annotated[float, Field(ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
Embedding = Annotated[list[Float32], Field(min_length=1, max_length=MAX_EMBEDDING_DIM)]
Method = Literal[tuple(METHODS)]  # type: ignore[valid-type]


def _utf8(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the text is not valid Unicode (a lone surrogate)") from None
    return value


def id_type(settings: Settings) -> Any:
    """An id: 1 to ``max_id_bytes`` characters of valid Unicode (the worker checks the UTF-8 bytes again)."""
    return Annotated[str, Field(min_length=1, max_length=settings.max_id_bytes), AfterValidator(_utf8)]


def exactly_one(model: BaseModel, first: str, second: str) -> BaseModel:
    """``model`` when exactly one of its fields ``first`` and ``second`` is set; a refusal otherwise."""
    if (getattr(model, first) is None) == (getattr(model, second) is None):
        raise ValueError(f"give exactly one of {first} and {second}")
    return model


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestModels:
    """The request models of one app, their bounds read from its settings."""

    def __init__(self, settings: Settings) -> None:
        Id = id_type(settings)  # noqa: N806 -- a type
        base64_images = Field(min_length=1, max_length=settings.api_max_images, description="Images as base64.")

        class FaceOptions(Strict):
            """What faces an image's answer keeps; each option can only narrow the server's own settings."""

            max_faces: int = Field(settings.max_faces, ge=1, le=settings.max_faces, description="Most faces per image.")
            min_face_size: float = Field(
                settings.min_face_size, ge=settings.min_face_size, le=1e6, description="Smallest face side, pixels."
            )
            score_threshold: float = Field(
                settings.score_threshold, ge=settings.score_threshold, le=1.0, description="Lowest detector score."
            )
            aligned: bool = Field(False, description="Attach each aligned 112x112 face as base64 JPEG.")

        class Ranking(Strict):
            """How to rank, as in a RerankQuery."""

            top_k: int = Field(10, ge=1, le=INT32_MAX, description="Most matches.")
            threshold: Float32 | None = Field(None, description="Drop matches scoring below this.")
            method: Method = "cosine"  # type: ignore[valid-type]
            params: dict[Annotated[str, Field(max_length=MAX_PARAM_NAME)], Float32] = Field(
                default_factory=dict, max_length=MAX_PARAMS, description="Method parameters (k1, k2, alpha, ...)."
            )

        class EmbeddingsBody(FaceOptions):
            images: list[str] = base64_images

        class SearchOptions(FaceOptions, Ranking):
            gallery_id: Id  # type: ignore[valid-type]

        class SearchBody(SearchOptions):
            images: list[str] = base64_images

        class Candidate(Strict):
            id: Id  # type: ignore[valid-type]
            embedding: Embedding

        class RerankBody(Ranking):
            """A query embedding ranked against inline candidates, or against a gallery (exactly one of them)."""

            embedding: Embedding
            candidates: list[Candidate] | None = Field(None, min_length=1, max_length=settings.max_candidates)
            gallery_id: Id | None = None  # type: ignore[valid-type]

            _one_source = model_validator(mode="after")(lambda self: exactly_one(self, "candidates", "gallery_id"))

        class Model(Strict):
            detector: Annotated[str, Field(max_length=256), AfterValidator(_utf8)]
            embedder: Annotated[str, Field(max_length=256), AfterValidator(_utf8)]
            dim: int = Field(ge=1, le=MAX_EMBEDDING_DIM)
            version: Annotated[str, Field(max_length=256), AfterValidator(_utf8)]

        class Subject(Strict):
            """One subject: a photo of it (its largest face is enrolled) or its embedding."""

            subject_id: Id  # type: ignore[valid-type]
            image: str | None = Field(None, description="A photo as base64.")
            embedding: Embedding | None = None
            model: Model | None = Field(None, description="The models of the embedding; a photo's are the server's.")

            _one_source = model_validator(mode="after")(lambda self: exactly_one(self, "image", "embedding"))

        class EnrolBody(Strict):
            subjects: list[Subject] = Field(min_length=1, max_length=settings.api_max_images)

        self.FaceOptions = FaceOptions
        self.EmbeddingsBody = EmbeddingsBody
        self.SearchOptions = SearchOptions
        self.SearchBody = SearchBody
        self.RerankBody = RerankBody
        self.EnrolBody = EnrolBody

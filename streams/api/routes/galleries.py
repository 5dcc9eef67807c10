"""Gallery routes: enrol subjects and delete them as ``GalleryEntry`` records; a gallery's facts from its owner."""


import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from ...errors import ErrorCode
from ...face_records import model_record
from ...vision.quality import below_enrolment_gate
from ..bodies import from_base64, json_body
from ..images import answer_images, largest
from ..openapi import OpenApiParts
from ..problems import INVALID_REQUEST, NO_FACE, Problem, documented
from ..records import model_schema
from ..requests import RequestModels
from ..services import ApiServices
from . import V1


def router(services: ApiServices, models: RequestModels, parts: OpenApiParts) -> APIRouter:
    api = APIRouter()
    settings = services.settings
    link = services.galleries
    GalleryId = Annotated[str, Path(min_length=1, max_length=settings.max_id_bytes, description="Gallery id.")]  # noqa: N806
    SubjectId = Annotated[str, Path(min_length=1, max_length=settings.max_id_bytes, description="Subject id.")]  # noqa: N806
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    enrolled = {
        "type": "object",
        "required": ["gallery_id", "subjects"],
        "properties": {
            "gallery_id": {"type": "string"},
            "subjects": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["subject_id", "enrolled"],
                    "properties": {
                        "subject_id": {"type": "string"},
                        "enrolled": {"type": "boolean"},
                        "faces": {"type": "integer", "description": "Faces in the photo (its largest was enrolled)."},
                        "score": {"type": "number"},
                        "error": problem_ref,
                    },
                },
            },
        },
    }
    facts = {
        "type": "object",
        "required": ["gallery_id", "size", "dimension", "model"],
        "properties": {
            "gallery_id": {"type": "string"},
            "size": {"type": "integer", "description": "Subjects the workers hold."},
            "dimension": {"type": "integer", "description": "Embedding dimension."},
            "model": {"anyOf": [model_schema(), {"type": "null"}], "description": "The models of the latest entry."},
        },
    }

    def entry(gallery_id: str, subject_id: str, op: str, embedding: list[float], model: dict | None) -> dict[str, Any]:
        return {
            "gallery_id": gallery_id,
            "subject_id": subject_id,
            "op": op,
            "embedding": embedding,
            "model": model,
            "produced_at": int(time.time() * 1000),
        }

    async def publish(record: dict[str, Any]) -> None:
        await link.publish("GalleryEntry", link.topics.gallery, record["gallery_id"].encode(), record)

    @api.post(
        f"{V1}/galleries/{{gallery_id}}/subjects",
        status_code=202,
        summary="Enrol subjects into a gallery, from photos or embeddings",
        description=(
            "Each subject becomes a GalleryEntry UPSERT on the gallery topic (the largest face of its photo, "
            "embedded by this server, or its given embedding). Answered once Kafka has acknowledged the entries; "
            "the workers apply them within moments. A photo without a face, or one that cannot be read, is that "
            "subject's error; the others are still enrolled."
        ),
        openapi_extra=parts.body(models.EnrolBody),
        responses={**parts.answer("What was enrolled.", enrolled, 202), **documented(400, 401, 413, 415, 422, 503, 504)},
    )
    async def enrol(gallery_id: GalleryId, request: Request) -> JSONResponse:
        _check(gallery_id, settings.max_id_bytes)
        body = await json_body(request, models.EnrolBody)
        photos = [s for s in body.subjects if s.image is not None]
        answers = iter(await answer_images(services, [from_base64(i, s.image) for i, s in enumerate(photos)], models.FaceOptions()))
        reports = []
        for subject in body.subjects:
            report: dict[str, Any] = {"subject_id": subject.subject_id, "enrolled": False}
            if subject.image is None:
                model = subject.model.model_dump() if subject.model is not None else None
                record = entry(gallery_id, subject.subject_id, "UPSERT", subject.embedding, model)
            else:
                answer = next(answers)
                face = None if answer.error is not None else largest(answer.faces)
                if face is None:
                    error = answer.error
                    reason = {"code": error.code.value, "message": error.message} if error else _NO_FACE
                    reports.append({**report, "error": reason})
                    continue
                report.update(faces=len(answer.faces), score=face.score)
                too_poor = None if face.quality is None else below_enrolment_gate(face.quality, settings.enrol_min_quality)
                if too_poor is not None:
                    reports.append({**report, "error": {"code": ErrorCode.LOW_QUALITY.value, "message": too_poor}})
                    continue
                identity = model_record(services.ctx.pipeline.identity)
                record = entry(gallery_id, subject.subject_id, "UPSERT", face.embedding.tolist(), identity)
                record["quality"] = None if face.quality is None else face.quality.quality
            await publish(record)
            reports.append({**report, "enrolled": True})
        return JSONResponse({"gallery_id": gallery_id, "subjects": reports}, status_code=202)

    @api.delete(
        f"{V1}/galleries/{{gallery_id}}/subjects/{{subject_id}}",
        status_code=202,
        summary="Delete a subject from a gallery",
        description="A GalleryEntry DELETE on the gallery topic, answered once Kafka has acknowledged it.",
        responses={
            **parts.answer("The deletion was published.", {"type": "object", "required": ["gallery_id", "subject_id", "deleted"], "properties": {"gallery_id": {"type": "string"}, "subject_id": {"type": "string"}, "deleted": {"type": "boolean"}}}, 202),
            **documented(401, 422, 503, 504),
        },
    )
    async def delete(gallery_id: GalleryId, subject_id: SubjectId) -> JSONResponse:
        _check(gallery_id, settings.max_id_bytes)
        _check(subject_id, settings.max_id_bytes)
        await publish(entry(gallery_id, subject_id, "DELETE", [], None))
        return JSONResponse({"gallery_id": gallery_id, "subject_id": subject_id, "deleted": True}, status_code=202)

    @api.get(
        f"{V1}/galleries/{{gallery_id}}",
        summary="A gallery's size, dimension and model, as its workers hold it",
        description=(
            "Read from the changelog of the workers' gallery table (the entries they accepted), on the gallery's "
            "partition, up to its end now: the owner's state, not a copy kept here."
        ),
        responses={**parts.answer("The gallery.", facts), **documented(401, 404, 422, 503, 504)},
    )
    async def describe(gallery_id: GalleryId) -> JSONResponse:
        _check(gallery_id, settings.max_id_bytes)
        return JSONResponse(await link.describe(gallery_id))

    return api


_NO_FACE = {"code": NO_FACE, "message": "no face found in the photo"}


def _check(value: str, limit: int) -> None:
    """An id from a path: valid Unicode, at most ``limit`` UTF-8 bytes (what the worker checks)."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise Problem(INVALID_REQUEST, "the id is not valid Unicode") from None
    if size > limit:
        raise Problem(INVALID_REQUEST, f"the id has {size} bytes, over the limit of {limit}")

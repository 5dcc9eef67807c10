"""``POST /v1/search``: images in, each face's embedding ranked against a gallery by the worker that holds it."""

from __future__ import annotations

import asyncio
import copy

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...errors import ErrorCode
from ...face_records import model_record
from ...identity import one_identity_per_face
from ...pipeline import Face
from ..bodies import image_body
from ..images import ImageAnswer, answer_images
from ..openapi import OpenApiParts
from ..problems import Problem, documented
from ..records import image_schema, result_json, result_schema
from ..requests import RequestModels
from ..services import ApiServices
from . import V1
from .rerank import query_record


#: Refusals of one face's query, not of the request: that face says why, the others still answer.
FACE_REFUSALS = {ErrorCode.LOW_QUALITY.value}


def searched_schema(result_ref: dict) -> dict:
    """An image's answer as /v1/embeddings gives it, each face with the RerankResult of its embedding or its refusal."""
    schema = copy.deepcopy(image_schema())
    face = schema["anyOf"][0]["properties"]["faces"]["items"]
    face["properties"]["result"] = result_ref
    face["properties"]["error"] = {"$ref": "#/components/schemas/Problem"}
    return schema


def router(services: ApiServices, models: RequestModels, parts: OpenApiParts) -> APIRouter:
    api = APIRouter()
    result = parts.schema("RerankResult", result_schema())
    answer = {
        "type": "object",
        "required": ["images"],
        "properties": {"images": {"type": "array", "items": parts.schema("ImageSearch", searched_schema(result))}},
    }
    max_images = services.settings.api_max_images

    async def ranked(face: Face, options) -> dict:
        """The RerankResult of one face, or its refusal as ``{"error": ...}``; other dead letters fail the request."""
        query = query_record(options, gallery_id=options.gallery_id, embedding=face.embedding.tolist())
        query["model"] = model_record(services.ctx.pipeline.identity)
        query["quality"] = None if face.quality is None else face.quality.quality
        try:
            return await services.galleries.ask(query)
        except Problem as problem:
            if problem.code not in FACE_REFUSALS:
                raise
            return {"error": problem.body()}

    async def searched(answer: ImageAnswer, options) -> dict:
        out = answer.json(services, options.aligned)
        if answer.error is None:
            results = await asyncio.gather(*(ranked(f, options) for f in answer.faces))
            # Two faces of one photo are two people: a subject goes to at most one of them.
            results = one_identity_per_face(results, services.settings.ambiguity_margin)
            for face, result in zip(out["faces"], results, strict=True):
                face.update(result if "error" in result else {"result": result_json(result)})
        return out

    @api.post(
        f"{V1}/search",
        summary="Find the faces of images in a gallery",
        description=(
            "Images as in /v1/embeddings, plus `gallery_id` and the ranking of /v1/rerank (`params` only in JSON). "
            "Every face kept is embedded and asked of the worker holding the gallery, with the server's model and "
            "the face's quality; each face of the answer carries its RerankResult, or its `error` when the face "
            "was too poor to match (LOW_QUALITY). Within one image a subject is given to at most one face: the "
            "best assignment, the other faces taking their next subject or UNKNOWN."
        ),
        openapi_extra=parts.body(models.SearchBody, models.SearchOptions, max_images),
        responses={**parts.answer("One answer per image, in order.", answer), **documented(400, 401, 404, 413, 415, 422, 503, 504)},
    )
    async def search(request: Request) -> JSONResponse:
        options, payloads = await image_body(request, models.SearchBody, models.SearchOptions, max_images)
        answers = await answer_images(services, payloads, options)
        return JSONResponse({"images": await asyncio.gather(*(searched(a, options) for a in answers))})

    return api

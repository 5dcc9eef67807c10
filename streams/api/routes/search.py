"""``POST /v1/search``: images in, each face's embedding ranked against a gallery by the worker that holds it."""

from __future__ import annotations

import asyncio
import copy

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..bodies import image_body
from ..images import ImageAnswer, answer_images
from ..openapi import OpenApiParts
from ..problems import documented
from ..records import image_schema, result_json, result_schema
from ..requests import RequestModels
from ..services import ApiServices
from . import V1
from .rerank import query_record


def searched_schema(result_ref: dict) -> dict:
    """An image's answer as /v1/embeddings gives it, each face with the RerankResult of its embedding."""
    schema = copy.deepcopy(image_schema())
    face = schema["anyOf"][0]["properties"]["faces"]["items"]
    face["properties"]["result"] = result_ref
    face["required"] = [*face["required"], "result"]
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

    async def searched(answer: ImageAnswer, options) -> dict:
        out = answer.json(services, options.aligned)
        if answer.error is None:
            queries = [query_record(options, gallery_id=options.gallery_id, embedding=f.embedding.tolist()) for f in answer.faces]
            results = await asyncio.gather(*(services.galleries.ask(q) for q in queries))
            for face, ranked in zip(out["faces"], results, strict=True):
                face["result"] = result_json(ranked)
        return out

    @api.post(
        f"{V1}/search",
        summary="Find the faces of images in a gallery",
        description=(
            "Images as in /v1/embeddings, plus `gallery_id` and the ranking of /v1/rerank (`params` only in JSON). "
            "Every face kept is embedded and asked of the worker holding the gallery; each face of the answer "
            "carries its RerankResult."
        ),
        openapi_extra=parts.body(models.SearchBody, models.SearchOptions, max_images),
        responses={**parts.answer("One answer per image, in order.", answer), **documented(400, 401, 404, 413, 415, 422, 503, 504)},
    )
    async def search(request: Request) -> JSONResponse:
        options, payloads = await image_body(request, models.SearchBody, models.SearchOptions, max_images)
        answers = await answer_images(services, payloads, options)
        return JSONResponse({"images": await asyncio.gather(*(searched(a, options) for a in answers))})

    return api

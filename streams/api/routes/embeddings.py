"""``POST /v1/embeddings``: images in, each image's FaceEmbeddings out (or its own typed error)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...face_records import model_record
from ..bodies import image_body
from ..images import answer_images
from ..openapi import OpenApiParts
from ..problems import documented
from ..records import image_schema, model_schema
from ..requests import RequestModels
from ..services import ApiServices
from . import V1


def router(services: ApiServices, models: RequestModels, parts: OpenApiParts) -> APIRouter:
    api = APIRouter()
    answer = {
        "type": "object",
        "required": ["images", "model"],
        "properties": {
            "images": {"type": "array", "items": parts.schema("ImageEmbeddings", image_schema())},
            "model": model_schema(),
        },
    }
    max_images = services.settings.api_max_images

    @api.post(
        f"{V1}/embeddings",
        summary="Detect, align and embed the faces of one or more images",
        description=(
            "Images as multipart files in the `images` field (options as form fields) or as JSON "
            "`{\"images\": [base64, ...], ...options}`. Each image answers with the fields of a FaceEmbeddings "
            "record (faces with bbox, score, landmarks, embedding and, when asked, the aligned crop; the model; "
            "timings), or with its own error code; the others still answer. Concurrent requests share model calls."
        ),
        openapi_extra=parts.body(models.EmbeddingsBody, models.FaceOptions, max_images),
        responses={**parts.answer("One answer per image, in order.", answer), **documented(400, 401, 413, 415, 422, 503, 504)},
    )
    async def embeddings(request: Request) -> JSONResponse:
        options, payloads = await image_body(request, models.EmbeddingsBody, models.FaceOptions, max_images)
        answers = await answer_images(services, payloads, options)
        return JSONResponse(
            {
                "images": [a.json(services, options.aligned) for a in answers],
                "model": model_record(await services.identity()),
            }
        )

    return api

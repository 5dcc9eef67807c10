"""``POST /v1/rerank``: a query embedding ranked against inline candidates (here) or a gallery (by its workers)."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...errors import RecordError
from ..bodies import json_body
from ..inline import InlineRanker
from ..openapi import OpenApiParts
from ..problems import Problem, documented
from ..records import result_json, result_schema
from ..requests import RequestModels
from ..services import ApiServices
from . import V1

#: The gallery id an inline query carries (the record needs one; the ranker ignores it).
INLINE_GALLERY = "inline"


def query_record(body: Any, *, gallery_id: str, embedding: list[float], candidates: list | None = None) -> dict[str, Any]:
    """The ``RerankQuery`` record a request asks for; its query id is new."""
    return {
        "query_id": uuid.uuid4().hex,
        "gallery_id": gallery_id,
        "candidates": candidates,
        "embedding": embedding,
        "top_k": body.top_k,
        "threshold": body.threshold,
        "method": body.method,
        "params": body.params,
        "produced_at": int(time.time() * 1000),
    }


async def rank(services: ApiServices, inline: InlineRanker, body: Any) -> dict[str, Any]:
    """The RerankResult record of a rerank body: in-process for inline candidates, else from the gallery's worker."""
    if body.candidates is None:
        return await services.galleries.ask(query_record(body, gallery_id=body.gallery_id, embedding=body.embedding))
    candidates = [{"id": c.id, "embedding": c.embedding} for c in body.candidates]
    query = query_record(body, gallery_id=INLINE_GALLERY, embedding=body.embedding, candidates=candidates)
    try:
        return await inline.rank(query)
    except RecordError as exc:
        raise Problem.of(exc) from None


def router(services: ApiServices, models: RequestModels, parts: OpenApiParts) -> APIRouter:
    api = APIRouter()
    inline = InlineRanker(services.ctx)
    result = parts.schema("RerankResult", result_schema())

    @api.post(
        f"{V1}/rerank",
        summary="Rank a query embedding against inline candidates or a gallery",
        description=(
            "As a RerankQuery: `candidates` are ranked in this process by the rerank agent's own code; a "
            "`gallery_id` is asked of the worker that holds the gallery, over Kafka (504 when it does not answer "
            "in time). The answer is the RerankResult record, without its source coordinates."
        ),
        openapi_extra=parts.body(models.RerankBody),
        responses={**parts.answer("The ranking.", result), **documented(400, 401, 404, 413, 415, 422, 503, 504)},
    )
    async def rerank(request: Request) -> JSONResponse:
        body = await json_body(request, models.RerankBody)
        return JSONResponse(result_json(await rank(services, inline, body)))

    return api

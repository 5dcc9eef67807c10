"""Request bodies in: JSON validated against a model, or multipart form data with image parts.

A route that takes images takes them either way: JSON ``{"images": [base64,
...], ...options}``, or ``multipart/form-data`` with one or more files in the
``images`` field and the options as plain fields. Both end as the same options
model and a list of payloads; a payload that is not base64 is that image's
error, not the request's. Anything else is 415; what does not parse is 400;
what parses but breaks the schema is 422.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.requests import Request

from ..errors import ErrorCode, RecordError
from .problems import BAD_REQUEST, INVALID_REQUEST, Problem
from .protection import BodyTooLarge

#: Name of the form field (and JSON member) that holds the images.
IMAGES_FIELD = "images"
#: Most plain form fields one multipart body may carry (the options).
MAX_FORM_FIELDS = 32

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class Payload:
    """One image of a request, by its position: its bytes and declared type, or why it has none."""

    index: int
    data: bytes | None = None
    content_type: str | None = None
    error: RecordError | None = None


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def problem_of(exc: Any) -> Problem:
    """A pydantic (or FastAPI) refusal as 400 (not JSON at all) or 422 (not of the schema), naming the first error."""
    first = (exc.errors() or [{}])[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "body"
    code = BAD_REQUEST if first.get("type") == "json_invalid" else INVALID_REQUEST
    return Problem(code, f"{where}: {first.get('msg')}"[:1000])


async def json_body(request: Request, model: type[M]) -> M:
    """The body as ``model``; 415 unless it is JSON."""
    if media_type(request) != "application/json":
        raise Problem(ErrorCode.UNSUPPORTED_CONTENT_TYPE, "send application/json")
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        raise problem_of(exc) from None


async def image_body(request: Request, json_model: type[M], form_model: type[BaseModel], max_images: int) -> tuple[M | BaseModel, list[Payload]]:
    """(options, payloads) of a route that takes images, from JSON or multipart form data."""
    kind = media_type(request)
    if kind == "application/json":
        body = await json_body(request, json_model)
        return body, [from_base64(i, text) for i, text in enumerate(getattr(body, IMAGES_FIELD))]
    if kind == "multipart/form-data":
        return await _form(request, form_model, max_images)
    raise Problem(ErrorCode.UNSUPPORTED_CONTENT_TYPE, "send application/json or multipart/form-data")


async def _form(request: Request, model: type[BaseModel], max_images: int) -> tuple[BaseModel, list[Payload]]:
    try:
        form = await request.form(max_files=max_images, max_fields=MAX_FORM_FIELDS)
    except BodyTooLarge:
        raise
    except Exception as exc:  # noqa: BLE001 -- starlette's multipart refusals come in several types
        raise Problem(BAD_REQUEST, f"the multipart body does not parse: {getattr(exc, 'detail', exc)}") from None
    try:
        files, options = [], {}
        for name, value in form.multi_items():
            if name == IMAGES_FIELD:
                if not isinstance(value, UploadFile):
                    raise Problem(INVALID_REQUEST, f"{IMAGES_FIELD}: each part must be a file")
                files.append(value)
            elif isinstance(value, UploadFile):
                raise Problem(INVALID_REQUEST, f"{name}: a file where a value goes")
            else:
                options[name] = value
        if not 1 <= len(files) <= max_images:
            raise Problem(INVALID_REQUEST, f"{IMAGES_FIELD}: give 1 to {max_images} files, got {len(files)}")
        try:
            parsed = model.model_validate(options)
        except ValidationError as exc:
            raise problem_of(exc) from None
        payloads = [Payload(i, await f.read(), f.content_type) for i, f in enumerate(files)]
        return parsed, payloads
    finally:
        await form.close()


def from_base64(index: int, text: str) -> Payload:
    try:
        return Payload(index, base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError):
        return Payload(index, error=RecordError(ErrorCode.BAD_EVENT, f"image {index} is not base64"))


def form_schema(model: type[BaseModel], description: str, max_images: int) -> dict:
    """The OpenAPI schema of the multipart form of ``model``: its fields plus the image files."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.pop("additionalProperties", None)
    schema["properties"] = {
        IMAGES_FIELD: {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "minItems": 1,
            "maxItems": max_images,
            "description": description,
        },
        **schema.get("properties", {}),
    }
    schema["required"] = [IMAGES_FIELD, *schema.get("required", [])]
    return schema

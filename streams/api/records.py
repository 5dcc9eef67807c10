"""The API's answers are the stream's records, in JSON, with JSON Schemas derived from ``schemas/*.avsc``.

An image's answer is the ``FaceEmbeddings`` record the embed agent publishes for
it (its faces, model and timings, built by :mod:`streams.face_records`), less
the fields that only a topic has (source coordinates, attributes); a ranking is
the ``RerankResult`` the rerank agent builds, less its source coordinates. The
OpenAPI schemas of both are translated from the Avro schemas here, so a field
added to a record appears in the HTTP answer and in ``/openapi.json`` at once.
JSON has no bytes: they travel as base64; a timestamp is epoch milliseconds.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import functools
from typing import Any

from .. import schemas
from ..face_records import face_output, model_record
from ..pipeline import Face, ImageFaces, ModelIdentity

#: Fields of a FaceEmbeddings record that belong to a topic, not to an HTTP answer.
TOPIC_ONLY_EMBEDDINGS = ("image_id", "source", "attributes", "processed_at")
#: Fields of a RerankResult that belong to a topic.
TOPIC_ONLY_RESULT = ("source",)

_PRIMITIVES = {
    "null": {"type": "null"},
    "boolean": {"type": "boolean"},
    "int": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1},
    "long": {"type": "integer"},
    "float": {"type": "number"},
    "double": {"type": "number"},
    "string": {"type": "string"},
    "bytes": {"type": "string", "contentEncoding": "base64"},
}


def json_schema(avro: Any, omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON Schema of the JSON form (:func:`jsonable`) of records of ``avro``; ``omit``: top-level fields left out."""
    return _convert(avro, {}, omit)


def _convert(avro: Any, named: dict[str, dict[str, Any]], omit: tuple[str, ...] = ()) -> dict[str, Any]:
    if isinstance(avro, list):
        return {"anyOf": [_convert(branch, named) for branch in avro]}
    if isinstance(avro, str):
        if avro in _PRIMITIVES:
            return dict(_PRIMITIVES[avro])
        return named[avro.rsplit(".", 1)[-1]]  # a named type defined earlier in the schema
    kind = avro["type"]
    if avro.get("logicalType") == "timestamp-millis":
        out: dict[str, Any] = {"type": "integer", "description": "Epoch milliseconds."}
    elif kind == "record":
        fields = [f for f in avro["fields"] if f["name"] not in omit]
        out = {
            "type": "object",
            "properties": {f["name"]: _field(f, named) for f in fields},
            "required": [f["name"] for f in fields if "default" not in f],  # an older writer's record lacks the rest
        }
        named[avro["name"]] = out
    elif kind == "enum":
        out = {"type": "string", "enum": list(avro["symbols"])}
        named[avro["name"]] = out
    elif kind == "array":
        out = {"type": "array", "items": _convert(avro["items"], named)}
    elif kind == "map":
        out = {"type": "object", "additionalProperties": _convert(avro["values"], named)}
    else:
        out = _convert(kind, named)
    if avro.get("doc") and kind in ("record", "enum"):
        out["description"] = avro["doc"]
    return out


def _field(field: dict[str, Any], named: dict[str, dict[str, Any]]) -> dict[str, Any]:
    schema = dict(_convert(field["type"], named))
    if field.get("doc"):
        schema["description"] = field["doc"]
    return schema


def jsonable(value: Any) -> Any:
    """A decoded or built record as JSON: bytes as base64, times as epoch milliseconds."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return round(value.timestamp() * 1000)
    return value


# --- images ------------------------------------------------------------------


@functools.cache
def image_schema() -> dict[str, Any]:
    """One image's answer: its index in the request and its FaceEmbeddings fields, or its error."""
    found = json_schema(schemas.load_json("FaceEmbeddings"), omit=TOPIC_ONLY_EMBEDDINGS)
    found["properties"] = {"index": {"type": "integer", "minimum": 0}, **found["properties"]}
    found["required"] = ["index", *found["required"]]
    failed = {
        "type": "object",
        "required": ["index", "error"],
        "properties": {"index": {"type": "integer", "minimum": 0}, "error": {"$ref": "#/components/schemas/Problem"}},
        "description": "An image that could not be processed: a dead-letter ErrorCode and why.",
    }
    return {"anyOf": [found, failed]}


def model_schema() -> dict[str, Any]:
    return image_schema()["anyOf"][0]["properties"]["model"]


def face_json(face: Face, aligned: bool) -> dict[str, Any]:
    """A ``Face`` record as the embed agent publishes it; the aligned crop only when asked for."""
    return jsonable(face_output(face if aligned else dataclasses.replace(face, aligned=None)))


def image_json(
    index: int, faces: list[Face], found: ImageFaces, identity: ModelIdentity, timings_ms: dict[str, float], aligned: bool
) -> dict[str, Any]:
    """The answer for one image: its faces, the models and the timings (the batch's, plus this image's own)."""
    return {
        "index": index,
        "faces": [face_json(face, aligned) for face in faces],
        "model": model_record(identity),
        "timings_ms": {**{k: round(v, 3) for k, v in found.timings_ms.items()}, **timings_ms},
    }


def image_error(index: int, code: str, message: str) -> dict[str, Any]:
    return {"index": index, "error": {"code": code, "message": message}}


# --- rankings ----------------------------------------------------------------


@functools.cache
def result_schema() -> dict[str, Any]:
    return json_schema(schemas.load_json("RerankResult"), omit=TOPIC_ONLY_RESULT)


def result_json(record: dict[str, Any]) -> dict[str, Any]:
    """A ``RerankResult`` (built in-process or read from the results topic) as the API answers it."""
    return jsonable({k: v for k, v in record.items() if k not in TOPIC_ONLY_RESULT})

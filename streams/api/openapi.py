"""The parts of ``/openapi.json`` FastAPI cannot see: bodies read by hand, answers derived from Avro.

Routes that take JSON *or* multipart read their own bodies, so their request
schemas are declared here from the same pydantic models that validate them;
their answers are the stream's records, whose schemas :mod:`streams.api.records`
derives from ``schemas/*.avsc``. Both land in ``components.schemas`` beside the
``Problem`` body every error has.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from .bodies import form_schema
from .problems import PROBLEM_SCHEMA

REF = "#/components/schemas/{model}"


class OpenApiParts:
    """Component schemas collected while the routes are declared, merged into the generated document."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}

    def model(self, model: type[BaseModel]) -> dict[str, str]:
        """A ``$ref`` to ``model``'s schema (its nested models become components too)."""
        schema = model.model_json_schema(ref_template=REF)
        self.components.update(schema.pop("$defs", {}))
        self.components[model.__name__] = schema
        return {"$ref": REF.format(model=model.__name__)}

    def schema(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        self.components[name] = schema
        return {"$ref": REF.format(model=name)}

    def body(self, json_model: type[BaseModel], form_model: type[BaseModel] | None = None, max_images: int = 0) -> dict:
        """``openapi_extra`` declaring a required JSON body of ``json_model`` (and a multipart form, when given)."""
        content: dict[str, Any] = {"application/json": {"schema": self.model(json_model)}}
        if form_model is not None:
            content["multipart/form-data"] = {"schema": form_schema(form_model, "The images, one file each.", max_images)}
        return {"requestBody": {"required": True, "content": content}}

    @staticmethod
    def answer(description: str, schema: dict[str, Any], status: int = 200) -> dict[int, dict]:
        return {status: {"description": description, "content": {"application/json": {"schema": schema}}}}

    def install(self, app: FastAPI) -> None:
        """Make ``app.openapi()`` include the collected components."""

        def openapi() -> dict[str, Any]:
            if app.openapi_schema is None:
                document = get_openapi(
                    title=app.title, version=app.version, description=app.description, routes=app.routes
                )
                document.setdefault("components", {}).setdefault("schemas", {}).update(self.components)
                app.openapi_schema = document
            return app.openapi_schema

        app.openapi = openapi  # type: ignore[method-assign]

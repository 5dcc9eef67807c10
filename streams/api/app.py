"""The ASGI app of ``facestream api``, built from :class:`~streams.config.Settings`.

:func:`create_app` wires the services (started and stopped with the app), the
middleware (metrics outermost, so refusals are counted too; then protection),
the error handlers (every error a ``{code, message}`` body), the routes and
``/docs``. A test runs it in-process; the command runs it under uvicorn.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from .. import __version__
from ..config import Settings
from .bodies import problem_of
from .docs import install_docs
from .http_metrics import HttpMetrics
from .keys import configured_keys, key_check
from .openapi import OpenApiParts
from .problems import BAD_REQUEST, METHOD_NOT_ALLOWED, NOT_FOUND, Problem, response
from .protection import Protection
from .requests import RequestModels
from .routes import embeddings, galleries, operations, rerank, search
from .services import ApiServices

TITLE = "facestream"
DESCRIPTION = (
    "Face embeddings and re-ranking over HTTP: the stream processor's pipeline, re-ranker and galleries. "
    "Galleries live in Kafka; gallery routes reach the workers that hold them."
)
CODE_OF_STATUS = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}


def create_app(settings: Settings, services: ApiServices | None = None) -> FastAPI:
    services = services or ApiServices(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.close()

    app = FastAPI(
        title=TITLE, version=__version__, description=DESCRIPTION, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.services = services
    parts = OpenApiParts()
    keys = configured_keys(settings)
    models = RequestModels(settings)
    # Only with keys configured does a /v1 route declare (and check) one: without them, none is asked for.
    v1 = APIRouter(dependencies=[Depends(key_check(keys))] if keys else [])
    for group in (embeddings, rerank, search, galleries):
        v1.include_router(group.router(services, models, parts))
    app.include_router(v1)
    app.include_router(operations.router(services, parts))
    install_docs(app)
    parts.install(app)

    @app.exception_handler(Problem)
    async def problem(_request: Request, exc: Problem):
        return response(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        return response(problem_of(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException):
        return response(Problem(CODE_OF_STATUS.get(exc.status_code, BAD_REQUEST), str(exc.detail), status=exc.status_code))

    app.add_middleware(Protection, settings=settings)
    app.add_middleware(HttpMetrics)
    return app

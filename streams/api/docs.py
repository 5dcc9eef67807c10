"""``/docs``: Swagger UI over ``/openapi.json``, every asset served by this process (no CDN).

Deployments are often air-gapped, so the page's script and style come from the
``swagger-ui-py`` package's own copy of Swagger UI 5 (the first to read the
OpenAPI 3.1 that FastAPI writes), mounted under ``/docs/assets``; the page names
no other host. ``scripts/docs_screenshot.py`` opens it in headless Chromium.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from importlib.resources import files

ASSETS = "/docs/assets"
#: Swagger UI's files as the swagger-ui-py package ships them.
SWAGGER_UI_FILES = files("swagger_ui") / "static"


def install_docs(app: FastAPI) -> None:
    """Serve Swagger UI at ``/docs`` from local files (the app is made with ``docs_url=None``)."""
    app.mount(ASSETS, StaticFiles(directory=str(SWAGGER_UI_FILES)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

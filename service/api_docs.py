"""Swagger UI at ``/docs``, from files shipped with the package rather than from a CDN.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from a CDN, so on a
machine without internet it stays blank. Here the page is FastAPI's (`get_swagger_ui_html`),
pointed at ``/docs/assets/``, where the files of the npm package ``swagger-ui-dist`` are
served from ``service/static/swagger-ui/`` (version and provenance in its README; ``make
swagger-ui`` refreshes them). The online validator badge is switched off (``validatorUrl``),
so the page sends nothing beyond this server.

FastAPI's ReDoc page (``/redoc``) is not served: it was another page loading from a CDN, which
the docs never mentioned, and one interactive page over ``/openapi.json`` is enough.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
ASSETS_DIR = Path(__file__).resolve().parent / "static" / "swagger-ui"


def install_api_docs(app: FastAPI) -> None:
    """Serve Swagger UI at `DOCS_PATH`, its files under `ASSETS_PATH`.

    `app` must be built with ``docs_url=None`` and ``redoc_url=None`` (no CDN pages), and
    this must run before anything is mounted at ``/``, which would shadow both routes.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError(
            f"the app must not serve FastAPI's CDN pages, got {app.docs_url=}, {app.redoc_url=}"
        )
    openapi_url = app.openapi_url
    if openapi_url is None:
        raise ValueError("the app serves no OpenAPI document for Swagger UI to show")
    app.mount(ASSETS_PATH, StaticFiles(directory=ASSETS_DIR), name="api-docs-assets")

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        # Behind a proxy that strips a prefix, every URL of the page needs it back.
        root = str(request.scope.get("root_path", "")).rstrip("/")
        assets = f"{root}{ASSETS_PATH}"
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )


__all__ = ["ASSETS_DIR", "ASSETS_PATH", "DOCS_PATH", "install_api_docs"]

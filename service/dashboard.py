"""optuna-dashboard on the server's own Optuna storage, served by the same process.

The dashboard's front end hard-codes its ``/dashboard`` pages, its ``/api/*`` JSON and its
``/static/*`` files, so it cannot live under a sub-path. It is therefore the app's fallback:
mounted at ``/`` after our routes (``/api/v1``, ``/healthz``, ``/metrics``, ``/docs``,
``/openapi.json``), which Starlette matches first. Its WSGI app (bottle) runs in a2wsgi's
thread pool.

The WSGI app is built at start-up, once the lifespan has migrated the database (building it
earlier would open the storage before its tables exist); until then it answers 503.
"""

from __future__ import annotations

import logging

import optuna
import optuna_dashboard
from a2wsgi import WSGIMiddleware
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

DASHBOARD_PATH = "/dashboard"


class Dashboard:
    """ASGI app serving optuna-dashboard once `attach` gave it a storage.

    Args:
        workers: threads that run the WSGI app (each request holds one while it runs).
    """

    def __init__(self, workers: int = 8) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers=}")
        self._workers = workers
        self._app: ASGIApp | None = None

    def attach(self, storage: optuna.storages.BaseStorage) -> None:
        """Serve the dashboard of `storage` from now on."""
        wsgi_app = optuna_dashboard.wsgi(storage)
        self._app = WSGIMiddleware(wsgi_app, workers=self._workers)  # type: ignore[assignment]
        logger.debug("optuna-dashboard attached at %s", DASHBOARD_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            if scope["type"] == "http":
                response = PlainTextResponse("the dashboard is starting", status_code=503)
                await response(scope, receive, send)
            return
        await self._app(scope, receive, send)


__all__ = ["DASHBOARD_PATH", "Dashboard"]

"""optuna-dashboard on the server's own Optuna storage, served by the same process.

The dashboard's front end hard-codes its ``/dashboard`` pages, its ``/api/*`` JSON and its
``/static/*`` files, so it cannot live under a sub-path. It is therefore the app's fallback:
mounted at ``/`` after our routes (``/api/v1``, ``/healthz``, ``/metrics``, ``/docs`` and
``/docs/assets/``, ``/openapi.json``), which Starlette matches first. Its WSGI app (bottle)
runs in a2wsgi's thread pool.

The WSGI app is built at start-up, once the lifespan has migrated the database (building it
earlier would open the storage before its tables exist); until then it answers 503.

The dashboard catches its own errors and answers 500 (an HTML page, or ``{"reason": "internal
server error"}``), or lets one escape to the ASGI server, which resets the connection. So when
it fails, `Dashboard` asks `probe` whether the database answers: if not, the answer is our 503
``{"detail": "database unreachable: ..."}``, as on the API; else the dashboard's own 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import optuna
import optuna_dashboard
from a2wsgi import WSGIMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage import StorageError

logger = logging.getLogger(__name__)

DASHBOARD_PATH = "/dashboard"


class Dashboard:
    """ASGI app serving optuna-dashboard once `attach` gave it a storage.

    Args:
        workers: threads that run the WSGI app (each request holds one while it runs).
        probe: raises `StorageError` when the database cannot be used (``check_health``); run
            after a failed answer to tell a database outage (503) from a dashboard bug (500).
    """

    def __init__(self, workers: int = 8, probe: Callable[[], object] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers=}")
        self._workers = workers
        self._probe = probe
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
        if scope["type"] != "http" or self._probe is None:
            await self._app(scope, receive, send)
            return
        held: list[Message] = []  # a 5xx answer, kept until the probe has spoken
        sent = failed = False

        async def guarded_send(message: Message) -> None:
            nonlocal sent
            failing = message["type"] == "http.response.start" and message["status"] >= 500
            if failing or held:
                held.append(message)
            else:
                sent = True
                await send(message)

        try:
            await self._app(scope, receive, guarded_send)
        except Exception:
            if sent:
                raise  # the answer is on its way: nothing else can be said
            logger.exception("optuna-dashboard failed on %s", scope["path"])
            failed = True
        if sent:
            return
        outage = await run_in_threadpool(self._outage)
        if outage is not None:
            await JSONResponse({"detail": outage}, status_code=503)(scope, receive, send)
        elif held and not failed:
            for message in held:
                await send(message)
        else:
            detail = "internal error in optuna-dashboard (see the server log)"
            await JSONResponse({"detail": detail}, status_code=500)(scope, receive, send)

    def _outage(self) -> str | None:
        """The database's failure (one line), or None when it answers."""
        assert self._probe is not None
        try:
            self._probe()
        except StorageError as exc:
            return str(exc)
        return None


__all__ = ["DASHBOARD_PATH", "Dashboard"]

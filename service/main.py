"""The FastAPI application: `create_app(settings)`.

Start-up (the lifespan) migrates the database, registers the plugin experiments the server's
settings allow, and attaches optuna-dashboard to the same Optuna storage. ``uvicorn --factory
service.main:app_from_env`` builds the app from the environment (``MTLSEARCH_*``); ``mtlsearch
serve`` does the same with its flags.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.middleware.trustedhost import TrustedHostMiddleware

from mtlsearch.settings import Settings
from service.api.main import API_PREFIX, api_router
from service.api.routes import health, metrics
from service.api_docs import install_api_docs
from service.dashboard import DASHBOARD_PATH, Dashboard
from service.errors import install_error_handlers
from service.middleware import BodyLimit, TokenGuard
from service.services.experiments import load_experiments
from service.services.health import check_health
from service.services.metrics import build_registry
from service.services.orphans import OrphanCleaner
from storage import Database
from storage.migrate import upgrade

logger = logging.getLogger(__name__)

DESCRIPTION = f"""
Search the loss weights and weighting strategy of a multi-task model.

* `POST {API_PREFIX}/studies` with a study spec starts a study; workers train its trials.
* `GET {API_PREFIX}/studies/{{id}}/best` gives the best weights, strategy and config.
* Every call that is not GET, HEAD or OPTIONS (to the API and to the dashboard) needs
  `Authorization: Bearer <token>` when the server has `MTLSEARCH_API_TOKEN` set, checked
  before the body is read; GET calls are open. Bodies above `MTLSEARCH_MAX_BODY_BYTES` get 413.
* Errors: `{{"detail": "<one line>"}}` (422 from request validation keeps FastAPI's error list
  under `detail` and adds a one-line `message`).
* optuna-dashboard of the same database: [{DASHBOARD_PATH}]({DASHBOARD_PATH}).
"""


def create_app(settings: Settings) -> FastAPI:
    """Build the app for `settings` (its database, token and allowed experiment modules)."""
    database = Database(settings.db_url, config=settings.database_config())
    orphans = OrphanCleaner(database)
    dashboard = Dashboard(probe=partial(check_health, database))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(upgrade, settings.db_url)
        await run_in_threadpool(load_experiments, settings.allowed_experiment_modules)
        storage = await run_in_threadpool(database.optuna_storage)
        dashboard.attach(storage)
        logger.info(
            "serving %s: API %s, dashboard %s", database.display_url, API_PREFIX, DASHBOARD_PATH
        )
        try:
            yield
        finally:
            orphans.close()
            database.dispose()

    app = FastAPI(
        title="mtlsearch",
        description=DESCRIPTION,
        version=_version(),
        lifespan=lifespan,
        # /docs is served from the package's own files (service/api_docs.py), not a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.orphans = orphans
    app.state.metrics_registry = build_registry(database, settings)
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    install_api_docs(app)
    # Last: everything our routes do not match (/dashboard, its /api/* and /static/*).
    app.mount("/", dashboard, name="dashboard")
    # add_middleware puts each one outside the previous: hosts, then body size, then token.
    app.add_middleware(TokenGuard, token=settings.api_token)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, drain_bytes=settings.max_drain_bytes
    )
    if settings.trusted_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts)
    return app


def _version() -> str:
    from service.services.health import _version as version

    return version()


def app_from_env() -> FastAPI:
    """The app for the process's `Settings` (environment ``MTLSEARCH_*``); for ``uvicorn
    --factory``."""
    from mtlsearch.settings import get_settings

    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return create_app(settings)


__all__ = ["app_from_env", "create_app"]

"""`mtlsearch serve`: the REST API and optuna-dashboard in one process (uvicorn)."""

from __future__ import annotations

import logging

import typer
from rich.markup import escape

from mtlsearch.cli._app import app, console, fail
from mtlsearch.settings import get_settings
from storage import migrate
from storage.database import display_url, parse_db_url
from storage.errors import StorageError

logger = logging.getLogger(__name__)


@app.command("serve")
def serve(
    host: str | None = typer.Option(None, "--host", help="Address to bind (default: settings)."),
    port: int | None = typer.Option(
        None, "--port", min=0, max=65535, help="Port (default: settings, 8000)."
    ),
    db: str | None = typer.Option(
        None, "--db", help="Database URL (default: $MTLSEARCH_DB_URL, else sqlite:///mtlsearch.db)."
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        help="Bearer token required on every call that is not GET (default: $MTLSEARCH_API_TOKEN).",
    ),
) -> None:
    """Migrate the database, then serve the REST API (/api/v1, /docs) and the dashboard."""
    import uvicorn

    from service.main import create_app

    overrides = {
        key: value
        for key, value in (("host", host), ("port", port), ("db_url", db), ("api_token", token))
        if value is not None
    }
    settings = get_settings().model_copy(update=overrides)
    try:
        shown = display_url(parse_db_url(settings.db_url))
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            logging.getLogger("alembic").setLevel(logging.WARNING)
        migrate.upgrade(settings.db_url)
    except (ValueError, StorageError) as exc:
        raise fail(escape(str(exc))) from None
    base = f"http://{_url_host(settings.host)}:{settings.port}"
    console.print(f"database   {escape(shown)}", highlight=False, soft_wrap=True)
    console.print(f"API docs   {base}/docs", highlight=False, soft_wrap=True)
    console.print(f"dashboard  {base}/dashboard", highlight=False, soft_wrap=True)
    if settings.api_token:
        console.print(
            "every call that is not GET needs the bearer token (dashboard read-only)",
            highlight=False,
        )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host

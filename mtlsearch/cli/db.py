"""`mtlsearch db upgrade` and `mtlsearch db current`: the database schema."""

from __future__ import annotations

import logging

import typer
from rich.markup import escape

from mtlsearch.cli._app import app, console, fail
from mtlsearch.settings import get_settings
from storage import migrate
from storage.database import display_url, parse_db_url
from storage.errors import StorageError

db_app = typer.Typer(
    help="Create, upgrade or inspect the database schema (Optuna's tables and ours).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")

_DB_HELP = "Database URL (default: $MTLSEARCH_DB_URL, else sqlite:///mtlsearch.db)."


def _url(db: str | None) -> str:
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # Alembic logs each step at INFO; the verb prints its one-line result itself.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    return db if db is not None else get_settings().db_url


def _shown(url: str) -> str:
    try:
        return display_url(parse_db_url(url))
    except ValueError:
        return url


@db_app.command("upgrade")
def upgrade(db: str | None = typer.Option(None, "--db", help=_DB_HELP)) -> None:
    """Create the tables, or bring them to the newest schema (safe to run again)."""
    url = _url(db)
    try:
        revision = migrate.upgrade(url)
    except (ValueError, StorageError) as exc:
        raise fail(escape(str(exc))) from None
    console.print(
        f"{escape(_shown(url))}: schema at revision {revision} (head)",
        highlight=False,
        soft_wrap=True,
    )


@db_app.command("current")
def current(db: str | None = typer.Option(None, "--db", help=_DB_HELP)) -> None:
    """Show the schema revision of the database and whether it is the newest."""
    url = _url(db)
    try:
        versions = migrate.current(url)
    except (ValueError, StorageError) as exc:
        raise fail(escape(str(exc))) from None
    if versions.revision is None:
        state = "not created: run `mtlsearch db upgrade`"
    elif versions.is_current:
        state = "head"
    else:
        state = f"behind head {versions.head}: run `mtlsearch db upgrade`"
    console.print(
        f"{escape(_shown(url))}: mtlsearch schema {versions.revision or '-'} ({state}); "
        f"optuna schema {versions.optuna_revision or '-'}",
        highlight=False,
        soft_wrap=True,
    )

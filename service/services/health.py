"""Liveness of the server and its database."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from sqlalchemy import text

from service.schemas.common import HealthPublic
from storage import Database


def _version() -> str:
    try:
        return version("mtlsearch")
    except PackageNotFoundError:
        return "unknown"


def check_health(database: Database) -> HealthPublic:
    """Run ``SELECT 1`` on the database.

    Raises:
        StorageError: the database cannot be reached.
    """
    with database.session() as session:
        session.execute(text("SELECT 1"))
    return HealthPublic(status="ok", database=database.backend, version=_version())


__all__ = ["check_health"]

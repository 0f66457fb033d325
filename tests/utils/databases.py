"""A migrated `storage.Database` with the settings a test needs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mtlsearch.settings import Settings
from storage import Database
from storage.migrate import upgrade


@contextmanager
def migrated_database(url: str, settings: Settings) -> Iterator[Database]:
    """Upgrade `url` to the latest schema and yield a `Database` on it, disposed afterwards."""
    upgrade(url)
    database = Database(url, config=settings.database_config())
    try:
        yield database
    finally:
        database.dispose()

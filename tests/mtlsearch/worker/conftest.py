"""Fixtures of the worker tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from storage import Database
from tests.mtlsearch.worker.helpers import SETTINGS
from tests.utils.databases import migrated_database


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    """A migrated SQLite database with the worker tests' short heartbeats."""
    with migrated_database(sqlite_url, SETTINGS) as database:
        yield database

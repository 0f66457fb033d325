"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# A private PostgreSQL cluster that a test may stop and start (fault tests).
from tests.utils.private_postgres import private_postgres  # noqa: F401

if TYPE_CHECKING:
    from storage import Database

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data sets: $MTLSEARCH_DATA_DIR, else ../shared/data beside the checkout."""
    configured = os.environ.get("MTLSEARCH_DATA_DIR")
    path = Path(configured) if configured else REPO_ROOT.parent / "shared" / "data"
    if not (path / "mnist").is_dir():
        pytest.fail(f"data directory {path} has no mnist/; set MTLSEARCH_DATA_DIR")
    return path


# --- databases -------------------------------------------------------------------------------


@contextmanager
def postgres_database_or_fail() -> Iterator[str]:
    """`storage.testing.temporary_postgres_database`, failing the test when it is unreachable.

    Fails (never skips): CI has the server, and a silent skip would hide a whole backend.
    """
    from storage import StorageError
    from storage.testing import temporary_postgres_database

    with ExitStack() as stack:
        try:
            url = stack.enter_context(temporary_postgres_database())
        except StorageError as exc:
            pytest.fail(f'{exc}, or deselect these tests with -m "not postgres"', pytrace=False)
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards.

    Fails (never skips) when the server is unreachable: CI has it, and a silent skip would hide
    a whole backend. Deselect locally with ``-m "not postgres"``.
    """
    with postgres_database_or_fail() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """A SQLite file in the test's tmp_path (created on first connect)."""
    from storage import close_database

    url = f"sqlite:///{tmp_path / 'mtlsearch.db'}"
    yield url
    close_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each backend in turn: the contract suite runs on SQLite and on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def database(db_url: str) -> Iterator[Database]:
    """A migrated `storage.Database` on each backend (see `db_url`)."""
    from storage import close_database, get_database
    from storage.migrate import upgrade

    upgrade(db_url)
    yield get_database(db_url)
    close_database(db_url)

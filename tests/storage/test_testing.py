"""`storage.testing.temporary_postgres_database`: created, usable, dropped; a clear error."""

from __future__ import annotations

import re

import psycopg
import pytest
from sqlalchemy import create_engine, text

from storage import StorageError
from storage.testing import POSTGRES_ADMIN_URL, temporary_postgres_database


def _exists(name: str) -> bool:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@pytest.mark.postgres
def test_database_exists_inside_and_is_dropped_after() -> None:
    with temporary_postgres_database("mtl_testing") as url:
        name = url.rsplit("/", 1)[1]
        assert url.startswith("postgresql+psycopg://") and name.startswith("mtl_testing_")
        # A connection still open must not block the drop.
        engine = create_engine(url)
        connection = engine.connect()
        assert connection.execute(text("SELECT 1")).scalar() == 1
        assert _exists(name)
    connection.invalidate()  # the drop ended it; no reset on return to the pool
    engine.dispose()
    assert not _exists(name)


def test_unreachable_server_names_the_admin_url() -> None:
    admin_url = "postgresql://postgres@127.0.0.1:1/test"
    with (
        pytest.raises(
            StorageError, match=re.escape(f"PostgreSQL is not reachable at {admin_url} (")
        ),
        temporary_postgres_database(admin_url=admin_url),
    ):
        pass


@pytest.mark.postgres
def test_a_copy_of_a_template_holds_its_rows_and_is_its_own() -> None:
    with temporary_postgres_database("mtl_testing_template") as template_url:
        engine = create_engine(template_url)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE kept (n int)"))
            connection.execute(text("INSERT INTO kept VALUES (1), (2)"))
        engine.dispose()  # nobody may be connected to a template
        template = template_url.rsplit("/", 1)[1]
        with temporary_postgres_database("mtl_testing_copy", template=template) as copy_url:
            copy = create_engine(copy_url)
            with copy.begin() as connection:
                assert connection.execute(text("SELECT sum(n) FROM kept")).scalar() == 3
                connection.execute(text("DELETE FROM kept"))
            copy.dispose()
        engine = create_engine(template_url)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT sum(n) FROM kept")).scalar() == 3
        engine.dispose()

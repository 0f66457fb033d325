"""Throwaway PostgreSQL databases for tests and benchmarks.

Usage::

    with temporary_postgres_database() as url:   # postgresql+psycopg://.../mtl_test_<hex>
        upgrade(url)
        ...
    # dropped here, even with connections still open
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.engine import make_url

from storage.database import close_database
from storage.errors import StorageError

#: The server's maintenance database that CREATE / DROP DATABASE run from (trust auth).
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def temporary_postgres_database(
    prefix: str = "mtl_test", *, admin_url: str = POSTGRES_ADMIN_URL, template: str | None = None
) -> Iterator[str]:
    """Create an empty database ``<prefix>_<hex>``, yield its SQLAlchemy URL, then drop it.

    On exit the process's cached `Database` for the URL is closed first; the drop then uses
    ``WITH (FORCE)`` so connections left open elsewhere (a server subprocess) do not block it.

    Args:
        prefix: start of the database name.
        admin_url: libpq URL of an existing database on the server, used for CREATE / DROP.
        template: the name of a database to copy (``CREATE DATABASE ... TEMPLATE``) instead of
            starting empty; nobody may be connected to it (PostgreSQL waits 5 s for them to
            leave, then refuses the copy).

    Raises:
        StorageError: the server is unreachable (the message names `admin_url`).
    """
    import psycopg

    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise StorageError(
            f"PostgreSQL is not reachable at {admin_url} ({first}); start it"
        ) from None
    name = f"{prefix}_{secrets.token_hex(6)}"
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=name)
    url_text = url.render_as_string(hide_password=False)
    with admin:
        copy = f' TEMPLATE "{template}"' if template else ""
        admin.execute(f'CREATE DATABASE "{name}"{copy}')
        try:
            yield url_text
        finally:
            close_database(url_text)
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


__all__ = ["POSTGRES_ADMIN_URL", "temporary_postgres_database"]

"""Alembic environment of mtlsearch's own tables (run by `storage.migrate`, not by hand).

Our revisions are recorded in ``mtl_alembic_version``: Optuna's RDB storage runs its own Alembic
on the same database with the default ``alembic_version`` table. Autogenerate looks only at
``mtl_*`` tables, so it never proposes to drop Optuna's.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from storage.migrate import VERSION_TABLE, include_object
from storage.models import Base

config = context.config


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        include_object=include_object,
        compare_type=True,
        **kwargs,
    )


def run_offline() -> None:
    """Print the SQL instead of running it (``alembic upgrade --sql``)."""
    url = config.get_main_option("sqlalchemy.url")
    _configure(url=url, literal_binds=True, render_as_batch=bool(url and "sqlite" in url))
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    # Batch mode on SQLite: it has almost no ALTER TABLE, so changes copy the table.
    _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Migrate on the connection `storage.migrate` passes, or on a fresh one from the URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
    with engine.connect() as fresh:
        _run(fresh)


if context.is_offline_mode():
    run_offline()
else:
    run_online()

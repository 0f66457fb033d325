"""Create or upgrade the schema: Optuna's tables, then ours (``mtlsearch db upgrade``).

Our migrations live in ``storage/migrations`` (shipped with the package) and are run through
Alembic's API with a `Config` built here, so no ``alembic.ini`` is needed. Their revision is
kept in ``mtl_alembic_version``, apart from the ``alembic_version`` table of Optuna's own
migrations in the same database.

Run it once before starting the API and workers (it is idempotent). It opens a short-lived
engine of its own and disposes it at the end.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from storage.database import (
    display_url,
    engine_options,
    error_line,
    install_sqlite_pragmas,
    parse_db_url,
    prepare_sqlite_file,
)
from storage.errors import StorageError

logger = logging.getLogger(__name__)

VERSION_TABLE = "mtl_alembic_version"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Any fixed 64-bit number: the PostgreSQL advisory lock that serialises concurrent upgrades.
_PG_LOCK_KEY = 0x6D746C5F6D6967


@dataclass(frozen=True, slots=True)
class SchemaVersions:
    """Where a database's schema stands.

    Attributes:
        revision: our revision in the database (None: never upgraded).
        head: our newest revision in this package.
        optuna_revision: Optuna's revision in the database (None: no Optuna tables).
    """

    revision: str | None
    head: str
    optuna_revision: str | None

    @property
    def is_current(self) -> bool:
        """True if our schema is at head."""
        return self.revision == self.head

    @property
    def is_known(self) -> bool:
        """True if our revision is absent or one of this package's (not ahead, not foreign)."""
        return self.revision is None or is_known_revision(self.revision)


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Alembic filter: only our ``mtl_*`` tables (the database also holds Optuna's)."""
    if type_ == "table":
        return bool(name and name.startswith("mtl_"))
    return True


def alembic_config(url: str | None = None) -> Config:
    """An Alembic `Config` for our migrations (e.g. for ``command.revision`` when developing)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # `%` is ConfigParser's interpolation character (it appears in encoded passwords).
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """Our newest migration's revision id."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StorageError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def is_known_revision(revision: str) -> bool:
    """True if `revision` is one of this package's migrations."""
    try:
        return ScriptDirectory.from_config(alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def wait_for_schema(
    url: str, timeout_s: float, *, poll_s: float = 1.0, log_every_s: float = 10.0
) -> SchemaVersions:
    """Wait until the schema at `url` is at head (another process, e.g. the server, creates it).

    Polls `current` every `poll_s` seconds and logs what it waits for every `log_every_s`. An
    unreachable database is waited for as well (its server may still be starting).

    Args:
        timeout_s: how long to wait; 0 checks once.

    Raises:
        ValueError: `url` is not a supported database URL.
        StorageError: the schema is ahead of this package or not ours (at once), or not at
            head after `timeout_s`.
    """
    if timeout_s < 0:
        raise ValueError(f"timeout_s must be >= 0, got {timeout_s=}")
    shown = display_url(parse_db_url(url))
    deadline = time.monotonic() + timeout_s
    next_log = time.monotonic()
    while True:
        unreachable: StorageError | None = None
        try:
            versions = current(url)
        except StorageError as exc:
            unreachable = exc
            state = str(exc)
        else:
            if versions.is_current:
                return versions
            if not versions.is_known:
                raise StorageError(
                    f"{shown} has schema revision {versions.revision}, which this mtlsearch does "
                    f"not know (head {versions.head}): the database is newer than this package "
                    "or not an mtlsearch database"
                )
            state = (
                f"schema at {versions.revision}"
                if versions.revision is not None
                else "no mtlsearch schema yet"
            )
        now = time.monotonic()
        if now >= deadline:
            if unreachable is not None:
                raise unreachable
            hint = f" after {timeout_s:g} s" if timeout_s > 0 else ""
            raise StorageError(
                f"{shown}: {state}, not at head {head_revision()}{hint}; run `mtlsearch db "
                "upgrade` (or start the server, which upgrades it)"
            )
        if now >= next_log:
            logger.info(
                "waiting for the schema of %s to reach head (%s; %.0f s left)",
                shown,
                state,
                deadline - now,
            )
            next_log = now + log_every_s
        time.sleep(min(poll_s, max(deadline - now, 0.0)))


def _lock(connection: Connection) -> None:
    # Held until the migration's transaction ends, so a second `db upgrade` waits and then
    # finds the schema at head.
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade(url: str, revision: str = "head") -> str:
    """Bring the database at `url` to `revision`: Optuna's tables first, then ours.

    Idempotent: at head it changes nothing.

    Returns:
        Our revision after the upgrade.

    Raises:
        ValueError: `url` is not a supported database URL.
        StorageError: the database cannot be reached or a migration failed.
    """
    parsed = parse_db_url(url)
    shown = display_url(parsed)
    prepare_sqlite_file(parsed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # Creates Optuna's tables (and stamps its `alembic_version`) when they are missing.
            optuna_storage = optuna.storages.RDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs=engine_options(parsed),
                skip_compatibility_check=True,
            )
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot open database {shown}: {error_line(exc)}") from exc
    engine = optuna_storage.engine
    try:
        if optuna_storage.get_current_version() != optuna_storage.get_head_version():
            logger.info("upgrading Optuna's tables in %s", shown)
            optuna_storage.upgrade()
        install_sqlite_pragmas(engine, foreign_keys=False)
        config = alembic_config(parsed.render_as_string(hide_password=False))
        with engine.begin() as connection:
            _lock(connection)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            current = MigrationContext.configure(
                connection, opts={"version_table": VERSION_TABLE}
            ).get_current_revision()
    except SQLAlchemyError as exc:
        raise StorageError(f"upgrading {shown} failed: {error_line(exc)}") from exc
    finally:
        engine.dispose()
    logger.info("%s: schema at revision %s", shown, current)
    return current or ""


def current(url: str) -> SchemaVersions:
    """Our schema revision, our head, and Optuna's revision in the database at `url`.

    Reads only: a missing SQLite file is reported as never upgraded, not created.

    Raises:
        ValueError: `url` is not a supported database URL.
        StorageError: the database cannot be reached.
    """
    parsed = parse_db_url(url)
    head = head_revision()
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        return SchemaVersions(revision=None, head=head, optuna_revision=None)
    engine = create_engine(parsed, **engine_options(parsed))
    try:
        with engine.connect() as connection:
            ours = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            theirs = MigrationContext.configure(connection)
            return SchemaVersions(
                revision=ours.get_current_revision(),
                head=head,
                optuna_revision=theirs.get_current_revision(),
            )
    except SQLAlchemyError as exc:
        raise StorageError(f"cannot read {display_url(parsed)}: {error_line(exc)}") from exc
    finally:
        engine.dispose()


__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "SchemaVersions",
    "alembic_config",
    "current",
    "head_revision",
    "include_object",
    "is_known_revision",
    "upgrade",
    "wait_for_schema",
]

"""`Database`: the one object a process uses to reach the shared SQL database.

One engine (and connection pool) per process per URL: the engine of Optuna's
`~optuna.storages.RDBStorage` on that URL is reused for our own sessions, so a worker that asks
and tells trials and also writes heartbeats holds one pool, not two. Its pool is SQLAlchemy's
`QueuePool`, sized by `DatabaseConfig` (5 connections + 5 overflow by default), which covers
the API server's threads and a worker's few. `get_database(url)` returns the process's
`Database` for a URL.

Storage reads no settings: the top of each process (CLI command, API app factory) builds a
`DatabaseConfig` from ``mtlsearch.settings.Settings`` and passes it in.

On PostgreSQL every connection is opened with a bounded connect time and TCP keepalives
(`engine_options`), and the pool tests a connection before lending it: while the server is down
or restarting, each use fails within seconds with `DatabaseUnavailableError` (never hangs), and
once it is back the next use reconnects, without restarting the process.

The tables must exist first: ``mtlsearch db upgrade`` (`storage.migrate.upgrade`) creates
Optuna's tables and ours; a `Database` never creates tables, so processes starting together on
a new database cannot race each other's DDL.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from sqlalchemy import URL, Engine, event, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from storage.errors import (
    DatabaseUnavailableError,
    StorageError,
    describe_error,
    error_line,
    is_unreachable,
)

logger = logging.getLogger(__name__)

VALID_URL_FORMS = (
    "sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "or postgresql+psycopg://user:password@host:5432/dbname"
)
SQLITE_BUSY_TIMEOUT_S = 30.0

# PostgreSQL connection options (libpq's, passed through psycopg): how long a process waits on a
# database that does not answer. Without them a connect to a host that drops packets waits 130 s
# (psycopg's default), and a query on a connection whose server vanished without a word (host
# down, network cut) waits for TCP's retransmissions (about 15 min) or, idle, forever.
#: Seconds a connect may take (libpq ``connect_timeout``).
PG_CONNECT_TIMEOUT_S = 5
#: TCP keepalives (libpq ``keepalives_*``): an idle connection, or one waiting for a result, is
#: probed after 10 s of silence, every 5 s, and dropped after 3 unanswered probes (~25 s).
PG_KEEPALIVES_IDLE_S = 10
PG_KEEPALIVES_INTERVAL_S = 5
PG_KEEPALIVES_COUNT = 3
#: Milliseconds sent data may stay unacknowledged before the connection is dropped (libpq
#: ``tcp_user_timeout``, Linux): covers a server that vanishes while a query is being sent.
PG_TCP_USER_TIMEOUT_MS = 30_000
#: Seconds a caller waits for a free pooled connection before it fails (SQLAlchemy's
#: ``pool_timeout``, default 30): a stuck database must not queue callers for long.
PG_POOL_TIMEOUT_S = 10
#: Milliseconds the server keeps a session that sits in an open transaction without a word
#: (PostgreSQL's ``idle_in_transaction_session_timeout``, set per session through libpq's
#: ``options``). A process cut off by the network in the middle of a transaction holds its row
#: locks (a study's budget row, a trial's row) until the server notices; without this, every
#: other worker waits on them for as long as the cut lasts, or until the server's own TCP
#: keepalives (2 h by default) give up. Our transactions are milliseconds long.
PG_IDLE_IN_TRANSACTION_TIMEOUT_MS = 30_000


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """How one process uses the shared database: its connection pool.

    Built from ``Settings`` at the top of the process (`Settings.database_config`); the defaults
    are those of ``Settings``.

    Args:
        pool_size: PostgreSQL connections the process keeps open (``Settings.db_pool_size``).
        max_overflow: PostgreSQL connections it may open above `pool_size`
            (``Settings.db_max_overflow``).
    """

    pool_size: int = 5
    max_overflow: int = 5

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size=}")
        if self.max_overflow < 0:
            raise ValueError(f"max_overflow must be >= 0, got {self.max_overflow=}")


def parse_db_url(url: str) -> URL:
    """Check a database URL and return it in the form we connect with.

    ``postgresql://`` and ``postgres://`` are read as ``postgresql+psycopg://`` (psycopg 3 is
    the driver we ship). In-memory SQLite is refused: it cannot be shared between processes.

    Raises:
        ValueError: naming the URL (password hidden) and the valid forms.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(f"invalid database URL {url!r}; valid forms: {VALID_URL_FORMS}") from None
    shown = parsed.render_as_string(hide_password=True)
    driver = parsed.drivername
    if driver in ("sqlite", "sqlite+pysqlite"):
        if (
            not parsed.database
            or parsed.database == ":memory:"
            or parsed.database.startswith("file::memory:")
        ):
            raise ValueError(
                f"database URL {shown!r} is an in-memory SQLite database, which processes cannot "
                f"share; valid forms: {VALID_URL_FORMS}"
            )
        return parsed.set(drivername="sqlite")
    if driver in ("postgresql", "postgres", "postgresql+psycopg"):
        if not parsed.database:
            raise ValueError(
                f"database URL {shown!r} names no database; valid forms: {VALID_URL_FORMS}"
            )
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"unsupported database URL {shown!r} (driver {driver!r}); valid forms: {VALID_URL_FORMS}"
    )


def display_url(url: URL) -> str:
    """The URL as it may appear in logs and error messages (password hidden)."""
    return url.render_as_string(hide_password=True)


def engine_options(url: URL, config: DatabaseConfig | None = None) -> dict[str, Any]:
    """Keyword arguments of `create_engine` for this backend (picklable: Optuna keeps them).

    PostgreSQL's pool is sized by `DatabaseConfig.pool_size` / `max_overflow` (default:
    `DatabaseConfig()`): every worker and API process holds one pool, and together they must
    fit the server's ``max_connections``. Its connections get the ``PG_*`` options above (a
    connect timeout, TCP keepalives, a TCP user timeout, an idle-in-transaction timeout),
    unless the URL's query sets one (``?connect_timeout=10`` wins; ``?options=...`` replaces
    ours), and the pool tests each before lending it.
    """
    if url.get_backend_name() == "sqlite":
        # sqlite3's `timeout` is its busy handler: a writer waits for the lock instead of
        # failing at once with "database is locked".
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    config = config or DatabaseConfig()
    connect_args = {
        "connect_timeout": PG_CONNECT_TIMEOUT_S,
        "keepalives": 1,
        "keepalives_idle": PG_KEEPALIVES_IDLE_S,
        "keepalives_interval": PG_KEEPALIVES_INTERVAL_S,
        "keepalives_count": PG_KEEPALIVES_COUNT,
        "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
        "options": f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_TIMEOUT_MS}",
    }
    return {
        # After a restart the pooled connections are dead: test each before lending it.
        "pool_pre_ping": True,
        "pool_size": config.pool_size,
        "max_overflow": config.max_overflow,
        "pool_timeout": PG_POOL_TIMEOUT_S,
        "connect_args": {k: v for k, v in connect_args.items() if k not in url.query},
    }


def prepare_sqlite_file(url: URL) -> None:
    """Create the parent directory of a SQLite file so that the first connect succeeds."""
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def install_sqlite_pragmas(engine: Engine, *, foreign_keys: bool) -> None:
    """Run our PRAGMAs on every new SQLite connection of `engine` (no-op for other backends).

    WAL lets readers (API, dashboard) run beside the one writer; the busy timeout makes a second
    writer wait rather than fail. ``foreign_keys`` is off while migrating: SQLite's batch
    migrations copy and drop tables, which must not cascade.
    """
    if engine.dialect.name != "sqlite":
        return

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL, and faster
            cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        finally:
            cursor.close()

    event.listen(engine, "connect", on_connect)
    # The engine may already hold pooled connections opened before the listener existed
    # (RDBStorage connects in its constructor); drop them so every connection has the PRAGMAs.
    engine.dispose()


def _hint_for(exc: BaseException) -> str:
    text = f"{exc} {exc.__cause__}"
    if "version_info" in text or "alembic_version" in text or "no longer compatible" in text:
        return "; run `mtlsearch db upgrade` to create or upgrade the schema"
    return ""


class Database:
    """The shared database of one URL: engine, sessions and Optuna's storage.

    Args:
        url: SQLAlchemy URL (see `parse_db_url` for the accepted forms).
        config: pool size and heartbeats (default: `DatabaseConfig()`).

    Nothing connects until the first use of `engine`, `session` or `optuna_storage`.
    """

    def __init__(self, url: str, *, config: DatabaseConfig | None = None) -> None:
        self.url: URL = parse_db_url(url)
        self.display_url = display_url(self.url)
        self.config = config or DatabaseConfig()
        self._lock = threading.Lock()
        self._optuna: optuna.storages.RDBStorage | None = None
        self._sessions: sessionmaker[Session] | None = None

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.url.get_backend_name()

    def optuna_storage(self) -> optuna.storages.RDBStorage:
        """Optuna's RDB storage on this URL (one per `Database`), on the same engine.

        No Optuna trial heartbeats: a worker's liveness is its ``mtl_workers`` row, and the
        trials of a dead worker are failed and re-queued from our ``mtl_trials`` rows
        (``mtlsearch.worker.stale``).

        Raises:
            StorageError: the database cannot be reached or has no (or an old) schema.
        """
        with self._lock:
            if self._optuna is None:
                self._optuna = self._open_optuna()
            return self._optuna

    def _open_optuna(self) -> optuna.storages.RDBStorage:
        prepare_sqlite_file(self.url)
        try:
            storage = optuna.storages.RDBStorage(
                self.url.render_as_string(hide_password=False),
                engine_kwargs=engine_options(self.url, self.config),
                skip_table_creation=True,
            )
        except (SQLAlchemyError, optuna.exceptions.OptunaError, RuntimeError) as exc:
            cls = DatabaseUnavailableError if is_unreachable(exc) else StorageError
            raise cls(
                f"cannot open database {self.display_url}: {error_line(exc)}{_hint_for(exc)}"
            ) from exc
        install_sqlite_pragmas(storage.engine, foreign_keys=True)
        logger.debug("opened %s", self.display_url)
        return storage

    @property
    def engine(self) -> Engine:
        """The process's engine for this URL (the one Optuna's storage uses)."""
        return self.optuna_storage().engine

    def _sessionmaker(self) -> sessionmaker[Session]:
        engine = self.engine
        with self._lock:
            if self._sessions is None:
                # Results outlive the session as frozen dataclasses, so nothing needs
                # reloading after commit.
                self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
            return self._sessions

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for one unit of work: commit on success, roll back on any exception.

        `SQLAlchemyError` becomes `StorageError` with a one-line message
        (`DatabaseUnavailableError` when the database cannot be reached); our own errors
        (`NotFoundError`, ...) pass through after the rollback.
        """
        factory = self._sessionmaker()
        session = factory()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            session.rollback()
            raise self.storage_error(exc) from exc
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def storage_error(self, exc: BaseException, doing: str | None = None) -> StorageError:
        """A database failure (SQLAlchemy's, or Optuna's storage error) as a one-line
        `StorageError` naming this database (`describe_error`); `doing` says what failed."""
        return describe_error(self.display_url, exc, doing)

    def dispose(self) -> None:
        """Close the pooled connections (the `Database` reconnects if used again)."""
        with self._lock:
            if self._optuna is not None:
                self._optuna.engine.dispose()


_databases: dict[tuple[int, str], Database] = {}
_databases_lock = threading.Lock()


def _cache_key(url: str) -> tuple[int, str]:
    # Keyed by pid too: a forked child must not share its parent's pooled connections.
    return os.getpid(), parse_db_url(url).render_as_string(hide_password=False)


def get_database(url: str, config: DatabaseConfig | None = None) -> Database:
    """The process's `Database` for `url`, created on first use with `config`.

    A later call for the same URL returns that `Database` whatever its `config`.
    """
    key = _cache_key(url)
    with _databases_lock:
        database = _databases.get(key)
        if database is None:
            database = _databases[key] = Database(key[1], config=config)
        return database


def close_database(url: str) -> None:
    """Dispose the cached `Database` of `url` and forget it (tests, and shutdown hooks)."""
    key = _cache_key(url)
    with _databases_lock:
        database = _databases.pop(key, None)
    if database is not None:
        database.dispose()


__all__ = [
    "VALID_URL_FORMS",
    "Database",
    "DatabaseConfig",
    "close_database",
    "display_url",
    "engine_options",
    "get_database",
    "parse_db_url",
]

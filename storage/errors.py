"""Errors that storage/ raises on purpose, and how a driver's error becomes one of them.

Each message is one line a user can act on: the database (password hidden) and the driver's
first line, never SQLAlchemy's SQL and parameter dump or a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

#: SQLSTATEs of a server going away or not there yet: 57P01 admin shutdown (``pg_ctl stop -m
#: fast``), 57P02 crash shutdown (``-m immediate``), 57P03 cannot connect now (starting up,
#: shutting down, in recovery). Class 08 (connection exceptions) counts as well.
_UNREACHABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


class StorageError(Exception):
    """The database refused or failed an operation (the message says which database and why)."""


class DatabaseUnavailableError(StorageError):
    """The database cannot be reached: down, restarting, or cut off by the network.

    Transient: the same call succeeds once the database answers again (the pool reconnects).
    """


class NotFoundError(StorageError, LookupError):
    """No row with the given key; the message names the resource and the key."""


class StudyExistsError(StorageError):
    """A study with this name (or Optuna study name) already exists."""


def _sqlalchemy_error(exc: BaseException) -> BaseException:
    # Optuna re-raises database errors as its own; the database's reason is then the cause.
    if not isinstance(exc, SQLAlchemyError) and isinstance(exc.__cause__, SQLAlchemyError):
        return exc.__cause__
    return exc


def error_line(exc: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's SQL and parameter dump.

    Optuna re-raises database errors as its own; the database's reason is then the cause.
    """
    exc = _sqlalchemy_error(exc)
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def is_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (SQLAlchemy's, or Optuna's caused by one) says the database cannot be
    reached: a failed connect, a connection lost, a server shutting down or starting up.

    PostgreSQL only: SQLite's operational errors (a locked file) are not about a server.
    """
    # The whole chain: a connection lost mid-transaction surfaces first as SQLAlchemy's
    # PendingRollbackError ("Can't reconnect until invalid transaction is rolled back"), raised
    # while handling the OperationalError that says so (Optuna wraps both in its own error).
    return any(_says_unreachable(link) for link in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its cause or context, and so on (each once)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _says_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError) or not hasattr(exc.orig, "sqlstate"):
        return False
    # psycopg's own connection failures (refused, timed out, closed) carry no SQLSTATE.
    sqlstate: str | None = getattr(exc.orig, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNREACHABLE_SQLSTATES


def describe_error(display_url: str, exc: BaseException, doing: str | None = None) -> StorageError:
    """`exc` as a one-line `StorageError` naming the database `display_url` (password hidden):
    a `DatabaseUnavailableError` when the database cannot be reached (`is_unreachable`).

    Args:
        display_url: the database URL as shown (``storage.database.display_url``).
        exc: a SQLAlchemy error, or Optuna's storage error caused by one.
        doing: what failed (``"deleting the Optuna study 'x'"``), put first.
    """
    unreachable = is_unreachable(exc)
    if unreachable:
        text = f"database unreachable: {display_url} ({error_line(exc)})"
    else:
        text = f"database error on {display_url}: {error_line(exc)}"
    if doing:
        text = f"{doing} failed: {text}"
    return DatabaseUnavailableError(text) if unreachable else StorageError(text)


__all__ = [
    "DatabaseUnavailableError",
    "NotFoundError",
    "StorageError",
    "StudyExistsError",
    "describe_error",
    "error_line",
    "is_unreachable",
]

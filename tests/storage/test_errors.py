"""`storage.errors`: which driver errors mean "unreachable", and their one-line description."""

from __future__ import annotations

import sqlite3

import optuna
import psycopg
import pytest
from sqlalchemy.exc import OperationalError, PendingRollbackError, ProgrammingError

from storage import DatabaseUnavailableError, StorageError
from storage.errors import describe_error, is_unreachable

SHOWN = "postgresql+psycopg://u:***@db:5432/mtl"


def wrapped(orig: Exception, cls: type[Exception] = OperationalError) -> Exception:
    return cls("SELECT 1", {}, orig)


@pytest.mark.parametrize(
    ("error", "unreachable"),
    [
        # psycopg's own connection failures carry no SQLSTATE.
        (wrapped(psycopg.OperationalError("connection failed: Connection refused")), True),
        (wrapped(psycopg.errors.AdminShutdown("terminating connection")), True),  # 57P01
        (wrapped(psycopg.errors.CrashShutdown("crash")), True),  # 57P02
        (wrapped(psycopg.errors.CannotConnectNow("the database system is starting up")), True),
        (wrapped(psycopg.errors.ConnectionFailure("lost")), True),  # class 08
        (wrapped(psycopg.errors.QueryCanceled("statement timeout")), False),
        (wrapped(psycopg.errors.DeadlockDetected("deadlock")), False),
        (wrapped(psycopg.errors.UndefinedTable("no table"), ProgrammingError), False),
        (wrapped(sqlite3.OperationalError("database is locked")), False),
    ],
)
def test_is_unreachable(error: Exception, unreachable: bool) -> None:
    assert is_unreachable(error) is unreachable
    # Optuna re-raises database errors as its own, with ours as the cause.
    try:
        raise optuna.exceptions.StorageInternalError("during the commit") from error
    except optuna.exceptions.StorageInternalError as optuna_error:
        assert is_unreachable(optuna_error) is unreachable


def test_a_connection_lost_mid_transaction_is_unreachable() -> None:
    # SQLAlchemy says it first as PendingRollbackError, raised while handling the lost
    # connection's error; Optuna wraps that in its own (seen with `pg_ctl stop -m fast`).
    lost = wrapped(psycopg.OperationalError("consuming input failed: server closed the connection"))
    try:
        try:
            raise lost
        except OperationalError:
            raise PendingRollbackError("Can't reconnect until invalid transaction is rolled back")  # noqa: B904 (as SQLAlchemy does: the lost connection is the context)
    except PendingRollbackError as pending:
        try:
            raise optuna.exceptions.StorageInternalError("during the commit") from pending
        except optuna.exceptions.StorageInternalError as optuna_error:
            assert is_unreachable(optuna_error)
    assert not is_unreachable(PendingRollbackError("rolled back after a failed flush"))


def test_describe_error_is_one_line_naming_the_database() -> None:
    refused = wrapped(psycopg.OperationalError("connection failed: refused\n\tIs it running?"))
    error = describe_error(SHOWN, refused, "creating the study 'x'")
    assert isinstance(error, DatabaseUnavailableError)
    assert str(error) == (
        f"creating the study 'x' failed: database unreachable: {SHOWN} (connection failed: refused)"
    )
    other = describe_error(SHOWN, wrapped(psycopg.errors.UndefinedTable("no t"), ProgrammingError))
    assert type(other) is StorageError
    assert str(other) == f"database error on {SHOWN}: no t"

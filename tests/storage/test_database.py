"""Database: URLs, sessions, the shared engine, and SQLite under several processes."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
from sqlalchemy import text

from storage import (
    Database,
    DatabaseConfig,
    DatabaseUnavailableError,
    NotFoundError,
    StorageError,
    StudyRepository,
    TrialRepository,
    get_database,
    parse_db_url,
)
from storage.database import (
    PG_CONNECT_TIMEOUT_S,
    PG_KEEPALIVES_COUNT,
    PG_KEEPALIVES_IDLE_S,
    PG_KEEPALIVES_INTERVAL_S,
    PG_POOL_TIMEOUT_S,
    PG_TCP_USER_TIMEOUT_MS,
    engine_options,
)
from storage.migrate import upgrade


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///rel/x.db", "sqlite:///rel/x.db"),
        ("sqlite+pysqlite:////abs/x.db", "sqlite:////abs/x.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_parse_db_url_accepts_and_normalises(url: str, expected: str) -> None:
    assert parse_db_url(url).render_as_string(hide_password=True) == expected


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("not a url", "invalid database URL"),
        ("mysql://u:secret@h/db", "unsupported database URL"),
        ("postgresql+psycopg2://u@h/db", "unsupported database URL"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("postgresql://u@h", "names no database"),
    ],
)
def test_parse_db_url_refuses_with_the_valid_forms(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        parse_db_url(url)
    message = str(info.value)
    assert "\n" not in message
    assert "postgresql+psycopg://" in message and "sqlite:///" in message
    assert "secret" not in message


def test_session_rolls_back_and_wraps_database_errors(database: Database) -> None:
    with pytest.raises(StorageError, match="database error on") as info, database.session() as s:
        StudyRepository(s).create(name="kept-out", experiment="e", spec={})
        s.execute(text("SELECT * FROM no_such_table"))
    assert "\n" not in str(info.value)
    with pytest.raises(NotFoundError), database.session() as s:
        StudyRepository(s).create(name="also-kept-out", experiment="e", spec={})
        StudyRepository(s).get("missing")
    with database.session() as s:
        assert StudyRepository(s).list() == ([], 0)


@pytest.mark.parametrize(
    ("field", "value"),
    [("pool_size", 0), ("max_overflow", -1)],
)
def test_config_refuses_out_of_range_values(field: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"{field} must be"):
        DatabaseConfig(**{field: value})


def test_settings_give_the_config_their_values() -> None:
    from mtlsearch.settings import Settings

    settings = Settings(db_pool_size=3, db_max_overflow=2)
    assert settings.database_config() == DatabaseConfig(pool_size=3, max_overflow=2)


def test_one_engine_shared_with_optuna(database: Database) -> None:
    storage = database.optuna_storage()
    assert database.optuna_storage() is storage
    assert database.engine is storage.engine
    assert get_database(database.url.render_as_string(hide_password=False)) is database
    assert storage.heartbeat_interval is None  # liveness: our worker rows (worker.stale)
    study = optuna.create_study(study_name="o", storage=storage)
    study.add_trial(optuna.trial.create_trial(value=1.0))
    with database.session() as s:
        StudyRepository(s).create(name="ours", experiment="e", spec={}, optuna_study_name="o")
    assert optuna.load_study(study_name="o", storage=storage).best_value == 1.0


def test_unmigrated_database_says_to_upgrade(sqlite_url: str) -> None:
    with pytest.raises(StorageError, match="mtlsearch db upgrade"):
        Database(sqlite_url).optuna_storage()


def test_unreachable_postgres_is_a_one_line_storage_error() -> None:
    database = Database("postgresql+psycopg://postgres:secret@127.0.0.1:1/nowhere")
    with pytest.raises(DatabaseUnavailableError, match="cannot open database") as info:
        database.optuna_storage()
    assert "\n" not in str(info.value) and "secret" not in str(info.value)


def test_postgres_connections_have_bounded_waits_and_stay_picklable() -> None:
    options = engine_options(parse_db_url("postgresql://u@h/db"))
    assert options["pool_pre_ping"] is True
    assert options["pool_timeout"] == PG_POOL_TIMEOUT_S
    assert options["connect_args"] == {
        "connect_timeout": PG_CONNECT_TIMEOUT_S,
        "keepalives": 1,
        "keepalives_idle": PG_KEEPALIVES_IDLE_S,
        "keepalives_interval": PG_KEEPALIVES_INTERVAL_S,
        "keepalives_count": PG_KEEPALIVES_COUNT,
        "tcp_user_timeout": PG_TCP_USER_TIMEOUT_MS,
        "options": "-c idle_in_transaction_session_timeout=30000",
    }
    assert pickle.loads(pickle.dumps(options)) == options  # Optuna keeps them
    # A value in the URL's query wins.
    mine = engine_options(parse_db_url("postgresql://u@h/db?connect_timeout=30"))
    assert "connect_timeout" not in mine["connect_args"]
    assert "keepalives" in mine["connect_args"]


def test_sqlite_uses_wal_foreign_keys_and_creates_the_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}"
    upgrade(url)
    database = Database(url)
    try:
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 10_000
    finally:
        database.dispose()
    assert (tmp_path / "a" / "b" / "x.db").is_file()


def _write_concurrently(url: str, study_id: str, barrier: Any, n: int, results: Any) -> None:
    """Child process: `n` single-row write transactions as fast as possible."""
    try:
        database = get_database(url)
        barrier.wait()
        for _ in range(n):
            with database.session() as session:
                assert TrialRepository(session).reserve(study_id, None) is not None
        results.put("ok")
    except BaseException as exc:  # sent to the parent, which asserts on it
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_sqlite_two_processes_write_without_locking_errors(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    with get_database(sqlite_url).session() as session:
        study_id = StudyRepository(session).create(name="s", experiment="e", spec={}).id
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    children = [
        context.Process(
            target=_write_concurrently, args=(sqlite_url, study_id, barrier, 60, results)
        )
        for _ in range(2)
    ]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=30)
    assert outcomes == ["ok", "ok"]
    with get_database(sqlite_url).session() as session:
        assert StudyRepository(session).get(study_id).trials_reserved == 120


def test_postgres_pool_is_sized_by_the_settings(postgres_url: str) -> None:
    from mtlsearch.settings import Settings
    from storage import Database
    from storage.migrate import upgrade

    upgrade(postgres_url)
    settings = Settings(db_url=postgres_url, db_pool_size=3, db_max_overflow=2)
    database = Database(postgres_url, config=settings.database_config())
    try:
        pool = database.engine.pool
        assert pool.size() == 3  # type: ignore[attr-defined]
        assert pool._max_overflow == 2  # type: ignore[attr-defined]
    finally:
        database.dispose()

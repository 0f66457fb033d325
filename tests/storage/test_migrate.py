"""Migrations and `mtlsearch db`: idempotent, beside Optuna's tables, matching the models."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text, update
from typer.testing import CliRunner

import storage
from mtlsearch.cli import app
from storage import StorageError, WorkerRepository, close_database, get_database
from storage.migrate import (
    MIGRATIONS_DIR,
    VERSION_TABLE,
    alembic_config,
    current,
    head_revision,
    include_object,
    upgrade,
    wait_for_schema,
)
from storage.models import Base, utcnow

OUR_TABLES = {
    "mtl_studies",
    "mtl_workers",
    "mtl_artifacts",
    "mtl_baselines",
    "mtl_trials",
    VERSION_TABLE,
}


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    assert current(db_url).revision is None
    assert upgrade(db_url) == head_revision()
    tables = _tables(db_url)
    assert upgrade(db_url) == head_revision()
    assert _tables(db_url) == tables
    assert tables >= OUR_TABLES
    versions = current(db_url)
    assert versions.is_current and versions.optuna_revision is not None


def test_optuna_tables_and_ours_coexist(db_url: str) -> None:
    upgrade(db_url)
    storage = optuna.storages.RDBStorage(db_url)
    try:
        study = optuna.create_study(study_name="coexist", storage=storage)
        study.add_trial(optuna.trial.create_trial(value=0.5))
        upgrade(db_url)
        assert optuna.load_study(study_name="coexist", storage=storage).best_value == 0.5
    finally:
        storage.engine.dispose()
    tables = _tables(db_url)
    assert {"studies", "trials", "alembic_version"} <= tables
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            ours = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
            theirs = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    finally:
        engine.dispose()
    assert ours == [(head_revision(),)]
    assert len(theirs) == 1 and theirs[0][0] != head_revision()


def test_migrations_match_the_models(db_url: str) -> None:
    upgrade(db_url)
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "version_table": VERSION_TABLE,
                    "include_object": include_object,
                    "compare_type": True,
                },
            )
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_upgrade_from_0001_keeps_a_worker_row(db_url: str) -> None:
    assert upgrade(db_url, "0001") == "0001"
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO mtl_workers (id, hostname, pid, device, started_at, "
                    "last_heartbeat, status, trials_done) VALUES ('old', 'h', 1, 'cuda:0', "
                    ":now, :now, 'idle', 4)"
                ),
                {"now": utcnow()},
            )
    finally:
        engine.dispose()
    assert upgrade(db_url) == head_revision()
    try:
        with get_database(db_url).session() as session:
            (worker,) = WorkerRepository(session).list(live_within_s=60)
    finally:
        close_database(db_url)
    assert (worker.id, worker.device, worker.trials_done) == ("old", "cuda:0", 4)
    # Registered before workers said what they run: it serves nothing until it registers again.
    assert (worker.experiments, worker.batch_size) == ((), None)


def test_0003_adds_trials_and_downgrades_cleanly(db_url: str) -> None:
    assert upgrade(db_url, "0002") == "0002"
    assert "mtl_trials" not in _tables(db_url)
    assert upgrade(db_url, "0003") == "0003"
    engine = create_engine(db_url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("mtl_trials")}
        indexes = {i["name"] for i in inspect(engine).get_indexes("mtl_trials")}
    finally:
        engine.dispose()
    assert {"study_id", "number", "state", "value", "retry_of", "retried"} <= columns
    assert {"ix_mtl_trials_study_id", "ix_mtl_trials_study_id_state"} <= indexes
    command.downgrade(alembic_config(db_url), "0002")
    assert "mtl_trials" not in _tables(db_url)


def _execute(url: str, sql: str, **params: object) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            result = connection.execute(text(sql), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def test_0004_makes_retries_rows_unique_per_lost_trial(db_url: str) -> None:
    assert upgrade(db_url, "0003") == "0003"
    now = utcnow()
    _execute(
        db_url,
        "INSERT INTO mtl_studies (id, name, experiment, spec, status, optuna_study_name, "
        "n_trials, trials_reserved, created_at, updated_at) VALUES ('s1', 'n', 'e', '{}', "
        "'running', 'o', 4, 2, :now, :now)",
        now=now,
    )
    _execute(
        db_url,
        "INSERT INTO mtl_trials (study_id, number, state, retried, reserved_at) VALUES "
        "('s1', 0, 'fail', true, :now), ('s1', 1, 'complete', false, :now)",
        now=now,
    )
    assert upgrade(db_url) == head_revision()
    engine = create_engine(db_url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("mtl_trials")}
        uniques = {u["name"] for u in inspect(engine).get_unique_constraints("mtl_trials")}
    finally:
        engine.dispose()
    assert "retried" not in columns and "uq_mtl_trials_study_retry_of" in uniques
    assert _execute(db_url, "SELECT number, state FROM mtl_trials ORDER BY number") == [
        (0, "fail"),
        (1, "complete"),
    ]
    _execute(  # a queued retry holds the lost trial's slot
        db_url,
        "INSERT INTO mtl_trials (study_id, state, retry_of, reserved_at) "
        "VALUES ('s1', 'queued', 0, :now)",
        now=now,
    )
    _execute(db_url, "UPDATE mtl_studies SET trials_reserved = 3")
    command.downgrade(alembic_config(db_url), "0003")
    assert _execute(db_url, "SELECT count(*) FROM mtl_trials") == [(2,)]
    assert _execute(db_url, "SELECT trials_reserved FROM mtl_studies") == [(2,)]


def test_0006_adds_population_and_downgrades_keeping_the_rows(db_url: str) -> None:
    assert upgrade(db_url, "0005") == "0005"
    now = utcnow()
    _execute(
        db_url,
        "INSERT INTO mtl_studies (id, name, experiment, spec, status, optuna_study_name, "
        "n_trials, trials_reserved, created_at, updated_at) VALUES ('s1', 'n', 'e', '{}', "
        "'running', 'o', 4, 2, :now, :now)",
        now=now,
    )
    _execute(
        db_url,
        "INSERT INTO mtl_trials (study_id, number, state, kind, num_slots, reserved_at) "
        "VALUES ('s1', 0, 'complete', 'search', 4, :now), ('s1', 1, 'fail', 'search', 4, :now)",
        now=now,
    )
    assert upgrade(db_url, "0006") == "0006"
    assert _execute(db_url, "SELECT number, population FROM mtl_trials ORDER BY number") == [
        (0, None),
        (1, None),
    ]
    member = {
        "trajectory": [{"epoch": 0, "weights": {"a": 1.0}}, {"epoch": 2, "weights": {"a": 3.0}}],
        "lineage": [{"epoch": 2, "source": 1}],
        "epochs": 4,
    }
    engine = create_engine(db_url)
    try:
        with engine.begin() as connection:
            trials = Base.metadata.tables["mtl_trials"]
            connection.execute(update(trials).where(trials.c.number == 0).values(population=member))
            stored = connection.execute(select(trials.c.number, trials.c.population)).all()
    finally:
        engine.dispose()
    assert sorted(map(tuple, stored)) == [(0, member), (1, None)]
    command.downgrade(alembic_config(db_url), "0005")
    engine = create_engine(db_url)
    try:
        columns = {c["name"] for c in inspect(engine).get_columns("mtl_trials")}
    finally:
        engine.dispose()
    assert "population" not in columns
    assert _execute(db_url, "SELECT number, state, num_slots FROM mtl_trials ORDER BY number") == [
        (0, "complete", 4),
        (1, "fail", 4),
    ]
    assert upgrade(db_url) == head_revision()


def test_migration_files_are_inside_the_package() -> None:
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0002_worker_capabilities.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0003_trials.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0004_retry_rows.py").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0006_population.py").is_file()
    assert MIGRATIONS_DIR.parent == Path(storage.__file__ or "").parent


def test_cli_db_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli' / 'x.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["db", "current", "--db", url])
    assert result.exit_code == 0, result.output
    assert "not created" in result.output
    result = runner.invoke(app, ["db", "upgrade", "--db", url])
    assert result.exit_code == 0, result.output
    assert f"schema at revision {head_revision()}" in result.output
    result = runner.invoke(app, ["db", "current", "--db", url])
    assert result.exit_code == 0, result.output
    assert f"mtlsearch schema {head_revision()} (head)" in result.output


def test_cli_bad_url_is_a_one_line_error() -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", "mysql://u:secret@h/db"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "mysql://u:***@h/db" in lines[0]
    assert "postgresql+psycopg://" in lines[0] and "sqlite:///" in lines[0]


def test_wait_for_schema_returns_at_head(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    assert wait_for_schema(sqlite_url, 0).is_current


def test_wait_for_schema_times_out_behind_head(sqlite_url: str) -> None:
    upgrade(sqlite_url, "0001")
    started = time.monotonic()
    with pytest.raises(StorageError, match=r"schema at 0001, not at head .* after 0.3 s"):
        wait_for_schema(sqlite_url, 0.3, poll_s=0.1)
    assert time.monotonic() - started >= 0.3


def test_wait_for_schema_fails_at_once_on_an_unknown_revision(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00'"))
    engine.dispose()
    started = time.monotonic()
    with pytest.raises(StorageError, match="f00, which this mtlsearch does not know"):
        wait_for_schema(sqlite_url, 60)
    assert time.monotonic() - started < 10

"""A worker started before the schema exists waits for it (as compose files start them)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from storage import Database, WorkerRepository
from storage.migrate import VERSION_TABLE, upgrade
from tests.e2e.helpers import WorkerProcess, child_env

pytestmark = pytest.mark.slow


def test_a_worker_started_before_the_schema_waits_for_it(sqlite_url: str, tmp_path: Path) -> None:
    worker = WorkerProcess(sqlite_url, tmp_path / "worker.log", "--idle-exit", "2")
    try:
        time.sleep(2.0)
        assert worker.process.poll() is None, worker.text  # still waiting, not exited
        # The real migration, in its own process, as the server or `db upgrade` runs it.
        subprocess.run(
            [sys.executable, "-m", "mtlsearch", "db", "upgrade", "--db", sqlite_url],
            cwd=tmp_path,
            env=child_env(sqlite_url),
            check=True,
            capture_output=True,
        )
        assert worker.wait(timeout=60) == 0, worker.text
    finally:
        worker.kill()
    assert "waiting for the schema" in worker.text
    database = Database(sqlite_url)
    with database.session() as session:
        registered = WorkerRepository(session).list(live_within_s=3600)
    database.dispose()
    assert [w.pid for w in registered] == [worker.process.pid]


def test_without_a_wait_a_worker_fails_at_once(sqlite_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    worker = WorkerProcess(
        sqlite_url, tmp_path / "worker.log", env={"MTLSEARCH_SCHEMA_WAIT_S": "0"}
    )
    assert worker.wait(timeout=60) == 2  # the CLI's exit code for an error it names
    assert time.monotonic() - started < 30
    assert "no mtlsearch schema yet" in worker.text
    assert "mtlsearch db upgrade" in worker.text


def test_a_schema_this_package_does_not_know_fails_at_once(sqlite_url: str, tmp_path: Path) -> None:
    upgrade(sqlite_url)
    engine = create_engine(sqlite_url)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999_future'"))
    engine.dispose()
    worker = WorkerProcess(sqlite_url, tmp_path / "worker.log", "--idle-exit", "2")
    assert worker.wait(timeout=30) == 2  # the default wait of 120 s is not used
    assert "9999_future" in worker.text and "does not know" in worker.text

"""The /metrics collector on a real SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from mtlsearch.settings import Settings
from service.services.metrics import build_registry
from storage import Database, WorkerRepository
from storage.models import WorkerRecord, utcnow
from tests.utils.databases import migrated_database

SETTINGS = Settings(stale_after_s=5.0)


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    with migrated_database(sqlite_url, SETTINGS) as database:
        yield database


def test_busy_and_idle_count_live_workers_only(database: Database) -> None:
    with database.session() as session:
        repo = WorkerRepository(session)
        for i in range(3):
            worker = repo.register(hostname="h", pid=i, device="cpu", worker_id=f"w{i}")
            repo.heartbeat(worker.id, "busy" if i < 2 else "idle", "s", 1)
        # w0 and w2 were killed: their rows still say busy and idle, their beats are old.
        session.execute(
            update(WorkerRecord)
            .where(WorkerRecord.id.in_(["w0", "w2"]))
            .values(last_heartbeat=utcnow() - timedelta(seconds=60))
        )

    registry = build_registry(database, SETTINGS)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("mtlsearch_live_workers") == 1
    assert sample("mtlsearch_workers", status="busy") == 1  # was 2
    assert sample("mtlsearch_workers", status="idle") == 0  # was 1

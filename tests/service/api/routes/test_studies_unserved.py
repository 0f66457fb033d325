"""A running study that no live worker can serve says so, through the real server.

A module of its own: its server's database holds only the workers these tests register, and
every test stops them all when it ends.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from storage import WorkerRepository, get_database
from storage.models import WorkerRecord, utcnow
from tests.service.conftest import Served

API = "/api/v1/studies"
UNSERVED = "no live worker has experiment 'adult'"


@pytest.fixture(autouse=True)
def stop_workers_afterwards(served: Served) -> Iterator[None]:
    yield
    with get_database(served.db_url).session() as session:
        repo = WorkerRepository(session)
        for worker in repo.list(live_within_s=60):
            repo.mark_stopped(worker.id)


def _worker(served: Served, experiments: list[str], *, stale: bool = False) -> str:
    with get_database(served.db_url).session() as session:
        info = WorkerRepository(session).register(
            hostname="h", pid=1, device="cpu", experiments=experiments, batch_size=1
        )
        if stale:
            # Last heard of an hour ago: far past the server's stale_after_s (60 s).
            session.execute(
                update(WorkerRecord)
                .where(WorkerRecord.id == info.id)
                .values(last_heartbeat=utcnow() - timedelta(hours=1))
            )
    return info.id


def _adult_study(served: Served) -> dict[str, Any]:
    spec = {"name": f"a-{secrets.token_hex(4)}", "experiment": "adult", "n_trials": 5}
    response = served.client.post(API, json=spec)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == "running"
    return body


def _messages(served: Served, study_id: str) -> tuple[str | None, str | None]:
    """The study's message from GET /studies/{id} and from the list."""
    one = served.client.get(f"{API}/{study_id}").json()["message"]
    page = served.client.get(API, params={"limit": 200}).json()
    (listed,) = [s["message"] for s in page["data"] if s["id"] == study_id]
    return one, listed


def test_a_study_no_live_worker_can_serve_says_so_until_one_can(served: Served) -> None:
    _worker(served, ["synthetic"])
    study = _adult_study(served)
    assert _messages(served, study["id"]) == (UNSERVED, UNSERVED)

    adult = _worker(served, ["adult", "synthetic"])
    assert _messages(served, study["id"]) == (None, None)

    with get_database(served.db_url).session() as session:
        WorkerRepository(session).mark_stopped(adult)
    assert _messages(served, study["id"]) == (UNSERVED, UNSERVED)


def test_a_stale_workers_experiments_do_not_count(served: Served) -> None:
    _worker(served, ["synthetic"])
    _worker(served, ["adult"], stale=True)
    study = _adult_study(served)
    assert _messages(served, study["id"]) == (UNSERVED, UNSERVED)


def test_with_no_live_worker_at_all_the_message_says_that_too(served: Served) -> None:
    _worker(served, ["adult"], stale=True)
    study = _adult_study(served)
    one, listed = _messages(served, study["id"])
    assert one == listed == f"{UNSERVED}: no worker is live"


def test_a_finished_study_keeps_its_own_message(served: Served) -> None:
    _worker(served, ["synthetic"])
    study = _adult_study(served)
    assert served.client.post(f"{API}/{study['id']}/cancel").status_code == 200
    assert _messages(served, study["id"]) == ("cancelled through the API",) * 2

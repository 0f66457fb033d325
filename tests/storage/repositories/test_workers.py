"""Contract tests of WorkerRepository, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from storage import Database, NotFoundError, WorkerRepository, WorkerStatus
from storage.models import WorkerRecord, utcnow


def test_register_heartbeat_and_stop(database: Database) -> None:
    with database.session() as session:
        worker = WorkerRepository(session).register(hostname="gpu-1", pid=42, device="cuda:0")
    assert worker.id.startswith("gpu-1-42-")
    assert worker.status is WorkerStatus.IDLE and worker.live and worker.trials_done == 0

    with database.session() as session:
        WorkerRepository(session).heartbeat(worker.id, "busy", "abcdef012345", 7, trials_done=3)
    with database.session() as session:
        busy = WorkerRepository(session).get(worker.id, live_within_s=60)
    assert busy.status is WorkerStatus.BUSY
    assert (busy.current_study_id, busy.current_trial_number, busy.trials_done) == (
        "abcdef012345",
        7,
        3,
    )
    assert busy.last_heartbeat >= worker.last_heartbeat

    with database.session() as session:
        WorkerRepository(session).mark_stopped(worker.id)
    with database.session() as session:
        (stopped,) = WorkerRepository(session).list(live_within_s=60)
    assert stopped.status is WorkerStatus.STOPPED
    assert not stopped.live
    assert stopped.trials_done == 3


def test_live_flag_follows_the_last_heartbeat(database: Database) -> None:
    with database.session() as session:
        repo = WorkerRepository(session)
        fresh = repo.register(hostname="h", pid=1, device="cpu", worker_id="fresh")
        stale = repo.register(hostname="h", pid=2, device="cpu", worker_id="stale")
    with database.session() as session:
        # A worker that stopped heart-beating five minutes ago (e.g. its machine died).
        session.execute(
            update(WorkerRecord)
            .where(WorkerRecord.id == stale.id)
            .values(last_heartbeat=utcnow() - timedelta(minutes=5))
        )
    with database.session() as session:
        live = {w.id: w.live for w in WorkerRepository(session).list(live_within_s=60)}
        assert {w.id: w.live for w in WorkerRepository(session).list(live_within_s=600)} == {
            fresh.id: True,
            stale.id: True,
        }
    assert live == {fresh.id: True, stale.id: False}


def test_unknown_worker_and_bad_status_are_refused(database: Database) -> None:
    with database.session() as session:
        repo = WorkerRepository(session)
        with pytest.raises(NotFoundError, match="ghost"):
            repo.heartbeat("ghost", WorkerStatus.IDLE)
        with pytest.raises(NotFoundError, match="ghost"):
            repo.mark_stopped("ghost")
        worker = repo.register(hostname="h", pid=1, device="cpu")
        with pytest.raises(ValueError, match="idle"):
            repo.heartbeat(worker.id, "sleeping")
        with pytest.raises(ValueError, match="live_within_s"):
            repo.list(live_within_s=0)


def test_register_again_resets_the_worker(database: Database) -> None:
    with database.session() as session:
        repo = WorkerRepository(session)
        repo.register(hostname="h", pid=1, device="cpu", worker_id="w")
        repo.heartbeat("w", "busy", "s", 1, trials_done=5)
    with database.session() as session:
        again = WorkerRepository(session).register(
            hostname="h", pid=2, device="cuda:1", worker_id="w"
        )
    assert (again.pid, again.device, again.trials_done, again.status) == (
        2,
        "cuda:1",
        0,
        WorkerStatus.IDLE,
    )


@pytest.mark.parametrize("batch_size", [1, 8, "auto", None])
def test_experiments_and_batch_size_round_trip(database: Database, batch_size: int | str) -> None:
    with database.session() as session:
        WorkerRepository(session).register(
            hostname="h",
            pid=1,
            device="cuda:0",
            worker_id="w",
            experiments=["synthetic", "adult", "my_plugin", "adult"],
            batch_size=batch_size,
        )
    with database.session() as session:
        (worker,) = WorkerRepository(session).list(live_within_s=60)
        # A heartbeat leaves what the worker registered with alone.
        WorkerRepository(session).heartbeat("w", "busy", "s", 1)
    with database.session() as session:
        beaten = WorkerRepository(session).get("w", live_within_s=60)
    assert worker.experiments == ("adult", "my_plugin", "synthetic")
    assert worker.batch_size == batch_size and worker.device == "cuda:0"
    assert (beaten.experiments, beaten.batch_size) == (worker.experiments, batch_size)


def test_registering_without_experiments_serves_nothing(database: Database) -> None:
    with database.session() as session:
        worker = WorkerRepository(session).register(hostname="h", pid=1, device="cpu")
    assert (worker.experiments, worker.batch_size) == ((), None)


@pytest.mark.parametrize("batch_size", [0, -3, "big", True])
def test_bad_batch_size_is_refused(database: Database, batch_size: int | str) -> None:
    with database.session() as session:
        repo = WorkerRepository(session)
        with pytest.raises(ValueError, match="batch_size"):
            repo.register(hostname="h", pid=1, device="cpu", batch_size=batch_size)
        with pytest.raises(TypeError, match="experiments"):
            repo.register(hostname="h", pid=1, device="cpu", experiments="adult")

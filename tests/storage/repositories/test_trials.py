"""Contract tests of TrialRepository, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from storage import (
    ArtifactRepository,
    Database,
    NotFoundError,
    StorageError,
    StudyRepository,
    StudyStatus,
    TrialRepository,
    TrialState,
    WorkerRepository,
)
from storage.models import FailureKind, TrialKind, TrialRecord, WorkerRecord, utcnow
from storage.repositories.trials import (
    LOST_REASON,
    TIME_UP_REASON,
    Completion,
    QueuedRun,
    TrialStateError,
)

SPEC: dict[str, Any] = {"experiment": "e"}


def _create(database: Database, name: str = "s", **kwargs: Any) -> str:
    with database.session() as session:
        return StudyRepository(session).create(name=name, experiment="e", spec=SPEC, **kwargs).id


def _worker(database: Database) -> str:
    with database.session() as session:
        return WorkerRepository(session).register(hostname="h", pid=1, device="cpu").id


def _running(database: Database, study_id: str, number: int, worker_id: str | None = None) -> int:
    """Reserve and start trial `number`; its row id."""
    with database.session() as session:
        repo = TrialRepository(session)
        row_id = repo.reserve(study_id, worker_id)
        assert row_id is not None
        repo.start(
            row_id,
            number=number,
            optuna_trial_id=100 + number,
            params={"w": number},
            config={"seed": number},
            weights_normalised={"a": 1.0},
        )
        return row_id


def _finished(database: Database, study_id: str, number: int, state: str, value: float) -> int:
    row_id = _running(database, study_id, number)
    with database.session() as session:
        assert TrialRepository(session).finish(row_id, state=state, values=[value])
    return row_id


def test_reserve_takes_up_to_n_trials_and_no_more(database: Database) -> None:
    study_id = _create(database, n_trials=2)
    with database.session() as session:
        repo = TrialRepository(session)
        first, second = repo.reserve(study_id, None), repo.reserve(study_id, "w")
        assert first is not None and second is not None and first != second
        assert repo.reserve(study_id, "w") is None
        assert StudyRepository(session).get(study_id).trials_reserved == 2
        rows = repo.rows(study_id)
    assert [(r.state, r.number, r.worker_id) for r in rows] == [
        (TrialState.RESERVED, None, None),
        (TrialState.RESERVED, None, "w"),
    ]


def test_reserve_refuses_a_study_that_is_not_running(database: Database) -> None:
    study_id = _create(database)
    with database.session() as session:
        StudyRepository(session).set_status(study_id, StudyStatus.CANCELLED)
        assert TrialRepository(session).reserve(study_id, None) is None
        assert TrialRepository(session).reserve("missing", None) is None


def test_start_then_finish_records_the_outcome(database: Database) -> None:
    study_id = _create(database)
    row_id = _running(database, study_id, 0)
    with database.session() as session:
        repo = TrialRepository(session)
        (running,) = repo.rows(study_id, ["running"])
        assert running.started_at is not None and running.params == {"w": 0}
        assert repo.finish(
            row_id,
            state="complete",
            values=[0.5, 2.0],
            val_metrics={"a": 0.9},
            test_metrics={"a": 0.8},
            strategy_weights={"a": [1.0]},
            epochs_run=3,
        )
        (row,) = repo.rows(study_id)
    assert row.state is TrialState.COMPLETE
    assert (row.values, row.value, row.epochs_run) == ([0.5, 2.0], 0.5, 3)
    assert row.config == {"seed": 0}  # kept from start
    assert row.val_metrics == {"a": 0.9} and row.duration_s is not None


def test_start_refuses_a_row_that_was_failed_meanwhile(database: Database) -> None:
    study_id = _create(database)
    with database.session() as session:
        repo = TrialRepository(session)
        row_id = repo.reserve(study_id, None)
        assert row_id is not None
        assert repo.finish(row_id, state="fail", reason="gone")
        with pytest.raises(TrialStateError, match="fail"):
            repo.start(
                row_id,
                number=0,
                optuna_trial_id=1,
                params={},
                config=None,
                weights_normalised=None,
            )


def test_finish_wins_once_and_a_fail_releases_exactly_one_slot(database: Database) -> None:
    study_id = _create(database, n_trials=3)
    row_id = _running(database, study_id, 0)
    _running(database, study_id, 1)
    with database.session() as session:
        repo = TrialRepository(session)
        assert repo.finish(row_id, state="fail", reason="boom")
        assert not repo.finish(row_id, state="fail", reason="again")
        assert not repo.finish(row_id, state="complete", values=[1.0])
        assert StudyRepository(session).get(study_id).trials_reserved == 1
        (row,) = repo.rows(study_id, ["fail"])
    assert (row.reason, row.values) == ("boom", None)


def test_finish_refuses_unfinished_states_and_non_finite_values(database: Database) -> None:
    study_id = _create(database)
    row_id = _running(database, study_id, 0)
    with database.session() as session:
        repo = TrialRepository(session)
        with pytest.raises(ValueError, match="running"):
            repo.finish(row_id, state="running")
        with pytest.raises(ValueError, match="values"):
            repo.finish(row_id, state="complete", values=[float("nan")])
        assert repo.rows(study_id)[0].state is TrialState.RUNNING


def test_a_complete_keeps_its_slot(database: Database) -> None:
    study_id = _create(database, n_trials=2)
    _finished(database, study_id, 0, "complete", 1.0)
    _finished(database, study_id, 1, "pruned", 2.0)
    with database.session() as session:
        assert StudyRepository(session).get(study_id).trials_reserved == 2


def test_claim_lost_claims_only_dead_workers_rows(database: Database) -> None:
    study_id = _create(database, n_trials=10)
    live, dead, stopped = _worker(database), _worker(database), _worker(database)
    kept = _running(database, study_id, 0, live)
    lost_running = _running(database, study_id, 1, dead)
    lost_stopped = _running(database, study_id, 2, stopped)
    lost_missing = _running(database, study_id, 3, "never-registered")
    with database.session() as session:
        lost_reserved = TrialRepository(session).reserve(study_id, dead)
        fresh_anonymous = TrialRepository(session).reserve(study_id, None)
        WorkerRepository(session).mark_stopped(stopped)
        long_ago = utcnow() - timedelta(seconds=120)
        session.execute(
            update(WorkerRecord).where(WorkerRecord.id == dead).values(last_heartbeat=long_ago)
        )
    with database.session() as session:
        claimed = TrialRepository(session).claim_lost(study_id, grace_s=60.0)
    by_row = {c.row_id: c for c in claimed}
    assert set(by_row) == {lost_running, lost_stopped, lost_missing, lost_reserved}
    assert fresh_anonymous not in by_row
    assert kept not in by_row
    assert by_row[lost_running].number == 1 and by_row[lost_running].optuna_trial_id == 101
    assert by_row[lost_running].retry_row_id is not None
    assert lost_reserved is not None and by_row[lost_reserved].number is None
    with database.session() as session:
        repo = TrialRepository(session)
        failed = {r.id: r for r in repo.rows(study_id, ["fail"])}
        assert set(failed) == {lost_running, lost_stopped, lost_missing}
        assert all(r.reason == LOST_REASON for r in failed.values())
        queued = repo.rows(study_id, ["waiting"])
        assert sorted((r.retry_of, r.params["w"]) for r in queued if r.params) == [
            (1, 1),
            (2, 2),
            (3, 3),
        ]
        assert all(r.state is TrialState.QUEUED and r.worker_id is None for r in queued)
        assert lost_reserved not in {r.id for r in repo.rows(study_id)}  # given back: gone
        # kept + fresh_anonymous + three retries holding their lost trials' slots
        assert StudyRepository(session).get(study_id).trials_reserved == 5
        assert repo.claim_lost(study_id, grace_s=60.0) == []  # claimed once


def test_claim_lost_anonymous_rows_by_reservation_age(database: Database) -> None:
    study_id = _create(database)
    with database.session() as session:
        row_id = TrialRepository(session).reserve(study_id, None)
    with database.session() as session:
        assert TrialRepository(session).claim_lost(study_id, grace_s=60.0) == []
    with database.session() as session:
        later = utcnow() + timedelta(seconds=61)
        (claimed,) = TrialRepository(session).claim_lost(study_id, grace_s=60.0, now=later)
    assert (claimed.row_id, claimed.number, claimed.retry_row_id) == (row_id, None, None)


def _lose(database: Database, study_id: str, number: int) -> int:
    """Trial ``number`` started by a worker that dies; claimed; the id of its queued retry."""
    _running(database, study_id, number, _worker(database))
    later = utcnow() + timedelta(seconds=60)
    with database.session() as session:
        (claimed,) = TrialRepository(session).claim_lost(study_id, grace_s=1.0, now=later)
    assert claimed.number == number and claimed.retry_row_id is not None
    return claimed.retry_row_id


def _take_retry(database: Database, study_id: str, worker_id: str, number: int) -> int:
    """A worker reserves the study's queued retry and starts it as trial ``number``."""
    with database.session() as session:
        repo = TrialRepository(session)
        (reservation,) = repo.reserve_many(study_id, worker_id, 1)
        assert reservation.retry_of is not None
        repo.start(
            reservation.row_id,
            number=number,
            optuna_trial_id=100 + number,
            params=reservation.params or {},
            config=None,
            weights_normalised=None,
        )
        return reservation.row_id


def test_claim_lost_does_not_retry_a_retry(database: Database) -> None:
    study_id = _create(database, n_trials=3)
    _lose(database, study_id, 0)
    dead = _worker(database)
    retry_row = _take_retry(database, study_id, dead, 1)
    later = utcnow() + timedelta(seconds=60)
    with database.session() as session:
        (claimed,) = TrialRepository(session).claim_lost(study_id, grace_s=1.0, now=later)
        rows = TrialRepository(session).rows(study_id)
        reserved = StudyRepository(session).get(study_id).trials_reserved
    assert (claimed.row_id, claimed.number, claimed.retry_row_id) == (retry_row, 1, None)
    assert [(r.state, r.retry_of) for r in rows] == [
        (TrialState.FAIL, None),
        (TrialState.FAIL, 0),
    ]
    assert reserved == 0


def test_the_schema_refuses_a_second_retry_of_one_trial(database: Database) -> None:
    study_id = _create(database, n_trials=3)
    _lose(database, study_id, 0)
    with pytest.raises(StorageError, match=r"(?i)unique"), database.session() as session:
        session.add(
            TrialRecord(
                study_id=study_id, state="queued", params={}, retry_of=0, reserved_at=utcnow()
            )
        )
    with database.session() as session:
        assert len(TrialRepository(session).rows(study_id, ["waiting"])) == 1


def test_a_queued_retry_is_taken_before_fresh_slots_and_by_one_worker(database: Database) -> None:
    study_id = _create(database, n_trials=3)
    retry_row = _lose(database, study_id, 0)
    with database.session() as session:
        repo = TrialRepository(session)
        first = repo.reserve_many(study_id, "w1", 2)
        second = repo.reserve_many(study_id, "w2", 2)
    assert [r.retry_of for r in first] == [0, None] and first[0].row_id == retry_row
    assert first[0].params == {"w": 0} and first[0].source_trial_id == 100
    assert [r.retry_of for r in second] == [None]  # the budget of 3: retry + 2 fresh
    with database.session() as session:
        assert StudyRepository(session).get(study_id).trials_reserved == 3


def test_give_back_deletes_a_fresh_slot_and_queues_a_retry_again(database: Database) -> None:
    study_id = _create(database, n_trials=3)
    _lose(database, study_id, 0)
    with database.session() as session:
        retry, fresh = TrialRepository(session).reserve_many(study_id, "w", 2)
    with database.session() as session:
        repo = TrialRepository(session)
        assert repo.give_back([retry.row_id, fresh.row_id]) == 2
        assert repo.give_back([retry.row_id, fresh.row_id]) == 0  # once only
    with database.session() as session:
        repo = TrialRepository(session)
        (queued,) = repo.rows(study_id, ["waiting"])
        assert (queued.id, queued.worker_id) == (retry.row_id, None)
        assert fresh.row_id not in {r.id for r in repo.rows(study_id)}
        assert StudyRepository(session).get(study_id).trials_reserved == 1
        with pytest.raises(NotFoundError):
            repo.start(
                fresh.row_id,
                number=3,
                optuna_trial_id=3,
                params={},
                config=None,
                weights_normalised=None,
            )


def test_time_up_fails_queued_retries_and_completes(database: Database) -> None:
    study_id = _create(database, n_trials=3, time_budget_s=1.0)
    _finished(database, study_id, 1, "complete", 1.0)
    _lose(database, study_id, 0)
    with database.session() as session:
        repo = TrialRepository(session)
        assert repo.complete_if_done(study_id, time_up=False) is Completion.NOT_YET
        assert repo.complete_if_done(study_id, time_up=True) is Completion.COMPLETED
        (dropped,) = repo.rows(study_id, ["fail"], numbers=None)[1:]
        assert StudyRepository(session).get(study_id).trials_reserved == 1
    assert dropped.retry_of == 0 and dropped.reason == TIME_UP_REASON


def test_complete_if_done_waits_for_running_rows_then_stores_best(database: Database) -> None:
    study_id = _create(database, n_trials=2)
    _finished(database, study_id, 0, "complete", 1.0)
    row_id = _running(database, study_id, 1)
    calls: list[int] = []

    def best() -> dict[str, Any]:
        calls.append(1)
        return {"number": 0}

    with database.session() as session:
        assert (
            TrialRepository(session).complete_if_done(study_id, time_up=False, best=best)
            is Completion.NOT_YET
        )
        assert (
            TrialRepository(session).complete_if_done(study_id, time_up=True, best=best)
            is Completion.NOT_YET
        )
    with database.session() as session:
        assert TrialRepository(session).finish(row_id, state="pruned", values=[3.0])
        assert (
            TrialRepository(session).complete_if_done(study_id, time_up=False, best=best)
            is Completion.COMPLETED
        )
        assert (
            TrialRepository(session).complete_if_done(study_id, time_up=False, best=best)
            is Completion.NOT_YET
        )
    assert calls == [1]
    with database.session() as session:
        info = StudyRepository(session).get(study_id)
        artifact = ArtifactRepository(session).get(study_id, "best")
    assert info.status is StudyStatus.COMPLETED and info.message is None
    assert info.finished_at is not None
    assert artifact is not None and artifact.payload == {"number": 0}


def test_complete_if_done_rolls_back_with_the_best_record(database: Database) -> None:
    study_id = _create(database, n_trials=1)
    _finished(database, study_id, 0, "complete", 1.0)

    def broken() -> dict[str, Any]:
        raise RuntimeError("best failed")

    with pytest.raises(RuntimeError), database.session() as session:
        TrialRepository(session).complete_if_done(study_id, time_up=False, best=broken)
    with database.session() as session:
        assert StudyRepository(session).get(study_id).status is StudyStatus.RUNNING


def test_complete_if_done_on_time_up_says_so(database: Database) -> None:
    study_id = _create(database, n_trials=5, time_budget_s=1.5)
    _finished(database, study_id, 0, "complete", 1.0)
    with database.session() as session:
        repo = TrialRepository(session)
        assert repo.complete_if_done(study_id, time_up=False) is Completion.NOT_YET
        assert repo.complete_if_done(study_id, time_up=True) is Completion.COMPLETED
        info = StudyRepository(session).get(study_id)
    assert info.message == "time budget of 1.5 s reached"


def test_failed_trials_do_not_count_towards_the_budget(database: Database) -> None:
    study_id = _create(database, n_trials=1)
    row_id = _running(database, study_id, 0)
    with database.session() as session:
        assert TrialRepository(session).finish(row_id, state="fail")
        assert (
            TrialRepository(session).complete_if_done(study_id, time_up=False) is Completion.NOT_YET
        )


def test_counts_best_values_and_pages(database: Database) -> None:
    study_id, other = _create(database, "a"), _create(database, "b")
    for number, value in enumerate([3.0, 1.0, 2.0]):
        _finished(database, study_id, number, "complete", value)
    _finished(database, study_id, 3, "pruned", 0.5)
    _finished(database, study_id, 4, "fail", 9.0)
    _running(database, study_id, 5)
    with database.session() as session:
        repo = TrialRepository(session)
        repo.reserve(study_id, None)
        counts = repo.state_counts([study_id, other])
        assert counts[study_id] == {
            "running": 2,
            "waiting": 0,
            "complete": 3,
            "pruned": 1,
            "fail": 1,
            "cancelled": 0,
        }
        assert counts[other] == dict.fromkeys(counts[other], 0) and len(counts[other]) == 6
        directions = {study_id: ["maximize"], other: ["maximize"]}
        assert repo.best_values([study_id, other], directions) == {study_id: 3.0}
        assert repo.best_values([study_id], {study_id: ["minimize"]}) == {study_id: 1.0}
        assert repo.best_values([study_id], {study_id: ["minimize", "maximize"]}) == {}
        assert repo.completed_values(study_id) == [[3.0], [1.0], [2.0]]
        best = repo.best_row(study_id, "maximize")
        assert best is not None and best.number == 0
        worst = repo.best_row(study_id, "minimize")
        assert worst is not None and worst.number == 1
        assert repo.best_row(other, "maximize") is None
        page, total = repo.page(study_id, 1, 2)
        assert total == 6 and [r.number for r in page] == [1, 2]
        page, total = repo.page(study_id, 0, 10, ["pruned", "fail"])
        assert total == 2 and [r.number for r in page] == [3, 4]
        page, total = repo.page(study_id, 0, 10, ["running"])
        assert total == 1 and [r.number for r in page] == [5]
        durations = sorted(state for state, _ in repo.finished_durations())
        assert durations == ["complete"] * 3 + ["fail", "pruned"]


def test_waiting_counts_retries_not_yet_taken(database: Database) -> None:
    study_id = _create(database)
    _lose(database, study_id, 0)
    with database.session() as session:
        assert TrialRepository(session).state_counts([study_id])[study_id]["waiting"] == 1
    _take_retry(database, study_id, "w", 1)
    with database.session() as session:
        counts = TrialRepository(session).state_counts([study_id])[study_id]
    assert (counts["waiting"], counts["running"], counts["fail"]) == (0, 1, 1)


def test_deleting_a_study_deletes_its_trials(database: Database) -> None:
    gone, keep = _create(database, "gone"), _create(database, "keep")
    _finished(database, gone, 0, "complete", 1.0)
    _finished(database, keep, 0, "complete", 1.0)
    with database.session() as session:
        StudyRepository(session).delete(gone)
    with database.session() as session:
        assert TrialRepository(session).rows(gone) == []
        assert len(TrialRepository(session).rows(keep)) == 1


@pytest.mark.postgres
def test_reserve_never_exceeds_budget_under_concurrency(postgres_url: str) -> None:
    from storage import close_database, get_database
    from storage.migrate import upgrade

    upgrade(postgres_url)
    database = get_database(postgres_url)
    try:
        study_id = _create(database, n_trials=10)
        taken: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(4)

        def reserve(attempts: int) -> None:
            try:
                start.wait()
                for _ in range(attempts):
                    with database.session() as session:
                        row_id = TrialRepository(session).reserve(study_id, "w")
                    if row_id is not None:
                        with lock:
                            taken.append(row_id)
            except BaseException as exc:  # reported below: a thread cannot fail the test
                errors.append(exc)

        threads = [threading.Thread(target=reserve, args=(n,)) for n in (8, 8, 7, 7)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(taken) == len(set(taken)) == 10
        with database.session() as session:
            assert StudyRepository(session).get(study_id).trials_reserved == 10
            assert len(TrialRepository(session).rows(study_id, ["running"])) == 10
    finally:
        close_database(postgres_url)


@pytest.mark.postgres
def test_concurrent_claims_queue_one_retry_each_and_each_is_taken_once(postgres_url: str) -> None:
    from storage import close_database, get_database
    from storage.migrate import upgrade

    upgrade(postgres_url)
    database = get_database(postgres_url)
    try:
        study_id = _create(database, n_trials=20)
        dead = _worker(database)
        for number in range(8):
            _running(database, study_id, number, dead)
        later = utcnow() + timedelta(seconds=60)
        claimed: list[int] = []
        taken: list[int] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(6)

        def maintain_then_reserve(worker: str) -> None:
            try:
                start.wait()
                with database.session() as session:
                    lost = TrialRepository(session).claim_lost(study_id, grace_s=1.0, now=later)
                with database.session() as session:
                    mine = TrialRepository(session).reserve_many(study_id, worker, 3)
                with lock:
                    claimed.extend(t.row_id for t in lost)
                    taken.extend(r.row_id for r in mine if r.retry_of is not None)
            except BaseException as exc:  # reported below: a thread cannot fail the test
                errors.append(exc)

        threads = [
            threading.Thread(target=maintain_then_reserve, args=(f"w{i}",)) for i in range(6)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert len(claimed) == len(set(claimed)) == 8  # each lost trial claimed by one worker
        with database.session() as session:
            repo = TrialRepository(session)
            retries = [r for r in repo.rows(study_id) if r.retry_of is not None]
            retried = sorted(r.retry_of for r in retries if r.retry_of is not None)
            reserved = StudyRepository(session).get(study_id).trials_reserved
        assert retried == list(range(8))  # one retry each
        assert len(taken) == len(set(taken))  # no retry handed to two workers
        assert {r.id for r in retries if r.state is TrialState.RESERVED} == set(taken)
        assert reserved == 18  # 8 retries + 10 fresh slots of the 6 x 3 asked
    finally:
        close_database(postgres_url)


@pytest.mark.postgres
def test_time_up_completion_waits_for_a_reservation_in_flight(postgres_url: str) -> None:
    from storage import close_database, get_database
    from storage.migrate import upgrade

    upgrade(postgres_url)
    database = get_database(postgres_url)
    try:
        study_id = _create(database, n_trials=5, time_budget_s=1.0)
        _finished(database, study_id, 0, "complete", 1.0)
        results: list[Completion] = []
        with database.session() as session:  # a worker reserving, not committed yet
            assert TrialRepository(session).reserve(study_id, "w") is not None

            def complete() -> None:
                with database.session() as other:
                    results.append(TrialRepository(other).complete_if_done(study_id, time_up=True))

            thread = threading.Thread(target=complete)
            thread.start()
            thread.join(timeout=1.0)
            assert thread.is_alive()  # waits on the study row the reservation holds
        thread.join(timeout=10.0)
        assert results == [Completion.NOT_YET]  # it saw the reserved row: the study is not done
        with database.session() as session:
            assert StudyRepository(session).get(study_id).status is StudyStatus.RUNNING
    finally:
        close_database(postgres_url)


def test_rows_of_some_numbers_only(database: Database) -> None:
    study_id, other = _create(database), _create(database, name="other")
    for number in range(4):
        _running(database, study_id, number)
    _running(database, other, 1)
    with database.session() as session:
        repo = TrialRepository(session)
        assert [r.number for r in repo.rows(study_id, numbers=[3, 1, 7])] == [1, 3]
        assert repo.rows(study_id, numbers=[]) == []
        assert [r.number for r in repo.rows(study_id, ("running",), numbers={0})] == [0]


def test_reserve_many_takes_what_the_budget_has_left(database: Database) -> None:
    study_id = _create(database, n_trials=5)
    with database.session() as session:
        repo = TrialRepository(session)
        first = repo.reserve_many(study_id, "w", 3)
        rest = repo.reserve_many(study_id, "w", 3)
        ids = [r.row_id for r in first + rest]
        assert len(first) == 3 and len(rest) == 2 and len(set(ids)) == 5
        assert repo.reserve_many(study_id, "w", 1) == []
        assert StudyRepository(session).get(study_id).trials_reserved == 5
        with pytest.raises(ValueError, match="n must be >= 1, got n=0"):
            repo.reserve_many(study_id, "w", 0)


def _confirm_runs() -> list[QueuedRun]:
    config = {"experiment": "e", "seed": 0}
    return [
        QueuedRun(key, params, {**config, "seed": seed}, seed)
        for seed in (2**31 + 10, 2**31 + 11)  # seeds past int32, as confirmation seeds are
        for key, params in (("k0", {"w": 0}), ("uniform", None))
    ]


def test_a_finished_search_queues_its_confirmation_once_then_completes(
    database: Database,
) -> None:
    study_id = _create(database, n_trials=2)
    _finished(database, study_id, 0, "complete", 1.0)
    row_id = _running(database, study_id, 1)
    asked: list[int] = []

    def confirm() -> list[QueuedRun]:
        asked.append(1)
        return _confirm_runs()

    with database.session() as session:  # a search trial still runs
        done = TrialRepository(session).complete_if_done(study_id, time_up=False, confirm=confirm)
        assert done is Completion.NOT_YET and not asked
        assert TrialRepository(session).finish(row_id, state="complete", values=[2.0])
    with database.session() as session:
        repo = TrialRepository(session)
        assert repo.complete_if_done(study_id, time_up=False, confirm=confirm) is (
            Completion.CONFIRMING
        )
        assert repo.complete_if_done(study_id, time_up=False, confirm=confirm) is (
            Completion.NOT_YET
        )
    assert asked == [1]  # planned once
    with database.session() as session:
        repo = TrialRepository(session)
        info = StudyRepository(session).get(study_id)
        assert info.confirming and info.trials_reserved == 2  # the runs take no budget slot
        counts = repo.confirmation_counts([study_id])[study_id]
        assert counts == {"queued": 4, "running": 0, "complete": 0, "fail": 0}
        assert repo.state_counts([study_id])[study_id]["waiting"] == 0  # search counts apart
        taken = repo.reserve_many(study_id, "w", 10)
    assert [r.kind for r in taken] == [TrialKind.CONFIRMATION] * 4  # no fresh slot: none left
    assert {r.config["seed"] for r in taken if r.config} == {2**31 + 10, 2**31 + 11}
    with database.session() as session:
        repo = TrialRepository(session)
        for reservation in taken:
            repo.start(
                reservation.row_id,
                number=None,
                optuna_trial_id=None,
                params=None,
                config=reservation.config,
                weights_normalised=None,
                seed=reservation.config["seed"] if reservation.config else None,
            )
        assert repo.finish(taken[0].row_id, state="fail", reason="diverged")
        for reservation in taken[1:]:
            assert repo.finish(reservation.row_id, state="complete", values=[1.5])
        assert StudyRepository(session).get(study_id).trials_reserved == 2  # no slot back
    with database.session() as session:
        done = TrialRepository(session).complete_if_done(study_id, time_up=False, confirm=confirm)
    assert done is Completion.COMPLETED and asked == [1]


def test_nothing_to_confirm_completes_at_once(database: Database) -> None:
    study_id = _create(database, n_trials=1)
    _finished(database, study_id, 0, "complete", 1.0)
    with database.session() as session:
        done = TrialRepository(session).complete_if_done(study_id, time_up=False, confirm=list)
    assert done is Completion.COMPLETED


def test_the_schema_refuses_two_confirmation_runs_of_one_seed(database: Database) -> None:
    study_id = _create(database, n_trials=1)
    _finished(database, study_id, 0, "complete", 1.0)
    with database.session() as session:
        TrialRepository(session).complete_if_done(study_id, time_up=False, confirm=_confirm_runs)
    with pytest.raises(StorageError, match=r"(?i)unique"), database.session() as session:
        session.add(
            TrialRecord(
                study_id=study_id,
                kind="confirmation",
                state="queued",
                confirms="k0",
                seed=2**31 + 10,
                config={},
                reserved_at=utcnow(),
            )
        )


def test_a_lost_confirmation_run_is_failed_not_retried_and_gives_no_slot(
    database: Database,
) -> None:
    study_id = _create(database, n_trials=1)
    _finished(database, study_id, 0, "complete", 1.0)
    with database.session() as session:
        TrialRepository(session).complete_if_done(study_id, time_up=False, confirm=_confirm_runs)
    dead = _worker(database)
    with database.session() as session:
        repo = TrialRepository(session)
        first, second, *_ = repo.reserve_many(study_id, dead, 4)
        repo.start(
            first.row_id,
            number=None,
            optuna_trial_id=None,
            params=None,
            config=first.config,
            weights_normalised=None,
        )
    later = utcnow() + timedelta(seconds=60)
    with database.session() as session:
        claimed = TrialRepository(session).claim_lost(study_id, grace_s=1.0, now=later)
        rows = {r.id: r for r in TrialRepository(session).rows(study_id)}
        reserved = StudyRepository(session).get(study_id).trials_reserved
    ran = next(c for c in claimed if c.row_id == first.row_id)
    assert ran.retry_row_id is None
    assert rows[first.row_id].state is TrialState.FAIL
    assert rows[first.row_id].failure_kind is FailureKind.LOST_WORKER
    assert rows[second.row_id].state is TrialState.QUEUED  # reserved, never started: queued
    assert reserved == 1


def test_time_up_keeps_the_confirmation_runs(database: Database) -> None:
    study_id = _create(database, n_trials=5, time_budget_s=1.0)
    _finished(database, study_id, 0, "complete", 1.0)
    with database.session() as session:
        done = TrialRepository(session).complete_if_done(
            study_id, time_up=True, confirm=_confirm_runs
        )
        assert done is Completion.CONFIRMING
    with database.session() as session:
        done = TrialRepository(session).complete_if_done(
            study_id, time_up=True, confirm=_confirm_runs
        )
        counts = TrialRepository(session).confirmation_counts([study_id])[study_id]
    assert done is Completion.NOT_YET and counts["queued"] == 4

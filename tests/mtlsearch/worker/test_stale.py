"""Lost trials (their worker died) against a real SQLite storage: `mtlsearch.worker.stale`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState

from mtlsearch.worker import STALE_REASON, Worker, WorkerOptions, fail_lost_trials, repair_optuna
from mtlsearch.worker.asking import RETRY_OF_ATTR, ROW_ATTR
from storage import Database, StudyInfo, StudyRepository, TrialRepository, TrialRow
from storage import TrialState as RowState
from tests.mtlsearch.worker.helpers import (
    SETTINGS,
    asked,
    kill,
    load,
    register,
    submit,
    synthetic_spec,
)
from tests.utils.databases import migrated_database

#: The grace period of these tests (``Settings.stale_after_s``).
GRACE_S = SETTINGS.stale_after_s


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    with migrated_database(sqlite_url, SETTINGS) as database:
        yield database


def reserved(database: Database, info: StudyInfo) -> int:
    with database.session() as session:
        return StudyRepository(session).get(info.id).trials_reserved


def rows(database: Database, info: StudyInfo) -> list[TrialRow]:
    with database.session() as session:
        return TrialRepository(session).rows(info.id)


def test_a_dead_workers_trial_is_failed_and_its_retry_queued_once(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-dead")
    asked(database, info, worker)
    study = load(database, info)
    assert fail_lost_trials(database, study, info.id, GRACE_S) == []  # alive: not yet
    kill(database, worker)

    (lost,) = fail_lost_trials(database, study, info.id, GRACE_S)

    assert lost.number == 0 and lost.retry_row_id is not None
    (trial,) = load(database, info).trials  # the retry is our row until a worker takes it
    assert trial.state is TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == STALE_REASON
    failed, retry = rows(database, info)
    assert (failed.state, failed.reason) == (RowState.FAIL, STALE_REASON)
    assert (retry.id, retry.state, retry.retry_of) == (lost.retry_row_id, RowState.QUEUED, 0)
    assert retry.params == trial.params and retry.number is None
    assert reserved(database, info) == 1  # the lost trial's slot is the retry's now
    assert fail_lost_trials(database, study, info.id, GRACE_S) == []  # nothing twice


def test_a_queued_retry_runs_the_lost_trials_params(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    dead = register(database, "w-dead")
    asked(database, info, dead)
    kill(database, dead)
    fail_lost_trials(database, load(database, info), info.id, GRACE_S)
    peer = register(database, "w-peer")

    row_id = asked(database, info, peer)  # takes the queued retry before any fresh slot

    lost, retry = load(database, info).trials
    assert retry.params == lost.params and retry.distributions == lost.distributions
    assert retry.user_attrs[RETRY_OF_ATTR] == 0 and retry.state is TrialState.RUNNING
    assert retry.system_attrs[ROW_ATTR] == row_id
    (row,) = [r for r in rows(database, info) if r.id == row_id]
    assert (row.state, row.number, row.retry_of, row.worker_id) == (
        RowState.RUNNING,
        1,
        0,
        "w-peer",
    )
    assert reserved(database, info) == 1


def test_a_reservation_of_a_dead_worker_gives_its_slot_back(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-dead")
    with database.session() as session:
        assert TrialRepository(session).reserve(info.id, worker) is not None
    kill(database, worker)

    (lost,) = fail_lost_trials(database, load(database, info), info.id, GRACE_S)

    assert lost.number is None and lost.retry_row_id is None  # nothing asked: nothing to re-run
    assert reserved(database, info) == 0
    assert rows(database, info) == [] and load(database, info).trials == []


def test_a_kill_between_ask_and_recording_is_repaired_in_optuna(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-dead")
    asked(database, info, worker, record=False)  # killed right after ask()
    study = load(database, info)
    assert repair_optuna(database, study, info.id, GRACE_S) == 0  # its row is still reserved
    kill(database, worker)
    fail_lost_trials(database, study, info.id, GRACE_S)  # gives the reservation back

    assert repair_optuna(database, study, info.id, GRACE_S) == 1

    (trial,) = load(database, info).trials
    assert trial.state is TrialState.FAIL and trial.user_attrs["fail_reason"] == STALE_REASON
    assert rows(database, info) == []  # it never trained: its slot simply went back
    assert reserved(database, info) == 0


def test_a_row_finished_but_not_told_is_told_from_the_row(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-dead")
    row_id = asked(database, info, worker)
    with database.session() as session:  # the teller's row commit, then it died
        assert TrialRepository(session).finish(row_id, state="complete", values=[0.25])
    study = load(database, info)
    assert repair_optuna(database, study, info.id, GRACE_S) == 0  # its teller may tell yet
    time.sleep(GRACE_S + 0.2)

    assert repair_optuna(database, study, info.id, GRACE_S) == 1

    (trial,) = load(database, info).trials
    assert trial.state is TrialState.COMPLETE and trial.values == [0.25]
    assert reserved(database, info) == 1


def test_a_peer_killed_after_its_claim_leaves_one_retry_and_a_told_fail(
    database: Database,
) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-dead")
    asked(database, info, worker)
    kill(database, worker)
    study = load(database, info)
    with database.session() as session:  # a peer claims the row, and dies before the tell
        (lost,) = TrialRepository(session).claim_lost(info.id, grace_s=GRACE_S)
    assert lost.retry_row_id is not None
    time.sleep(GRACE_S + 0.2)

    assert repair_optuna(database, study, info.id, GRACE_S) == 1
    assert fail_lost_trials(database, study, info.id, GRACE_S) == []

    (trial,) = load(database, info).trials
    assert trial.state is TrialState.FAIL
    assert [(r.state, r.retry_of) for r in rows(database, info)] == [
        (RowState.FAIL, None),
        (RowState.QUEUED, 0),
    ]


def test_a_trial_its_worker_finished_first_is_not_claimed(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-slow")
    row_id = asked(database, info, worker)
    kill(database, worker)
    with database.session() as session:  # slow, not dead: its teller wins the row
        assert TrialRepository(session).finish(row_id, state="complete", values=[1.0])
    load(database, info).tell(0, 1.0)

    assert fail_lost_trials(database, load(database, info), info.id, GRACE_S) == []

    (trial,) = load(database, info).trials
    assert trial.state is TrialState.COMPLETE and "fail_reason" not in trial.user_attrs
    assert reserved(database, info) == 1


def test_a_retry_that_is_lost_again_is_not_retried_twice(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    first = register(database, "w-first")
    asked(database, info, first)
    kill(database, first)
    fail_lost_trials(database, load(database, info), info.id, GRACE_S)
    second = register(database, "w-second")
    asked(database, info, second)  # the queued retry, taken and lost again
    kill(database, second)

    (lost,) = fail_lost_trials(database, load(database, info), info.id, GRACE_S)

    assert lost.number == 1 and lost.retry_row_id is None
    trials = load(database, info).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert [(r.state, r.retry_of) for r in rows(database, info)] == [
        (RowState.FAIL, None),
        (RowState.FAIL, 0),
    ]
    assert reserved(database, info) == 0


def test_a_retry_taken_by_a_worker_that_dies_before_asking_is_queued_again(
    database: Database,
) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    first = register(database, "w-first")
    asked(database, info, first)
    kill(database, first)
    fail_lost_trials(database, load(database, info), info.id, GRACE_S)
    second = register(database, "w-second")
    with database.session() as session:  # takes the retry's slot, then dies
        (taken,) = TrialRepository(session).reserve_many(info.id, second, 1)
    assert taken.retry_of == 0
    kill(database, second)

    (lost,) = fail_lost_trials(database, load(database, info), info.id, GRACE_S)

    assert lost.row_id == taken.row_id and lost.number is None
    (_, retry) = rows(database, info)
    assert (retry.state, retry.worker_id, retry.retry_of) == (RowState.QUEUED, None, 0)
    assert reserved(database, info) == 1


def test_a_worker_drops_a_study_deleted_underneath_it(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = Worker(database, WorkerOptions(idle_exit_s=0.0, heartbeat_s=1.0), settings=SETTINGS)
    worker.register()
    try:
        with database.session() as session:
            (picked,) = StudyRepository(session).list(limit=10)[0]
        context = worker.context(picked)
        assert context is not None
        optuna.delete_study(study_name=info.optuna_study_name, storage=database.optuna_storage())

        assert worker.next_jobs() == []  # was: KeyError out of ask()

        assert worker.context(picked) is None  # its Optuna study is gone
        assert reserved(database, info) == 0
    finally:
        worker._shutdown()

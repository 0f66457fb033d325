"""Lost trials (their worker died) against a real SQLite storage: `mtlsearch.worker.stale`."""

from __future__ import annotations

import time
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState

from mtlsearch.worker import STALE_REASON, Worker, WorkerOptions, fail_lost_trials, repair_optuna
from mtlsearch.worker.stale import RETRY_OF_ATTR, requeue
from storage import Database, StudyInfo, StudyRepository, TrialRepository
from tests.mtlsearch.worker.helpers import (
    SETTINGS,
    asked,
    kill,
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


def load(database: Database, info: StudyInfo) -> optuna.Study:
    return optuna.load_study(study_name=info.optuna_study_name, storage=database.optuna_storage())


def reserved(database: Database, info: StudyInfo) -> int:
    with database.session() as session:
        return StudyRepository(session).get(info.id).trials_reserved


def test_a_dead_workers_trial_is_failed_released_and_requeued_once(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-dead")
    asked(database, info, worker)
    study = load(database, info)
    assert fail_lost_trials(database, study, info.id, GRACE_S) == []  # alive: not yet
    kill(database, worker)

    (lost,) = fail_lost_trials(database, study, info.id, GRACE_S)

    assert lost.number == 0 and lost.retry
    trials = load(database, info).trials
    assert trials[0].state is TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"] == STALE_REASON
    (retry,) = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == 0]
    assert retry.state is TrialState.WAITING and retry.params == trials[0].params
    assert "fail_reason" not in retry.user_attrs
    assert reserved(database, info) == 0
    assert fail_lost_trials(database, study, info.id, GRACE_S) == []  # nothing twice


def test_a_reservation_of_a_dead_worker_gives_its_slot_back(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-dead")
    with database.session() as session:
        assert TrialRepository(session).reserve(info.id, worker) is not None
    kill(database, worker)

    (lost,) = fail_lost_trials(database, load(database, info), info.id, GRACE_S)

    assert lost.number is None and not lost.retry  # nothing was asked: nothing to re-run
    assert reserved(database, info) == 0
    assert load(database, info).trials == []


def test_a_kill_between_ask_and_recording_is_repaired_in_optuna(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-dead")
    asked(database, info, worker, record=False)  # killed right after ask()
    kill(database, worker)
    study = load(database, info)
    fail_lost_trials(database, study, info.id, GRACE_S)  # the reservation
    assert repair_optuna(database, study, info.id, GRACE_S) == 0  # inside the grace period
    time.sleep(GRACE_S + 0.2)

    assert repair_optuna(database, study, info.id, GRACE_S) == 1

    trials = load(database, info).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].user_attrs[RETRY_OF_ATTR] == 0
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


def test_a_peer_killed_after_queuing_the_retry_leaves_one_retry(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    worker = register(database, "w-dead")
    asked(database, info, worker)
    kill(database, worker)
    study = load(database, info)
    with database.session() as session:  # a peer claims the row ...
        (lost,) = TrialRepository(session).claim_lost(info.id, grace_s=GRACE_S)
    assert lost.retry
    requeue(database, study, study.trials[0])  # ... queues its retry, and dies before the tell
    time.sleep(GRACE_S + 0.2)

    assert repair_optuna(database, study, info.id, GRACE_S) == 1

    trials = load(database, info).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert [t.user_attrs.get(RETRY_OF_ATTR) for t in trials] == [None, 0]


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
    asked(database, info, second)  # the WAITING retry, asked and lost again
    kill(database, second)

    (lost,) = fail_lost_trials(database, load(database, info), info.id, GRACE_S)

    assert lost.number == 1 and not lost.retry
    trials = load(database, info).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert reserved(database, info) == 0


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

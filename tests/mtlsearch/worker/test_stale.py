"""Stale-trial handling against a real SQLite storage (regressions of the "Trust" issue)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import optuna
import pytest
from optuna.trial import TrialState

from mtlsearch.settings import Settings
from mtlsearch.worker import STALE_REASON, Worker, WorkerOptions, fail_stale_trials
from mtlsearch.worker import stale as stale_module
from storage import Database, StudyInfo, StudyRepository
from tests.mtlsearch.worker.helpers import submit, synthetic_spec
from tests.utils.databases import migrated_database

SETTINGS = Settings(worker_heartbeat_s=1.0, stale_after_s=1.0)
GRACE_S = 1.0  # Optuna's grace period: stale_after_s rounded up to whole seconds
#: Past the grace period for a heartbeat (SQLite's clock has whole seconds).
PAST_BEAT_S = 2.2


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    with migrated_database(sqlite_url, SETTINGS) as database:
        yield database


def load(database: Database, info: StudyInfo) -> optuna.Study:
    return optuna.load_study(study_name=info.optuna_study_name, storage=database.optuna_storage())


def reserved(database: Database, info: StudyInfo) -> int:
    with database.session() as session:
        return StudyRepository(session).get(info.id).trials_reserved


def asked(database: Database, info: StudyInfo, beat: bool) -> optuna.Trial:
    """What a worker does before it dies: reserve a slot, ask, (maybe) beat once."""
    with database.session() as session:
        assert StudyRepository(session).reserve_trial(info.id)
    trial = load(database, info).ask()
    trial.suggest_float("w_classification", 0.1, 10.0, log=True)
    if beat:
        database.optuna_storage().record_heartbeat(trial._trial_id)
    return trial


def test_a_running_trial_without_heartbeat_row_is_stale_after_the_grace_period(
    database: Database,
) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    dead = asked(database, info, beat=False)  # killed between ask() and its first beat
    study = load(database, info)
    assert fail_stale_trials(study, info.id) == []  # inside the grace period: not yet
    time.sleep(GRACE_S + 0.3)

    (failed,) = fail_stale_trials(study, info.id)

    assert failed.number == dead.number and failed.retried
    trials = load(database, info).trials
    assert trials[dead.number].state is TrialState.FAIL
    assert trials[dead.number].user_attrs["fail_reason"] == STALE_REASON
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert retry.state is TrialState.WAITING and retry.params == trials[dead.number].params
    assert "fail_reason" not in retry.user_attrs
    assert reserved(database, info) == 0


def test_fail_reason_release_and_retry_are_one_transaction(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    dead = asked(database, info, beat=True)
    time.sleep(PAST_BEAT_S)
    storage = database.optuna_storage()

    def killed(*args: object, **kwargs: object) -> None:
        raise RuntimeError("killed while queueing the retry")

    # A process dying at the last step leaves the trial as it was: still stale, still RUNNING.
    monkeypatch.setattr(storage, "_create_new_trial", killed)
    with pytest.raises(RuntimeError, match="killed"):
        fail_stale_trials(load(database, info), info.id)
    trial = load(database, info).trials[dead.number]
    assert trial.state is TrialState.RUNNING and "fail_reason" not in trial.user_attrs
    assert reserved(database, info) == 1
    monkeypatch.undo()

    # The next pass does it all, once.
    (failed,) = fail_stale_trials(load(database, info), info.id)
    assert failed.retried
    trials = load(database, info).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert reserved(database, info) == 0
    assert fail_stale_trials(load(database, info), info.id) == []  # nothing twice


def test_a_trial_finished_before_the_fail_keeps_no_stale_reason(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    dead = asked(database, info, beat=True)
    time.sleep(PAST_BEAT_S)
    study = load(database, info)
    ids = stale_module.stale_trial_ids(database.optuna_storage(), study._study_id)
    # Its worker was slow, not dead: it tells COMPLETE after the stale scan saw it.
    study.tell(dead.number, 1.0)
    monkeypatch.setattr(stale_module, "stale_trial_ids", lambda storage, study_id: ids)

    assert fail_stale_trials(study, info.id) == []

    (trial,) = load(database, info).trials
    assert trial.state is TrialState.COMPLETE
    assert "fail_reason" not in trial.user_attrs
    assert reserved(database, info) == 1


def test_a_retry_that_goes_stale_again_is_not_retried_twice(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    asked(database, info, beat=True)
    time.sleep(PAST_BEAT_S)
    fail_stale_trials(load(database, info), info.id)
    retry = asked(database, info, beat=True)  # the WAITING retry, asked and lost again
    assert load(database, info).trials[1].system_attrs["retry_history"] == [0]
    time.sleep(PAST_BEAT_S)

    (failed,) = fail_stale_trials(load(database, info), info.id)

    assert failed.number == retry.number and not failed.retried
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

        assert worker.next_job_any() is None  # was: KeyError out of ask()

        assert worker.context(picked) is None  # its Optuna study is gone
        assert reserved(database, info) == 0
    finally:
        worker._shutdown()

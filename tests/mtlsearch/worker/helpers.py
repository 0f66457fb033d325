"""Test data for the worker tests: studies written into a database as the API writes them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

import optuna
from sqlalchemy import update

from mtlsearch.search.spec import StudySpec
from mtlsearch.settings import Settings
from mtlsearch.worker import Worker, WorkerOptions
from mtlsearch.worker.asking import new_trial
from mtlsearch.worker.studies import load_study_context
from service.services.studies import create_study
from storage import Database, StudyInfo, StudyRepository, TrialRepository, WorkerRepository
from storage.models import WorkerRecord, utcnow
from tests.utils.specs import quick_spec

#: Short heartbeats and grace so that stale trials show within a test.
SETTINGS = Settings(worker_heartbeat_s=1.0, stale_after_s=1.0)

#: `quick_spec` with fewer samples: these tests train many trials in process.
synthetic_spec = partial(quick_spec, max_train_samples=200)


def submit(database: Database, spec: dict[str, Any]) -> StudyInfo:
    """Create the study row and its Optuna study, as ``POST /api/v1/studies`` does."""
    public = create_study(database, StudySpec.model_validate(spec))
    with database.session() as session:
        return StudyRepository(session).get(public.id)


def make_worker(database: Database, **options: object) -> Worker:
    """An in-process worker on ``database`` that exits once idle (options override)."""
    defaults: dict[str, object] = {"idle_exit_s": 0.0, "heartbeat_s": 1.0}
    defaults.update(options)
    return Worker(database, WorkerOptions(**defaults), settings=SETTINGS)  # type: ignore[arg-type]


def register(database: Database, name: str) -> str:
    with database.session() as session:
        return (
            WorkerRepository(session)
            .register(
                hostname="test", pid=1, device="cpu", worker_id=name, experiments=[], batch_size=1
            )
            .id
        )


def kill(database: Database, worker_id: str) -> None:
    """Age the worker's row past the grace period, as a dead worker's row ages."""
    with database.session() as session:
        session.execute(
            update(WorkerRecord)
            .where(WorkerRecord.id == worker_id)
            .values(last_heartbeat=utcnow() - timedelta(seconds=10 * SETTINGS.stale_after_s))
        )


def asked(database: Database, info: StudyInfo, worker_id: str, record: bool = True) -> int:
    """What a worker does before it dies, through the worker's own calls: reserve a slot (a
    queued retry first), create its Optuna trial, (maybe) record the trial in its row.

    Returns the row id."""
    context, why = load_study_context(database, info, worker_id)
    assert context is not None, why
    with database.session() as session:
        (reservation,) = TrialRepository(session).reserve_many(info.id, worker_id, 1)
    trial = new_trial(database, context, reservation)
    trial.suggest_float("w_classification", 0.1, 10.0, log=True)
    if record:
        with database.session() as session:
            TrialRepository(session).start(
                reservation.row_id,
                number=trial.number,
                optuna_trial_id=trial._trial_id,
                params=dict(trial.params),
                config=None,
                weights_normalised=None,
            )
    return reservation.row_id


def load(database: Database, info: StudyInfo) -> optuna.Study:
    """The study's Optuna study, as the worker sees it."""
    return optuna.load_study(study_name=info.optuna_study_name, storage=database.optuna_storage())


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def run_in_thread(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return thread

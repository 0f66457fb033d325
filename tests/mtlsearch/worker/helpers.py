"""Test data for the worker tests: studies written into a database as the API writes them."""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

import optuna
from sqlalchemy import update

from mtlsearch.search.spec import StudySpec
from mtlsearch.settings import Settings
from mtlsearch.worker import Worker, WorkerOptions
from mtlsearch.worker.stale import RETRY_OF_ATTR
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
    """What a worker does before it dies: reserve a row, ask, (maybe) record the trial.

    Returns the row id."""
    with database.session() as session:
        row_id = TrialRepository(session).reserve(info.id, worker_id)
    assert row_id is not None
    trial = optuna.load_study(
        study_name=info.optuna_study_name, storage=database.optuna_storage()
    ).ask()
    trial.suggest_float("w_classification", 0.1, 10.0, log=True)
    if record:
        retry_of = trial.user_attrs.get(RETRY_OF_ATTR)
        with database.session() as session:
            TrialRepository(session).start(
                row_id,
                number=trial.number,
                optuna_trial_id=trial._trial_id,
                params=dict(trial.params),
                config=None,
                weights_normalised=None,
                retry_of=retry_of,
            )
    return row_id

"""Test data for the worker tests: studies written into a database as the API writes them."""

from __future__ import annotations

from functools import partial
from typing import Any

from mtlsearch.search.spec import StudySpec
from mtlsearch.settings import Settings
from mtlsearch.worker import Worker, WorkerOptions
from service.services.studies import create_study
from storage import Database, StudyInfo, StudyRepository
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

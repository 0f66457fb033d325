"""Test data for the worker tests: studies written into a database as the API writes them."""

from __future__ import annotations

from functools import partial
from typing import Any

from mtlsearch.search.spec import StudySpec
from service.services.studies import create_study
from storage import Database, StudyInfo, StudyRepository
from tests.utils.specs import quick_spec

#: `quick_spec` with fewer samples: these tests train many trials in process.
synthetic_spec = partial(quick_spec, max_train_samples=200)


def submit(database: Database, spec: dict[str, Any]) -> StudyInfo:
    """Create the study row and its Optuna study, as ``POST /api/v1/studies`` does."""
    public = create_study(database, StudySpec.model_validate(spec))
    with database.session() as session:
        return StudyRepository(session).get(public.id)

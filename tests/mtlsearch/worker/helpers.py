"""Test data for the worker tests: studies written into a database as the API writes them."""

from __future__ import annotations

from typing import Any

from mtlsearch.search.optuna_factory import create_optuna_study
from mtlsearch.search.spec import StudySpec, validate_against_experiment
from storage import Database, StudyInfo, StudyRepository


def synthetic_spec(name: str = "s", **overrides: Any) -> dict[str, Any]:
    """A quick study of the generated `synthetic` experiment (2 epochs, 200 samples)."""
    search_space: dict[str, Any] = {"epochs": 2, "max_train_samples": 200}
    search_space.update(overrides.pop("search_space", {}))
    spec: dict[str, Any] = {
        "name": name,
        "experiment": "synthetic",
        "n_trials": 3,
        "seed": 0,
        "sampler": "random",
        "pruner": "none",
        "objective": {"kind": "weighted_mean"},
        "search_space": search_space,
    }
    spec.update(overrides)
    return spec


def submit(database: Database, spec: dict[str, Any]) -> StudyInfo:
    """Create the study row and its Optuna study, as ``POST /api/v1/studies`` does."""
    model = StudySpec.model_validate(spec)
    experiment = validate_against_experiment(model)
    with database.session() as session:
        info = StudyRepository(session).create(
            name=model.name,
            experiment=model.experiment,
            spec=model.model_dump(mode="json"),
            n_trials=model.n_trials,
            time_budget_s=model.time_budget_s,
        )
    create_optuna_study(
        database.optuna_storage(), model, info.optuna_study_name, experiment=experiment
    )
    return info

"""The best record from our trial rows is the record Optuna's trials give."""

from __future__ import annotations

from typing import Any

import pytest
from optuna.trial import TrialState

from mtl_core.experiments import get_experiment
from mtlsearch.search.best import best_record, best_record_from_rows, best_rows
from mtlsearch.search.optuna_factory import create_optuna_study
from mtlsearch.search.spec import StudySpec
from storage import Database, StudyRepository, TrialRepository
from tests.utils.trials import add_finished_trials

SYNTHETIC = get_experiment("synthetic")
STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE, TrialState.FAIL)


def _spec(**overrides: Any) -> StudySpec:
    data: dict[str, Any] = {
        "name": "best",
        "experiment": "synthetic",
        "n_trials": 40,
        "search_space": {"weights": {"classification": {"lo": 0.1, "hi": 10}}},
    }
    data.update(overrides)
    return StudySpec.model_validate(data)


def _both(database: Database, spec: StudySpec, baselines: dict[str, float] | None) -> Any:
    """(record from Optuna's trials, record from our rows) of one filled study."""
    study = create_optuna_study(database.optuna_storage(), spec, "opt-best", experiment=SYNTHETIC)
    if baselines is not None:
        study.set_user_attr("baselines", baselines)
    with database.session() as session:
        study_id = (
            StudyRepository(session)
            .create(
                name=spec.name,
                experiment=spec.experiment,
                spec=spec.model_dump(mode="json"),
                n_trials=spec.n_trials,
                optuna_study_name="opt-best",
            )
            .id
        )
    add_finished_trials(database, "opt-best", spec, 30, seed=3, states=STATES)
    with database.session() as session:
        rows = TrialRepository(session).rows(study_id)
    return best_record(study, spec, SYNTHETIC), best_record_from_rows(
        rows, spec, SYNTHETIC, baselines
    )


@pytest.mark.parametrize("baselines", [None, {"regression": 1.0, "classification": 0.7}])
def test_single_objective_record_matches_optuna(
    database: Database, baselines: dict[str, float] | None
) -> None:
    from_optuna, from_rows = _both(database, _spec(), baselines)
    assert from_rows is not None and from_rows == from_optuna
    assert (from_rows["delta_m"] is None) == (baselines is None)


def test_multi_objective_pareto_set_matches_optuna(database: Database) -> None:
    spec = _spec(objective={"kind": "multi"}, sampler="nsga2")
    from_optuna, from_rows = _both(database, spec, None)
    assert from_rows is not None and from_rows == from_optuna
    assert len(from_rows["pareto"]) >= 1


def test_no_complete_row_gives_no_record(database: Database) -> None:
    assert best_record_from_rows([], _spec(), SYNTHETIC, None) is None


def test_ties_go_to_the_lowest_number(database: Database) -> None:
    with database.session() as session:
        study_id = StudyRepository(session).create(name="ties", experiment="e", spec={}).id
        repo = TrialRepository(session)
        for number in (3, 1, 2):
            row_id = repo.reserve(study_id, None)
            assert row_id is not None
            repo.start(
                row_id,
                number=number,
                optuna_trial_id=number,
                params={},
                config=None,
                weights_normalised=None,
            )
            repo.finish(row_id, state="complete", values=[1.0 if number != 2 else 0.5])
        rows = repo.rows(study_id)
    assert [r.number for r in best_rows(rows, ["maximize"])] == [1]
    assert [r.number for r in best_rows(rows, ["minimize"])] == [2]
    with database.session() as session:
        best = TrialRepository(session).best_row(study_id, "maximize")
    assert best is not None and best.number == 1  # SQL breaks the tie the same way

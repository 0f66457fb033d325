"""The REST's pure trial helpers agree with Optuna's own answers."""

from __future__ import annotations

import random
from typing import Any, Literal

import optuna
import pytest

from service.services.trial_reads import pareto_size, study_directions
from storage import Database, StudyRepository


@pytest.mark.parametrize("directions", [["minimize", "maximize"], ["maximize"] * 3])
def test_pareto_size_matches_optuna_best_trials(
    directions: list[Literal["minimize", "maximize"]],
) -> None:
    rng = random.Random(len(directions))
    study = optuna.create_study(directions=directions)
    values = [[float(rng.randint(0, 6)) for _ in directions] for _ in range(200)]
    study.add_trials(
        [optuna.trial.create_trial(values=v, params={}, distributions={}) for v in values]
    )
    assert pareto_size(values, directions) == len(study.best_trials)


def test_pareto_size_skips_incomplete_vectors() -> None:
    assert pareto_size([[1.0, float("nan")], [0.0, 0.0]], ["maximize", "maximize"]) == 1


def _spec(name: str, experiment: str, *, multi: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "experiment": experiment, "n_trials": 5}
    if multi:
        spec.update(objective={"kind": "multi"}, sampler="nsga2")
    return spec


def test_directions_come_from_the_spec(database: Database) -> None:
    with database.session() as session:
        repo = StudyRepository(session)
        single = repo.create(name="one", experiment="synthetic", spec=_spec("one", "synthetic"))
        multi = repo.create(
            name="multi",
            experiment="synthetic",
            spec=_spec("multi", "synthetic", multi=True),
        )
        unknown = repo.create(
            name="unknown",
            experiment="nowhere",
            spec=_spec("unknown", "nowhere", multi=True),
        )
    assert study_directions(single) == ["maximize"]
    assert study_directions(multi) == ["minimize", "maximize"]
    assert study_directions(unknown) == []

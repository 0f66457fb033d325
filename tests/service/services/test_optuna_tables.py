"""SQL over Optuna's tables agrees with Optuna's own answers."""

from __future__ import annotations

import random
from typing import Literal

import optuna
import pytest

from service.services import optuna_tables as ot
from storage import Database


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
    assert ot.pareto_size(values, directions) == len(study.best_trials)


def test_counts_best_values_and_pages_on_each_backend(database: Database) -> None:
    storage = database.optuna_storage()
    study = optuna.create_study(storage=storage, study_name="tables", direction="minimize")
    dist: dict[str, optuna.distributions.BaseDistribution] = {
        "x": optuna.distributions.FloatDistribution(0, 10)
    }
    states = [optuna.trial.TrialState.COMPLETE] * 5 + [optuna.trial.TrialState.PRUNED] * 2
    study.add_trials(
        [
            optuna.trial.create_trial(
                state=state,
                value=float(i) + 0.5 if state.name == "COMPLETE" else None,
                params={"x": float(i)},
                distributions=dist,
                user_attrs={"val_metrics": {"a": i}},
            )
            for i, state in enumerate(states)
        ]
    )
    with database.session() as session:
        ids = ot.study_ids(session, ["tables", "missing"])
        assert list(ids) == ["tables"]
        sid = ids["tables"]
        counts = ot.state_counts(session, [sid])[sid]
        assert counts == {"running": 0, "waiting": 0, "complete": 5, "pruned": 2, "fail": 0}
        dirs = ot.directions(session, [sid])
        assert dirs == {sid: ["minimize"]}
        assert ot.best_values(session, dirs) == {sid: 0.5}
        page, total = ot.trial_page(session, sid, offset=3, limit=3)
        assert total == 7
        assert [row.number for row in page] == [3, 4, 5]
        assert page[0].params == {"x": 3.0}
        assert page[0].values == [3.5]
        assert page[0].user_attrs == {"val_metrics": {"a": 3}}
        assert page[2].state == "pruned" and page[2].values is None
        assert page[0].datetime_start is not None and page[0].datetime_start.tzinfo is not None
        pruned, n_pruned = ot.trial_page(
            session, sid, offset=0, limit=10, states=[optuna.trial.TrialState.PRUNED]
        )
        assert n_pruned == 2 and [row.number for row in pruned] == [5, 6]

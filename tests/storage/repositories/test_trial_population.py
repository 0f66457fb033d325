"""A population member's trajectory and lineage through TrialRepository, on SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from storage import Database, StudyRepository, TrialRepository, TrialState
from tests.utils.trials import population_record

MEMBER: dict[str, Any] = population_record(("a", "b"), source=12)


def _running(database: Database, study_id: str, number: int) -> int:
    with database.session() as session:
        repo = TrialRepository(session)
        row_id = repo.reserve(study_id, "w")
        assert row_id is not None
        repo.start(
            row_id,
            number=number,
            optuna_trial_id=number,
            params={"w": number},
            config={"weights": {"a": 1.0, "b": 2.5}},
            weights_normalised=None,
        )
        return row_id


def test_finish_stores_the_population_and_every_read_returns_it(database: Database) -> None:
    with database.session() as session:
        study_id = StudyRepository(session).create(name="s", experiment="e", spec={}).id
    member, plain = _running(database, study_id, 0), _running(database, study_id, 1)
    with database.session() as session:
        repo = TrialRepository(session)
        assert repo.finish(member, state="complete", values=[0.9], population=MEMBER)
        assert repo.finish(plain, state="complete", values=[0.5])
    with database.session() as session:
        repo = TrialRepository(session)
        rows = {row.number: row for row in repo.rows(study_id)}
        best = repo.best_row(study_id, "maximize")
        page, count = repo.page(study_id, 0, 10)
        by_number = repo.by_number(study_id, 0)
    assert rows[0].state is TrialState.COMPLETE and rows[0].population == MEMBER
    assert rows[1].population is None  # a trial outside a population
    assert best is not None and best.number == 0 and best.population == MEMBER
    assert count == 2 and [row.population for row in page] == [MEMBER, None]
    assert by_number is not None and by_number.population == MEMBER


def test_a_population_that_is_no_json_is_refused_by_name(database: Database) -> None:
    with database.session() as session:
        study_id = StudyRepository(session).create(name="s", experiment="e", spec={}).id
    row_id = _running(database, study_id, 0)
    broken = {**MEMBER, "trajectory": [{"epoch": 0, "weights": {"a": float("nan")}}]}
    with database.session() as session, pytest.raises(ValueError, match="population must be"):
        TrialRepository(session).finish(row_id, state="complete", values=[1.0], population=broken)
    with database.session() as session:
        (row,) = TrialRepository(session).rows(study_id)
    assert row.state is TrialState.RUNNING and row.population is None

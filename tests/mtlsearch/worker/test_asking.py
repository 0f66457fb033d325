"""ask_batch: a batch of trials of one study in a few transactions, on SQLite and PostgreSQL."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from mtlsearch.worker.asking import ROW_ATTR, Asked, StudyGone, ask_batch
from mtlsearch.worker.studies import StudyContext, load_study_context
from storage import Database, StudyInfo, StudyRepository, TrialRepository
from storage import TrialState as RowState
from tests.mtlsearch.worker.helpers import register, submit, synthetic_spec


def _context(database: Database, info: StudyInfo, worker_id: str) -> StudyContext:
    context, why = load_study_context(database, info, worker_id)
    assert context is not None, why
    return context


def _trial(item: Asked) -> optuna.Trial:
    assert item.trial is not None, "a search trial has its Optuna trial"
    return item.trial


def _reserved(database: Database, info: StudyInfo) -> int:
    with database.session() as session:
        return StudyRepository(session).get(info.id).trials_reserved


def test_a_batch_takes_what_the_budget_has_left_and_starts_every_row(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=3))
    me = register(database, "me")
    context = _context(database, info, me)
    asked = ask_batch(database, context, 5, worker_id=me, device="cpu", go_on=lambda: True)

    assert len(asked) == 3 and _reserved(database, info) == 3
    with database.session() as session:
        rows = TrialRepository(session).rows(info.id)
    assert [(r.state, r.number, r.worker_id) for r in rows] == [
        (RowState.RUNNING, _trial(item).number, me) for item in asked
    ]
    for row, item in zip(rows, asked, strict=True):
        assert item.config is not None and row.config == item.config.model_dump(mode="json")
        assert row.params == _trial(item).params
    # Each Optuna trial names its row: a trial its row never records is found by its row.
    trials = optuna.load_study(
        study_name=info.optuna_study_name, storage=database.optuna_storage()
    ).trials
    assert [t.system_attrs[ROW_ATTR] for t in trials] == [r.id for r in rows]
    assert ask_batch(database, context, 5, worker_id=me, device="cpu", go_on=lambda: True) == []


def test_repeats_within_one_batch_get_seeds_of_their_own(database: Database) -> None:
    # A parameter-free strategy with fixed weights: every trial has the same configuration.
    spec = synthetic_spec(n_trials=4, seed=5, search_space={"strategies": [{"name": "pcgrad"}]})
    info = submit(database, spec)
    me = register(database, "me")
    context = _context(database, info, me)
    asked = ask_batch(database, context, 4, worker_id=me, device="cpu", go_on=lambda: True)

    seeds = [item.config.seed for item in asked if item.config is not None]
    numbers = [_trial(item).number for item in asked]
    assert seeds == [5] + [5 + n for n in numbers[1:]]
    assert len(set(seeds)) == 4
    # The row records each trial's own seed from its start (what determines its run).
    with database.session() as session:
        rows = TrialRepository(session).rows(info.id)
    assert [r.seed for r in rows] == seeds
    first = numbers[0]
    trials = optuna.load_study(
        study_name=info.optuna_study_name, storage=database.optuna_storage()
    ).trials
    assert [t.user_attrs.get("repeat_of") for t in trials] == [None, first, first, first]


def test_a_batch_ended_early_gives_the_rest_of_its_slots_back(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=10))
    me = register(database, "me")
    context = _context(database, info, me)
    calls = iter([True, True, False])
    asked = ask_batch(database, context, 5, worker_id=me, device="cpu", go_on=lambda: next(calls))

    assert len(asked) == 2 and _reserved(database, info) == 2
    with database.session() as session:
        states = [r.state for r in TrialRepository(session).rows(info.id)]
    assert states == [RowState.RUNNING] * 2  # the three never asked are gone, slots back


def test_a_study_gone_mid_batch_leaves_no_row_reserved(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=10))
    me = register(database, "me")
    context = _context(database, info, me)
    asked = context.study.ask  # the first ask works, the second finds the study gone

    def ask_then_gone() -> optuna.Trial:
        context.study.ask = fail  # type: ignore[method-assign, assignment]
        return asked()

    def fail() -> optuna.Trial:
        raise KeyError("gone")

    context.study.ask = ask_then_gone  # type: ignore[method-assign, assignment]
    with pytest.raises(StudyGone):
        ask_batch(database, context, 3, worker_id=me, device="cpu", go_on=lambda: True)

    assert _reserved(database, info) == 0
    with database.session() as session:
        assert TrialRepository(session).rows(info.id) == []  # every reservation given back
    optuna_study = optuna.load_study(
        study_name=info.optuna_study_name, storage=database.optuna_storage()
    )
    assert [t.state for t in optuna_study.trials] == [TrialState.FAIL]

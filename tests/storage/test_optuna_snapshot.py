"""SnapshotStorage: one read of a study per batch of asks, every write in the database at once."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from optuna.trial import TrialState
from sqlalchemy import event
from sqlalchemy.engine import Engine

from storage import Database
from storage.optuna_snapshot import SnapshotStorage

X = optuna.distributions.FloatDistribution(0.0, 1.0)


def _study(storage: optuna.storages.BaseStorage, name: str = "s") -> optuna.Study:
    sampler = optuna.samplers.TPESampler(
        seed=0, n_startup_trials=5, multivariate=True, constant_liar=True
    )
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler)


@contextmanager
def trial_list_reads(engine: Engine) -> Iterator[list[str]]:
    """The reads of a list of trials on ``engine`` inside the block (Optuna loads a list's
    params with one ``trial_params.trial_id IN (...)`` query; a write reads one trial by id)."""
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        if "trial_params.trial_id IN" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", before)


@pytest.fixture
def plain(database: Database) -> optuna.Study:
    """A study with 10 finished trials, on the database's own storage."""
    study = optuna.create_study(study_name="s", storage=database.optuna_storage())
    for i in range(10):
        study.add_trial(
            optuna.trial.create_trial(params={"x": i / 10}, distributions={"x": X}, value=i)
        )
    return study


def _ask_batch(study: optuna.Study, n: int) -> list[optuna.Trial]:
    trials = [study.ask() for _ in range(n)]
    for trial in trials:
        trial.suggest_float("x", 0.0, 1.0)
    return trials


def test_a_batch_of_asks_reads_the_study_far_fewer_times(
    database: Database, plain: optuna.Study
) -> None:
    engine = database.engine
    with trial_list_reads(engine) as direct:
        _ask_batch(_study(database.optuna_storage()), 16)
    with trial_list_reads(engine) as batched:
        _ask_batch(_study(SnapshotStorage(database.optuna_storage(), max_age_s=60)), 16)
    # Each direct ask reads the unfinished trials several times; the snapshot reads them once.
    assert len(batched) >= 1 and len(batched) * 10 < len(direct), (len(batched), len(direct))


def test_own_asks_count_at_once_and_writes_reach_the_database(
    database: Database, plain: optuna.Study
) -> None:
    storage = SnapshotStorage(database.optuna_storage(), max_age_s=60)
    study = _study(storage)
    first, second = _ask_batch(study, 2)

    # The constant liar sees this worker's running trials (with their params) before any
    # refresh, and its own tells count at once.
    running = study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    assert [(t.number, t.params) for t in running] == [
        (first.number, first.params),
        (second.number, second.params),
    ]
    first.report(0.5, 1)
    first.set_user_attr("note", "kept")
    study.tell(first, 3.0)
    (told,) = [t for t in study.get_trials() if t.number == first.number]
    assert told.state is optuna.trial.TrialState.COMPLETE and told.values == [3.0]
    assert told.intermediate_values == {1: 0.5} and told.user_attrs == {"note": "kept"}

    # Every write is in the database, as a storage of its own reads it.
    fresh = optuna.load_study(study_name="s", storage=database.optuna_storage())
    stored = fresh.trials[first.number]
    assert stored.state is optuna.trial.TrialState.COMPLETE and stored.values == [3.0]
    assert stored.intermediate_values == {1: 0.5} and stored.user_attrs == {"note": "kept"}
    assert stored.params == first.params
    assert fresh.trials[second.number].state is optuna.trial.TrialState.RUNNING


def test_other_writers_are_seen_after_a_refresh_only(
    database: Database, plain: optuna.Study
) -> None:
    storage = SnapshotStorage(database.optuna_storage(), max_age_s=60)
    study = _study(storage)
    assert len(study.trials) == 10
    plain.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": X}, value=1))
    assert len(study.trials) == 10  # the snapshot is at most max_age_s old: still this one
    storage.refresh(study._study_id)
    assert len(study.trials) == 11


def test_a_snapshot_older_than_max_age_is_taken_again(
    database: Database, plain: optuna.Study
) -> None:
    study = _study(SnapshotStorage(database.optuna_storage(), max_age_s=0))
    assert len(study.trials) == 10
    plain.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions={"x": X}, value=1))
    assert len(study.trials) == 11


def test_a_queued_trial_is_popped_once(database: Database, plain: optuna.Study) -> None:
    plain.enqueue_trial({"x": 0.25})
    storage = SnapshotStorage(database.optuna_storage(), max_age_s=60)
    study = _study(storage)
    first, second = _ask_batch(study, 2)
    assert first.params == {"x": 0.25}
    assert second.number > first.number and second.number != first.number


def test_a_trial_another_worker_popped_since_the_snapshot_is_not_asked_again(
    database: Database, plain: optuna.Study
) -> None:
    plain.enqueue_trial({"x": 0.25})
    storage = SnapshotStorage(database.optuna_storage(), max_age_s=60)
    study = _study(storage)
    assert len(study.trials) == 11  # the snapshot holds the WAITING trial
    taken = plain.ask()  # another worker pops it
    assert taken.suggest_float("x", 0.0, 1.0) == 0.25
    (mine,) = _ask_batch(study, 1)
    assert mine.number != taken.number
    assert (
        optuna.load_study(study_name="s", storage=database.optuna_storage())
        .trials[mine.number]
        .state
        is optuna.trial.TrialState.RUNNING
    )


def test_max_age_must_not_be_negative(database: Database) -> None:
    with pytest.raises(ValueError, match="max_age_s must be >= 0, got max_age_s=-1"):
        SnapshotStorage(database.optuna_storage(), max_age_s=-1)


_EXAMPLES = itertools.count()
_ACTIONS = st.lists(
    st.sampled_from(["ask", "complete", "prune", "fail", "report", "enqueue"]),
    min_size=1,
    max_size=12,
)
_FILTERS = [
    None,
    (TrialState.RUNNING,),
    (TrialState.WAITING,),
    (TrialState.COMPLETE,),
    (TrialState.COMPLETE, TrialState.PRUNED),
    (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
    (TrialState.FAIL, TrialState.WAITING),
]


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actions=_ACTIONS)
def test_reads_filtered_by_state_match_the_database(database: Database, actions: list[str]) -> None:
    # The snapshot indexes unfinished trials and keeps each filter's finished ones between
    # reads: whatever this storage wrote in between, a filtered read is the database's.
    name = f"s{next(_EXAMPLES)}"
    plain = optuna.create_study(study_name=name, storage=database.optuna_storage())
    plain.add_trial(optuna.trial.create_trial(params={"x": 0.1}, distributions={"x": X}, value=1))
    storage = SnapshotStorage(database.optuna_storage(), max_age_s=60)
    study = _study(storage, name)
    study_id = study._study_id
    open_trials: list[optuna.Trial] = []
    for action in actions:
        if action == "ask":
            open_trials.append(study.ask())
            open_trials[-1].suggest_float("x", 0.0, 1.0)
        elif action == "enqueue":
            study.enqueue_trial({"x": 0.5})
        elif open_trials:
            trial = open_trials.pop(0)
            if action == "report":
                trial.report(0.1, 1)
                open_trials.append(trial)
            else:
                state = {"complete": TrialState.COMPLETE, "prune": TrialState.PRUNED}
                study.tell(
                    trial,
                    1.0 if action == "complete" else None,
                    state=state.get(action, TrialState.FAIL),
                )
        for states in _FILTERS:
            # Read twice: the second read is the one a cached filter serves.
            for _ in range(2):
                ours = storage.get_all_trials(study_id, deepcopy=False, states=states)
                theirs = database.optuna_storage().get_all_trials(study_id, states=states)
                assert [(t.number, t.state, t.intermediate_values) for t in ours] == [
                    (t.number, t.state, t.intermediate_values) for t in theirs
                ]

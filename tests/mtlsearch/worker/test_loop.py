"""The worker loop in process, on a real SQLite file, training the `synthetic` experiment."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from mtlsearch.search.spec import StudySpec
from mtlsearch.worker import (
    CANCELLED_REASON,
    STALE_REASON,
    STOPPED_REASON,
    WorkerOptions,
)
from mtlsearch.worker.asking import RETRY_OF_ATTR
from mtlsearch.worker.studies import baseline_key
from storage import (
    ArtifactRepository,
    BaselineRepository,
    Database,
    StudyInfo,
    StudyRepository,
    StudyStatus,
    TrialRepository,
    WorkerRepository,
    WorkerStatus,
)
from tests.mtlsearch.worker.helpers import (
    asked,
    kill,
    load,
    make_worker,
    register,
    run_in_thread,
    submit,
    synthetic_spec,
    wait_for,
)


def study_row(database: Database, study_id: str) -> StudyInfo:
    with database.session() as session:
        return StudyRepository(session).get(study_id)


def test_trials_complete_within_the_budget(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=3))
    worker = make_worker(database)
    assert worker.run() == 3

    trials = load(database, info).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for trial in trials:
        # The dashboard's mirror: the validation metrics only (the rest is in our rows).
        assert set(trial.user_attrs) == {"val_metrics"}
        assert set(trial.user_attrs["val_metrics"]) == {"regression", "classification"}
        assert sorted(trial.intermediate_values) == [1, 2]
    with database.session() as session:
        rows = TrialRepository(session).rows(info.id)
    # Our rows are the record the REST and `best` read: the same trials, the same outcome.
    assert [(r.number, r.state.value, r.worker_id) for r in rows] == [
        (t.number, "complete", worker.id) for t in trials
    ]
    for row, trial in zip(rows, trials, strict=True):
        assert row.values == trial.values and row.params == trial.params
        assert row.val_metrics == trial.user_attrs["val_metrics"] and row.epochs_run == 2
        assert row.config is not None
        assert row.config["epochs"] == 2 and row.config["max_train_samples"] == 200
        assert set(row.test_metrics or {}) == {"regression", "classification"}
        assert row.weights_normalised is not None
        assert sum(row.weights_normalised.values()) == pytest.approx(2.0)
    study = study_row(database, info.id)
    assert study.status is StudyStatus.COMPLETED and study.trials_reserved == 3
    with database.session() as session:
        best = ArtifactRepository(session).get(info.id, "best")
        (me,) = WorkerRepository(session).list(live_within_s=60)
    assert best is not None and best.payload["number"] in {0, 1, 2}
    assert best.payload["config"]["strategy"] == "fixed"
    assert me.id == worker.id and me.status is WorkerStatus.STOPPED and me.trials_done == 3


def test_failing_trials_are_recorded_and_a_failing_study_is_given_up(
    database: Database,
) -> None:
    broken = submit(
        database, synthetic_spec("broken", n_trials=2, search_space={"lr": 1e12, "epochs": 1})
    )
    healthy = submit(database, synthetic_spec("healthy", n_trials=2))
    make_worker(database, max_consecutive_failures=3).run()

    failed = load(database, broken).trials
    # The asker stays one trial ahead: up to two more may be asked before the third failure
    # is told (the one queued, and the one queued when the runner took that).
    assert 3 <= len(failed) <= 5
    assert [t.state for t in failed] == [TrialState.FAIL] * len(failed)
    assert all("NaN or infinite" in t.user_attrs["fail_reason"] for t in failed[:3])
    row = study_row(database, broken.id)
    assert row.status is StudyStatus.FAILED and row.trials_reserved == 0
    assert row.message is not None and "3 trials failed in a row" in row.message
    assert "NaN or infinite" in row.message
    # the worker went on with the other study
    assert [t.state for t in load(database, healthy).trials] == [TrialState.COMPLETE] * 2
    assert study_row(database, healthy.id).status is StudyStatus.COMPLETED


def test_a_study_whose_configs_cannot_be_built_is_failed_not_left_idle(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Fault injection: every suggested config is rejected, so each batch the asker asks holds
    # nothing to train; it must ask again until the failure streak fails the study.
    def reject(*args: object, **kwargs: object) -> object:
        raise ValueError("lr out of range for this experiment")

    monkeypatch.setattr("mtlsearch.worker.asking.suggest_trial_config", reject)
    info = submit(database, synthetic_spec("unbuildable", n_trials=20))
    make_worker(database, batch=4, max_consecutive_failures=3).run()

    row = study_row(database, info.id)
    assert row.status is StudyStatus.FAILED and row.trials_reserved == 0
    assert row.message is not None and "lr out of range" in row.message
    trials = load(database, info).trials
    assert 3 <= len(trials) < 20
    assert {t.state for t in trials} == {TrialState.FAIL}


def test_studies_take_turns(database: Database) -> None:
    first = submit(database, synthetic_spec("first", n_trials=3))
    second = submit(database, synthetic_spec("second", n_trials=3))
    assert make_worker(database, max_trials=4).run() == 4
    assert len(load(database, first).trials) == 2
    assert len(load(database, second).trials) == 2
    assert study_row(database, first.id).status is StudyStatus.RUNNING


def running_trials(database: Database, info: StudyInfo) -> list[optuna.trial.FrozenTrial]:
    return load(database, info).get_trials(states=(TrialState.RUNNING,))


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["thread", "process"])
def test_cancelling_a_study_stops_its_running_trial(database: Database, trainer: str) -> None:
    info = submit(database, synthetic_spec(n_trials=2, search_space={"epochs": 400}))
    worker = make_worker(database, idle_exit_s=0.5, trainer=trainer)
    thread = run_in_thread(worker)
    # Training (an epoch reported): the verdict has to reach the runner, wherever it runs.
    wait_for(lambda: any(t.intermediate_values for t in running_trials(database, info)))
    with database.session() as session:
        StudyRepository(session).set_status(info.id, StudyStatus.CANCELLED)
    thread.join(timeout=60)
    assert not thread.is_alive()

    trials = load(database, info).trials
    (trial,) = [t for t in trials if t.intermediate_values]
    assert len(trial.intermediate_values) < 400
    # the next trial, queued meanwhile, is told FAIL without training
    assert len(trials) <= 2 and all(t.state is TrialState.FAIL for t in trials)
    assert all(t.user_attrs["fail_reason"] == CANCELLED_REASON for t in trials)
    row = study_row(database, info.id)
    assert row.status is StudyStatus.CANCELLED and row.trials_reserved == 0


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["thread", "process"])
def test_a_stopped_worker_fails_its_trial_and_gives_the_slot_back(
    database: Database, trainer: str
) -> None:
    info = submit(database, synthetic_spec(n_trials=2, search_space={"epochs": 400}))
    worker = make_worker(database, idle_exit_s=None, trainer=trainer)
    thread = run_in_thread(worker)
    # Training (an epoch reported), not only asked: the asker runs ahead of the runner.
    wait_for(lambda: any(t.intermediate_values for t in running_trials(database, info)))
    worker.request_stop()
    thread.join(timeout=60)
    assert not thread.is_alive()

    trials = load(database, info).trials
    assert len([t for t in trials if t.intermediate_values]) == 1 and len(trials) <= 2
    assert all(t.state is TrialState.FAIL for t in trials)
    assert all(t.user_attrs["fail_reason"] == STOPPED_REASON for t in trials)
    assert study_row(database, info.id).trials_reserved == 0
    with database.session() as session:
        assert WorkerRepository(session).get(worker.id, 60).status is WorkerStatus.STOPPED


@pytest.mark.slow
def test_a_stale_trial_is_failed_and_retried_once_with_its_params(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=2, sampler="random"))
    # A worker that reserved, asked, recorded its trial and died.
    dead_worker = register(database, "w-dead")
    asked(database, info, dead_worker)
    kill(database, dead_worker)

    make_worker(database, maintenance_s=0.1).run()

    trials = load(database, info).trials
    original = trials[0]
    assert original.state is TrialState.FAIL
    assert original.user_attrs["fail_reason"] == STALE_REASON
    retries = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == 0]
    assert len(retries) == 1
    (retry,) = retries
    assert retry.state is TrialState.COMPLETE
    assert retry.params == original.params
    assert retry.user_attrs.get("fail_reason") is None
    assert [t.state for t in trials].count(TrialState.COMPLETE) == 2
    row = study_row(database, info.id)
    assert row.status is StudyStatus.COMPLETED and row.trials_reserved == 2


@pytest.mark.slow
def test_a_queued_retry_of_a_study_whose_budget_is_taken_is_run(database: Database) -> None:
    # The retry holds the lost trial's slot, so the whole budget is taken: the study must
    # still be served until its retry has run.
    info = submit(database, synthetic_spec(n_trials=1, sampler="random"))
    dead_worker = register(database, "w-dead")
    asked(database, info, dead_worker)
    kill(database, dead_worker)

    make_worker(database, maintenance_s=0.1, idle_exit_s=3.0).run()

    lost, retry = load(database, info).trials
    assert (lost.state, retry.state) == (TrialState.FAIL, TrialState.COMPLETE)
    assert retry.params == lost.params and retry.user_attrs[RETRY_OF_ATTR] == 0
    row = study_row(database, info.id)
    assert row.status is StudyStatus.COMPLETED and row.trials_reserved == 1


def test_delta_m_baselines_are_trained_once_and_shared(database: Database) -> None:
    spec = synthetic_spec("dm1", n_trials=1, objective={"kind": "delta_m"})
    first = submit(database, spec)
    make_worker(database).run()
    baselines = load(database, first).user_attrs["baselines"]
    assert set(baselines) == {"regression", "classification"}
    with database.session() as session:
        key = baseline_key(StudySpec.model_validate(spec))
        cached = BaselineRepository(session).get("synthetic", key)
    assert cached is not None and cached.metrics == baselines

    second = submit(database, {**spec, "name": "dm2"})
    make_worker(database).run()
    assert load(database, second).user_attrs["baselines"] == baselines
    with database.session() as session:
        again = BaselineRepository(session).get("synthetic", cached.config_key)
    assert again is not None and again.created_at == cached.created_at  # not trained again
    (trial,) = load(database, second).trials
    assert trial.state is TrialState.COMPLETE


def test_batched_worker_trains_trials_together(database: Database) -> None:
    spec = synthetic_spec(
        n_trials=5,
        search_space={"strategies": [{"name": "fixed"}, {"name": "dwa"}]},
    )
    info = submit(database, spec)
    assert make_worker(database, batch=3).run() == 5
    trials = load(database, info).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert {t.params["strategy"] for t in trials} <= {"fixed", "dwa"}
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    assert study_row(database, info.id).status is StudyStatus.COMPLETED
    with database.session() as session:
        rows = TrialRepository(session).rows(info.id)
    # What determines each run, and the weights its strategy applied, are in its row.
    for row in rows:
        assert row.config is not None and row.seed == row.config["seed"]
        assert row.num_slots is not None and 1 <= row.num_slots <= 3
        assert row.weights_trajectory is not None and len(row.weights_trajectory) == 2
        assert row.weights_trajectory[-1] == row.strategy_weights
        for weights in row.weights_trajectory:
            assert sum(weights.values()) == pytest.approx(2.0, rel=1e-5)
    assert max(row.num_slots or 0 for row in rows) > 1  # some trained together


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="batch"):
        WorkerOptions(batch=0)
    with pytest.raises(ValueError, match="max_trials"):
        WorkerOptions(max_trials=0)
    with pytest.raises(ValueError, match="idle_sleep_s"):
        WorkerOptions(idle_sleep_s=(2.0, 1.0))


def test_unknown_experiment_is_passed_over(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=1))
    with database.session() as session:
        # A study of an experiment this worker does not have (a plugin elsewhere).
        other = StudyRepository(session).create(
            name="elsewhere",
            experiment="not_here",
            spec={**synthetic_spec("elsewhere"), "experiment": "not_here"},
            n_trials=1,
        )
    make_worker(database).run()
    assert study_row(database, info.id).status is StudyStatus.COMPLETED
    row = study_row(database, other.id)
    assert row.status is StudyStatus.RUNNING and row.trials_reserved == 0


def finished(trials: list[optuna.trial.FrozenTrial]) -> int:
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


@pytest.mark.slow
def test_a_stopped_worker_leaves_nothing_running_and_the_budget_exact(
    database: Database,
) -> None:
    info = submit(database, synthetic_spec(n_trials=8, search_space={"epochs": 10}))
    worker = make_worker(database, idle_exit_s=None)
    thread = run_in_thread(worker)
    wait_for(lambda: finished(load(database, info).trials) >= 1)
    worker.request_stop()
    thread.join(timeout=60)
    assert not thread.is_alive()

    trials = load(database, info).trials
    assert not [t for t in trials if t.state is TrialState.RUNNING]
    stopped = [t for t in trials if t.state is TrialState.FAIL]
    # at least the queued trial, which never trained
    assert stopped and all(t.user_attrs["fail_reason"] == STOPPED_REASON for t in stopped)
    assert any(not t.intermediate_values for t in stopped)
    assert study_row(database, info.id).trials_reserved == finished(trials)

    # Another worker ends the study with exactly its budget.
    make_worker(database).run()
    trials = load(database, info).trials
    assert finished(trials) == 8
    row = study_row(database, info.id)
    assert row.status is StudyStatus.COMPLETED and row.trials_reserved == 8


def test_the_tellers_tells_land_before_run_returns(database: Database) -> None:
    info = submit(database, synthetic_spec(n_trials=5))
    worker = make_worker(database, max_trials=3)
    assert worker.run() == 3

    trials = load(database, info).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all("val_metrics" in t.user_attrs for t in trials)
    assert study_row(database, info.id).trials_reserved == 3
    with database.session() as session:
        assert WorkerRepository(session).get(worker.id, 60).trials_done == 3


@pytest.mark.slow
def test_cancelling_the_study_of_a_queued_job_releases_its_slot(database: Database) -> None:
    first = submit(database, synthetic_spec("first", n_trials=1, search_space={"epochs": 400}))
    second = submit(database, synthetic_spec("second", n_trials=1, search_space={"epochs": 400}))
    worker = make_worker(database, idle_exit_s=0.5)
    thread = run_in_thread(worker)

    def one_trains_one_waits() -> bool:
        running = running_trials(database, first) + running_trials(database, second)
        return len(running) == 2 and any(t.intermediate_values for t in running)

    wait_for(one_trains_one_waits)
    (waiting,) = [
        info
        for info in (first, second)
        if not running_trials(database, info)[0].intermediate_values
    ]
    with database.session() as session:
        # The study in training too, so that the runner gets to the queued job.
        for info in sorted((first, second), key=lambda info: info is not waiting):
            StudyRepository(session).set_status(info.id, StudyStatus.CANCELLED)
    thread.join(timeout=60)
    assert not thread.is_alive()

    (trial,) = load(database, waiting).trials
    assert trial.state is TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == CANCELLED_REASON
    assert not trial.intermediate_values  # never trained
    for info in (first, second):
        row = study_row(database, info.id)
        assert row.status is StudyStatus.CANCELLED and row.trials_reserved == 0


def test_an_idle_worker_completes_a_study_whose_last_tell_was_not_followed_up(
    database: Database,
) -> None:
    # Two workers tell a study's last two trials at once: each one's completion check can see
    # the other's trial still running. The budget is used up, every trial is told, and nobody
    # marked the study completed: the next worker to go idle must.
    spec = synthetic_spec(n_trials=2)
    info = submit(database, spec)
    worker = make_worker(database, maintenance_s=3600.0)
    worker.register()
    worker.maintain(force=True)  # its last routine pass ran before the trials were told
    other = register(database, "w-other")
    study = load(database, info)
    for number in range(2):
        row_id = asked(database, info, other)
        with database.session() as session:
            assert TrialRepository(session).finish(row_id, state="complete", values=[0.5])
        study.tell(number, 0.5)
    assert study_row(database, info.id).status == StudyStatus.RUNNING

    assert worker.run() == 0  # finds no work: the idle pass must complete the study
    assert study_row(database, info.id).status == StudyStatus.COMPLETED
    with database.session() as session:
        best = ArtifactRepository(session).get(info.id, "best")
    assert best is not None


def test_slots_reserved_by_no_trial_are_given_back(database: Database) -> None:
    # A worker killed between reserving a slot and asking its trial leaves the reservation
    # behind; nobody else would ever give it back, and the study could never finish.
    info = submit(database, synthetic_spec(n_trials=2))
    dead = register(database, "w-dead")
    for _ in range(2):
        with database.session() as session:
            assert TrialRepository(session).reserve(info.id, dead) is not None
    kill(database, dead)
    worker = make_worker(database, idle_exit_s=8.0)
    assert worker.run() == 2
    assert study_row(database, info.id).status == StudyStatus.COMPLETED
    assert [t.state for t in load(database, info).trials] == [TrialState.COMPLETE] * 2
    assert study_row(database, info.id).trials_reserved == 2


class _PruneAll(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return True


@pytest.mark.parametrize(("strategy", "first_judged"), [("fixed", 1), ("gradnorm", 2), ("dwa", 3)])
def test_no_trial_is_pruned_during_its_strategys_warm_up(
    database: Database, monkeypatch: pytest.MonkeyPatch, strategy: str, first_judged: int
) -> None:
    monkeypatch.setattr("mtlsearch.worker.studies.build_pruner", lambda *_: _PruneAll())
    spec = synthetic_spec(
        n_trials=1, search_space={"epochs": 4, "strategies": [{"name": strategy}]}
    )
    info = submit(database, spec)
    make_worker(database).run()

    (trial,) = load(database, info).trials
    assert trial.state is TrialState.PRUNED
    assert sorted(trial.intermediate_values) == list(range(1, first_judged + 1))


def test_a_repeated_configuration_trains_at_a_new_seed(database: Database) -> None:
    # One parameter-free strategy, weights not searched: every trial has the same config.
    spec = synthetic_spec(n_trials=3, search_space={"strategies": [{"name": "uncertainty"}]})
    info = submit(database, spec)
    assert make_worker(database).run() == 3

    trials = load(database, info).trials
    with database.session() as session:
        rows = TrialRepository(session).rows(info.id)
    assert [r.config["seed"] for r in rows if r.config is not None] == [0, 1, 2]
    assert [t.user_attrs.get("seed") for t in trials] == [None, 1, 2]
    assert [t.user_attrs.get("repeat_of") for t in trials] == [None, 0, 0]

"""Test data: finished trials written into a study's Optuna storage and our rows (no training).

`add_finished_trials` samples each trial's parameters from the study's spec (random sampler,
in memory), records the user attributes a worker would (config, val/test metrics, normalised
weights; for a complete trial also its weights trajectory, seed and ``num_slots``), adds the
trials to the stored study in bulk with ``study.add_trials`` and writes our ``mtl_trials`` rows
through `TrialRepository` as a worker does (reserve, start, finish; a WAITING trial becomes a
lost trial whose retry is queued: a 'queued' row).
"""

from __future__ import annotations

import random
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtl_core.experiments import get_experiment
from mtlsearch.search.objective import higher_is_better
from mtlsearch.search.results import TrialOutcome
from mtlsearch.search.space import normalised_weights, suggest_trial_config
from mtlsearch.search.spec import StudySpec
from storage import Database, StudyRepository, TrialRepository
from storage.models import TrialState as RowState


def population_record(
    tasks: tuple[str, str] = ("regression", "classification"), source: int = 1
) -> dict[str, Any]:
    """A population member's record (`mtl_core.results.TrialResult.population`): two epochs,
    the second task's weight moved after the first, when it copied trial ``source``."""
    first, second = tasks
    return {
        "trajectory": [
            {"epoch": 0, "weights": {first: 1.0, second: 2.0}},
            {"epoch": 1, "weights": {first: 1.0, second: 0.5}},
        ],
        "lineage": [{"epoch": 1, "source": source}],
        "epochs": 2,
    }


#: The worker id rows are written under; never registered, so a running row counts as lost.
TEST_WORKER = "tests-utils-trials"


def make_trials(
    spec: StudySpec, n: int, *, seed: int = 0, states: tuple[TrialState, ...] = ()
) -> list[FrozenTrial]:
    """`n` finished trials for `spec`: COMPLETE unless `states` (cycled) says otherwise.

    Metrics are random in a plausible range; the objective values are derived from them
    (single objective: mean signed metric; multi: one value per task).
    """
    experiment = get_experiment(spec.experiment)
    directions = higher_is_better(experiment)
    rng = random.Random(seed)
    verbosity = optuna.logging.get_verbosity()
    # Optuna logs every told trial at INFO; thousands of lines would drown the test output.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    memory = optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=seed),
        directions=["maximize"] * (len(directions) if spec.objective.kind == "multi" else 1),
    )
    trials: list[FrozenTrial] = []
    for i in range(n):
        trial = memory.ask()
        config = suggest_trial_config(trial, spec, experiment)
        state = states[i % len(states)] if states else TrialState.COMPLETE
        metrics = {
            task: rng.uniform(0.5, 0.99) if higher else rng.uniform(0.1, 2.0)
            for task, higher in directions.items()
        }
        attrs: dict[str, Any] = {
            "config": config.model_dump(mode="json"),
            "weights_normalised": normalised_weights(config.weights, experiment.task_names),
        }
        values: list[float] | None = None
        if state is TrialState.COMPLETE:
            attrs["val_metrics"] = metrics
            attrs["test_metrics"] = {t: v * 0.98 for t, v in metrics.items()}
            # What a worker records of the run: its epochs' effective weights and its K.
            trajectory = [dict.fromkeys(metrics, 1.0), attrs["weights_normalised"]]
            attrs["weights_trajectory"] = trajectory
            attrs["strategy_weights"] = trajectory[-1]
            attrs["epochs_run"] = len(trajectory)
            attrs["seed"] = config.seed
            attrs["num_slots"] = 4
            if spec.objective.kind == "multi":
                values = [metrics[t] for t in directions]
            else:
                values = [sum(v if directions[t] else -v for t, v in metrics.items())]
        elif state is TrialState.FAIL:
            attrs["fail_reason"] = "loss became NaN at epoch 2"
        trials.append(
            optuna.trial.create_trial(
                state=state,
                values=values,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=attrs,
                intermediate_values={1: values[0]} if values else None,
            )
        )
        memory.tell(trial, state=TrialState.FAIL)
    optuna.logging.set_verbosity(verbosity)
    return trials


def add_finished_trials(
    database: Database,
    optuna_study_name: str,
    spec: StudySpec,
    n: int,
    *,
    seed: int = 0,
    states: tuple[TrialState, ...] = (),
) -> list[FrozenTrial]:
    """Add `n` finished trials (see `make_trials`) to the stored study and to our rows; return
    them as Optuna stored them (with their numbers)."""
    trials = make_trials(spec, n, seed=seed, states=states)
    storage = database.optuna_storage()
    study = optuna.load_study(study_name=optuna_study_name, storage=storage)
    study.add_trials(trials)
    stored = study.get_trials(deepcopy=False)[-n:]
    optuna_id = storage.get_study_id_from_name(optuna_study_name)
    with database.session() as session:
        study_id = _study_id(StudyRepository(session), optuna_study_name)
        repo = TrialRepository(session)
        # Lost trials last: the retry each queues would be the next reservation taken.
        for trial in sorted(stored, key=lambda t: t.state is TrialState.WAITING):
            _write_row(
                repo,
                study_id,
                trial,
                storage.get_trial_id_from_study_id_trial_number(optuna_id, trial.number),
            )
    return stored


def _study_id(repo: StudyRepository, optuna_study_name: str) -> str:
    infos, _ = repo.list(limit=1000)
    for info in infos:
        if info.optuna_study_name == optuna_study_name:
            return info.id
    raise LookupError(f"no study record for the Optuna study {optuna_study_name!r}")


def _write_row(repo: TrialRepository, study_id: str, trial: FrozenTrial, trial_id: int) -> None:
    row_id = repo.reserve(study_id, TEST_WORKER)
    if row_id is None:
        raise ValueError(f"study {study_id} has no budget left for trial {trial.number}")
    outcome = TrialOutcome.from_attrs(trial.user_attrs)
    repo.start(
        row_id,
        number=trial.number,
        optuna_trial_id=trial_id,
        params=dict(trial.params),
        config=outcome.config,
        weights_normalised=outcome.weights_normalised,
        seed=outcome.seed,
    )
    if trial.state is TrialState.WAITING:
        # A lost trial whose retry is queued: claimed as lost, its retry row queued. TEST_WORKER
        # has no worker row, so only its rows are lost, whatever the grace.
        (lost,) = repo.claim_lost(study_id, grace_s=3600.0)
        assert lost.row_id == row_id and lost.retry_row_id is not None
        return
    state = {
        TrialState.COMPLETE: RowState.COMPLETE,
        TrialState.PRUNED: RowState.PRUNED,
        TrialState.FAIL: RowState.FAIL,
    }[trial.state]
    repo.finish(
        row_id,
        state=state.value,
        values=list(trial.values) if trial.values else None,
        reason=outcome.fail_reason,
        val_metrics=outcome.val_metrics,
        test_metrics=outcome.test_metrics,
        strategy_weights=outcome.strategy_weights,
        weights_trajectory=outcome.weights_trajectory,
        epochs_run=outcome.epochs_run,
        num_slots=outcome.num_slots,
    )


__all__ = ["TEST_WORKER", "add_finished_trials", "make_trials"]

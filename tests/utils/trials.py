"""Test data: finished trials written straight into a study's Optuna storage (no training).

`add_finished_trials` samples each trial's parameters from the study's spec (random sampler,
in memory), records the user attributes a worker would (config, val/test metrics, normalised
weights) and adds the trials to the stored study in bulk with ``study.add_trials``.
"""

from __future__ import annotations

import random
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtl_core.experiments import get_experiment
from mtlsearch.search.objective import higher_is_better
from mtlsearch.search.space import normalised_weights, suggest_trial_config
from mtlsearch.search.spec import StudySpec


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
    storage: str | optuna.storages.BaseStorage,
    optuna_study_name: str,
    spec: StudySpec,
    n: int,
    *,
    seed: int = 0,
    states: tuple[TrialState, ...] = (),
) -> list[FrozenTrial]:
    """Add `n` finished trials (see `make_trials`) to the stored study; return them as stored
    (with their numbers)."""
    trials = make_trials(spec, n, seed=seed, states=states)
    study = optuna.load_study(study_name=optuna_study_name, storage=storage)
    study.add_trials(trials)
    return study.get_trials(deepcopy=False)[-n:]


__all__ = ["add_finished_trials", "make_trials"]

"""The best-result record: what ``GET /api/v1/studies/{id}/best`` and ``mtlsearch best`` return.

A single-objective study's record carries its best trial's fields at the top level, so a
production script can hand it straight to `mtl_core.build_loss_from_best`. A multi-objective
study's record lists the Pareto set under ``pareto`` (each entry has the same fields).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtl_core.metrics_delta import delta_m
from mtlsearch.search.objective import higher_is_better
from mtlsearch.search.space import normalised_weights, trial_config_from_params
from mtlsearch.search.spec import StudySpec

if TYPE_CHECKING:
    from mtl_core.experiments import Experiment


@dataclass
class TrialSummary:
    """What a user needs from a good trial: its weights, strategy, config and metrics."""

    number: int
    values: list[float]
    weights: dict[str, float]
    weights_normalised: dict[str, float]
    strategy: str
    strategy_params: dict[str, Any]
    config: dict[str, Any]
    val_metrics: dict[str, float]
    test_metrics: dict[str, float]
    delta_m: float | None = None


def summarise_trial(
    trial: FrozenTrial,
    spec: StudySpec,
    experiment: Experiment,
    baselines: dict[str, float] | None = None,
) -> TrialSummary:
    """Summarise a finished trial (its config from the ``config`` user attr, else its params).

    ``delta_m`` is the trial's Δm% on the validation metrics when ``baselines`` are known.
    """
    config = trial.user_attrs.get("config")
    if config is None:
        config = trial_config_from_params(trial.params, spec, experiment).model_dump(mode="json")
    weights = {t: float(config["weights"].get(t, 1.0)) for t in experiment.task_names}
    val_metrics = {k: float(v) for k, v in trial.user_attrs.get("val_metrics", {}).items()}
    dm = None
    if baselines and val_metrics and set(baselines) >= set(val_metrics):
        dm = delta_m(val_metrics, baselines, higher_is_better(experiment))
    return TrialSummary(
        number=trial.number,
        values=list(trial.values or []),
        weights=weights,
        weights_normalised=normalised_weights(weights, experiment.task_names),
        strategy=config["strategy"],
        strategy_params=dict(config.get("strategy_params") or {}),
        config=config,
        val_metrics=val_metrics,
        test_metrics=dict(trial.user_attrs.get("test_metrics", {})),
        delta_m=dm,
    )


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial of a single-objective study, or the Pareto set of a multi-objective one
    (empty while no trial has completed).

    The single-objective case is one SQL query on an RDB storage, whatever the study's size.
    """
    if len(study.directions) > 1:
        if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            return []
        return sorted(study.best_trials, key=lambda t: t.number)
    try:
        return [study.best_trial]
    except ValueError:  # no completed trial yet
        return []


def best_record(
    study: optuna.Study, spec: StudySpec, experiment: Experiment
) -> dict[str, Any] | None:
    """The JSON-ready best record of ``study``, or None while no trial has completed."""
    trials = best_trials(study)
    if not trials:
        return None
    baselines = study.user_attrs.get("baselines")
    summaries = [asdict(summarise_trial(t, spec, experiment, baselines)) for t in trials]
    record: dict[str, Any] = {
        "experiment": experiment.name,
        "tasks": list(experiment.task_names),
        "objective": spec.objective.kind,
        "directions": [d.name.lower() for d in study.directions],
        "baselines": baselines,
    }
    if len(study.directions) > 1:
        record["pareto"] = summaries
    else:
        record.update(summaries[0])
    return record

"""The best-result record: what ``GET /api/v1/studies/{id}/best`` and ``mtlsearch best`` return.

A single-objective study's record carries its best trial's fields at the top level, so a
production script can hand it straight to `mtl_core.build_loss_from_best`. A multi-objective
study's record lists the Pareto set under ``pareto`` (each entry has the same fields).

The record is built from Optuna's trials (local runs) or from our ``mtl_trials`` rows (the
service) through the same `summarise` and `_record`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtl_core.metrics_delta import delta_m
from mtlsearch.search.objective import directions, higher_is_better
from mtlsearch.search.results import TrialOutcome
from mtlsearch.search.space import normalised_weights, trial_config_from_params
from mtlsearch.search.spec import StudySpec

if TYPE_CHECKING:
    from mtl_core.experiments import Experiment
    from storage import TrialRow


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
    #: The strategy's own multipliers, mean over the last epoch (Σ = tasks; all 1 for fixed).
    strategy_weights: dict[str, float] | None = None
    #: The weight each task's loss had: ``weights × strategy_weights``, scaled to Σ = tasks.
    #: For a dynamic strategy it is not ``weights_normalised`` (MGDA's 1/1 may apply 1.3/0.7).
    effective_weights: dict[str, float] | None = None
    #: A population member's trajectory of fixed weights, lineage and planned epochs
    #: (`mtl_core.results.TrialResult.population`): `mtl_core.build_loss_from_best` replays it.
    population: dict[str, Any] | None = None


def summarise(
    number: int,
    values: Sequence[float] | None,
    params: Mapping[str, Any],
    outcome: TrialOutcome,
    spec: StudySpec,
    experiment: Experiment,
    baselines: Mapping[str, float] | None = None,
) -> TrialSummary:
    """Summarise a finished trial (its config from `outcome`, else rebuilt from its params).

    ``delta_m`` is the trial's Δm% on the validation metrics when ``baselines`` are known.
    """
    config = outcome.config
    if config is None:
        config = trial_config_from_params(dict(params), spec, experiment).model_dump(mode="json")
    weights = {t: float(config["weights"].get(t, 1.0)) for t in experiment.task_names}
    val_metrics = {k: float(v) for k, v in (outcome.val_metrics or {}).items()}
    dm = None
    if baselines and val_metrics and set(baselines) >= set(val_metrics):
        dm = delta_m(val_metrics, dict(baselines), higher_is_better(experiment))
    return TrialSummary(
        number=number,
        values=list(values or []),
        weights=weights,
        weights_normalised=normalised_weights(weights, experiment.task_names),
        strategy=config["strategy"],
        strategy_params=dict(config.get("strategy_params") or {}),
        config=config,
        val_metrics=val_metrics,
        test_metrics=dict(outcome.test_metrics or {}),
        delta_m=dm,
        strategy_weights=dict(outcome.strategy_weights) if outcome.strategy_weights else None,
        effective_weights=_effective(config, outcome, experiment),
        population=outcome.population,
    )


def _effective(
    config: Mapping[str, Any], outcome: TrialOutcome, experiment: Experiment
) -> dict[str, float] | None:
    from mtl_core.errors import ConfigError
    from mtl_core.production import effective_loss_weights

    if not outcome.strategy_weights:
        return None
    record = {
        "config": config,
        "strategy_weights": outcome.strategy_weights,
        "population": outcome.population,
        "epochs_run": outcome.epochs_run,
    }
    try:
        applied = effective_loss_weights(record)
        return normalised_weights(applied, experiment.task_names)
    except (ConfigError, ValueError):  # not every task's weight recorded, or all 0
        return None


def summarise_trial(
    trial: FrozenTrial,
    spec: StudySpec,
    experiment: Experiment,
    baselines: dict[str, float] | None = None,
) -> TrialSummary:
    """`summarise` of an Optuna trial (its outcome from its user attributes)."""
    outcome = TrialOutcome.from_attrs(trial.user_attrs)
    return summarise(trial.number, trial.values, trial.params, outcome, spec, experiment, baselines)


def pareto_indices(values: Sequence[Sequence[float]], dirs: Sequence[str]) -> list[int]:
    """Indices of the non-dominated vectors of `values` (ties all count, as Optuna's
    ``best_trials``); vectors with a NaN are never on the front.

    Sorted sweep: a point can only be dominated by one before it in lexicographic order, and
    it is enough to compare it with the front found so far (O(n · front)).
    """
    signs = [1.0 if d == "maximize" else -1.0 for d in dirs]
    signed = [tuple(s * v for s, v in zip(signs, vector, strict=True)) for vector in values]
    front: list[tuple[float, ...]] = []
    for point in sorted(set(signed), reverse=True):
        if any(v != v for v in point):  # NaN: an incomplete vector is no candidate
            continue
        dominated = any(
            all(f >= p for f, p in zip(other, point, strict=True)) and other != point
            for other in front
        )
        if not dominated:
            front.append(point)
    on_front = set(front)
    return [i for i, point in enumerate(signed) if point in on_front]


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


def _record(
    summaries: Sequence[TrialSummary],
    spec: StudySpec,
    experiment: Experiment,
    study_directions: Sequence[str],
    baselines: Mapping[str, float] | None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "experiment": experiment.name,
        "tasks": list(experiment.task_names),
        "objective": spec.objective.kind,
        "directions": list(study_directions),
        "baselines": baselines,
    }
    if len(study_directions) > 1:
        record["pareto"] = [asdict(s) for s in summaries]
    else:
        record.update(asdict(summaries[0]))
    return record


def best_record(
    study: optuna.Study, spec: StudySpec, experiment: Experiment
) -> dict[str, Any] | None:
    """The JSON-ready best record of ``study``, or None while no trial has completed."""
    trials = best_trials(study)
    if not trials:
        return None
    baselines = study.user_attrs.get("baselines")
    summaries = [summarise_trial(t, spec, experiment, baselines) for t in trials]
    study_directions = [d.name.lower() for d in study.directions]
    return _record(summaries, spec, experiment, study_directions, baselines)


def best_rows(rows: Sequence[TrialRow], study_directions: Sequence[str]) -> list[TrialRow]:
    """The best complete row (ties: lowest number), or the Pareto set by number."""
    complete = sorted(
        (r for r in rows if r.state == "complete" and r.values and r.number is not None),
        key=lambda r: r.number or 0,
    )
    if not complete:
        return []
    if len(study_directions) > 1:
        front = pareto_indices([r.values or [] for r in complete], study_directions)
        return [complete[i] for i in front]
    candidates = [r for r in complete if r.value is not None]
    if not candidates:
        return []
    sign = 1.0 if study_directions[0] == "maximize" else -1.0
    # max() keeps the first of equal keys: the lowest number.
    return [max(candidates, key=lambda r: sign * (r.value or 0.0))]


def best_record_from_rows(
    rows: Sequence[TrialRow],
    spec: StudySpec,
    experiment: Experiment,
    baselines: Mapping[str, float] | None,
) -> dict[str, Any] | None:
    """The best record from our ``mtl_trials`` rows, or None while none is complete."""
    study_directions = directions(spec, experiment)
    best = best_rows(rows, study_directions)
    if not best:
        return None
    summaries = [
        summarise(
            row.number or 0,
            row.values,
            row.params or {},
            TrialOutcome.from_row(row),
            spec,
            experiment,
            baselines,
        )
        for row in best
    ]
    return _record(summaries, spec, experiment, study_directions, baselines)


__all__ = [
    "TrialSummary",
    "best_record",
    "best_record_from_rows",
    "best_rows",
    "best_trials",
    "pareto_indices",
    "summarise",
    "summarise_trial",
]

"""The values a trial reports to Optuna, and their directions.

* ``delta_m``: one value, Δm% of the validation metrics against single-task baselines
  (`mtl_core.metrics_delta.delta_m`), maximised.
* ``weighted_mean``: one value, Σ_t c_t s_t M_t / Σ_t c_t with s_t = +1 for a metric where
  higher is better and -1 otherwise, maximised.
* ``multi``: one value per task (in the experiment's task order), each in its metric's own
  direction; the study keeps a Pareto front. Optuna does not prune multi-objective studies,
  so there is no intermediate value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from mtl_core.metrics_delta import delta_m
from mtlsearch.search.spec import StudySpec

if TYPE_CHECKING:
    from mtl_core.experiments import Experiment
    from mtl_core.results import EpochReport, TrialResult

Direction = Literal["maximize", "minimize"]


def higher_is_better(experiment: Experiment) -> dict[str, bool]:
    """Each task's metric direction, in task order."""
    from mtl_core.tasks import METRICS

    return {task.name: METRICS.get(task.metric).higher_is_better for task in experiment.tasks}


def directions(spec: StudySpec, experiment: Experiment) -> list[Direction]:
    """The Optuna study directions of ``spec``'s objective."""
    if spec.objective.kind == "multi":
        return [
            "maximize" if higher else "minimize" for higher in higher_is_better(experiment).values()
        ]
    return ["maximize"]


def weighted_mean(
    metrics: Mapping[str, float],
    coefficients: Mapping[str, float],
    higher_is_better: Mapping[str, bool],
) -> float:
    """Σ_t c_t s_t M_t / Σ_t c_t over the tasks of ``higher_is_better``; s_t = -1 for
    lower-is-better metrics, so larger is always better.

    Raises:
        ValueError: the coefficients sum to 0, or a task has no metric.
    """
    total = sum(float(coefficients.get(task, 1.0)) for task in higher_is_better)
    if total <= 0:
        raise ValueError(f"coefficients must not all be 0, got {dict(coefficients)}")
    value = 0.0
    for task, higher in higher_is_better.items():
        if task not in metrics:
            raise ValueError(
                f"metrics have no value for task {task!r}; they have {sorted(metrics)}"
            )
        sign = 1.0 if higher else -1.0
        value += float(coefficients.get(task, 1.0)) * sign * float(metrics[task])
    return value / total


def values_from_metrics(
    metrics: Mapping[str, float],
    spec: StudySpec,
    experiment: Experiment,
    baselines: Mapping[str, float] | None = None,
) -> list[float]:
    """The objective value(s) of a set of per-task metrics.

    Args:
        metrics: each task's main metric (validation split).
        spec: the study spec (its objective).
        experiment: gives the tasks and their metric directions.
        baselines: single-task baselines for ``delta_m``; default: the spec's own.

    Raises:
        ValueError: ``delta_m`` without baselines, or a metric missing.
    """
    directions_by_task = higher_is_better(experiment)
    objective = spec.objective
    if objective.kind == "multi":
        missing = [t for t in directions_by_task if t not in metrics]
        if missing:
            raise ValueError(f"metrics have no value for task(s) {', '.join(missing)}")
        return [float(metrics[task]) for task in directions_by_task]
    if objective.kind == "weighted_mean":
        return [weighted_mean(metrics, objective.coefficients or {}, directions_by_task)]
    base = baselines if baselines is not None else objective.baselines
    if base is None:
        raise ValueError(
            "objective.baselines: delta_m needs single-task baselines; none were given or trained"
        )
    return [delta_m(metrics, base, directions_by_task)]


def objective_values(
    result: TrialResult,
    spec: StudySpec,
    experiment: Experiment,
    baselines: Mapping[str, float] | None = None,
) -> list[float]:
    """The value(s) a finished trial reports to Optuna (from its validation metrics)."""
    return values_from_metrics(result.val_metrics, spec, experiment, baselines)


def intermediate_value(
    report: EpochReport,
    spec: StudySpec,
    experiment: Experiment,
    baselines: Mapping[str, float] | None = None,
) -> float | None:
    """The value to report after an epoch for pruning; None for multi-objective studies."""
    if spec.objective.kind == "multi":
        return None
    return values_from_metrics(report.val_metrics, spec, experiment, baselines)[0]

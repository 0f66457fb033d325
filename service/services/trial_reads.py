"""Pure helpers of the REST's trial reads: directions from a spec, Pareto sizes, public rows."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from mtl_core.experiments import get_experiment
from mtl_core.registry import UnknownNameError
from mtlsearch.search.best import pareto_indices
from mtlsearch.search.objective import directions
from mtlsearch.search.spec import StudySpec
from service.schemas.trials import TrialPublic
from storage import StudyInfo, TrialRow, TrialState

logger = logging.getLogger(__name__)


def study_directions(info: StudyInfo) -> list[str]:
    """The study's objective directions, from its stored spec (empty if they cannot be known:
    a multi-objective study whose experiment this server does not have)."""
    try:
        spec = StudySpec.model_validate(info.spec)
        return list(directions(spec, get_experiment(spec.experiment)))
    except (UnknownNameError, ValidationError) as exc:
        logger.debug("study %s: directions unknown (%s)", info.id, type(exc).__name__)
        # One objective is always maximised; a Pareto front's directions are the tasks'.
        objective = info.spec.get("objective")
        kind = objective.get("kind") if isinstance(objective, dict) else None
        return [] if kind == "multi" else ["maximize"]


def pareto_size(values: Sequence[Sequence[float]], dirs: Sequence[str]) -> int:
    """How many of `values` are non-dominated (ties count each time, as Optuna's best_trials)."""
    return len(pareto_indices(values, dirs))


def trial_public(row: TrialRow) -> TrialPublic:
    """The public view of one of our trial rows."""
    state: Any = "running" if row.state is TrialState.RESERVED else row.state.value
    return TrialPublic(
        number=row.number if row.number is not None else -1,
        state=state,
        values=row.values,
        params=row.params or {},
        config=row.config,
        val_metrics=row.val_metrics,
        test_metrics=row.test_metrics,
        weights_normalised=row.weights_normalised,
        strategy_weights=row.strategy_weights,
        weights_trajectory=row.weights_trajectory,
        epochs_run=row.epochs_run,
        seed=row.seed,
        num_slots=row.num_slots,
        population=row.population,
        fail_reason=row.reason,
        datetime_start=row.started_at,
        datetime_complete=row.finished_at,
        duration_s=row.duration_s,
    )


__all__ = ["pareto_size", "study_directions", "trial_public"]

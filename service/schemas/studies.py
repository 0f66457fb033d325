"""Schemas of the studies resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from mtlsearch.search.spec import StudySpec
from service.schemas.trials import TrialPopulation

#: The body of ``POST /api/v1/studies`` is the study spec itself (docs/study-spec.md). It has
#: no field that names a module or a path: an experiment is a registered name, nothing more.
StudyCreate = StudySpec

StudyStatusName = Literal["running", "completed", "cancelled", "failed"]


class TrialCounts(BaseModel):
    """How many of the study's search trials are in each state."""

    complete: int = Field(0, description="Finished with a value.")
    pruned: int = Field(0, description="Stopped early by the pruner.")
    fail: int = Field(
        0, description="Failed (error, NaN loss, lost worker, worker stopped); not cancelled."
    )
    cancelled: int = Field(
        0, description="Ended by a cancel of the study (some never trained); not failures."
    )
    running: int = Field(0, description="Being trained now.")
    waiting: int = Field(0, description="Queued (the retry of a trial lost with its worker).")


class ConfirmationCounts(BaseModel):
    """The study's confirmation runs (its best retrained at further seeds) by state."""

    queued: int = Field(0, description="Waiting for a worker.")
    running: int = Field(0, description="Being trained now.")
    complete: int = Field(0, description="Finished with a value.")
    fail: int = Field(0, description="Failed (their configuration's mean is over the others).")


class StudyPublic(BaseModel):
    """A study as the API shows it: its record, its trial counts and its progress."""

    id: str = Field(description="The study's id (12 hex characters), used in every URL.")
    name: str = Field(description="The unique name given in the spec.")
    experiment: str = Field(description="The registered experiment the study trains.")
    status: StudyStatusName = Field(description="running, completed, cancelled or failed.")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = Field(description="When the study left 'running'.")
    n_trials: int | None = Field(description="Trial budget (None: only a time budget).")
    time_budget_s: float | None = Field(description="Wall-clock budget in seconds.")
    trials: TrialCounts = Field(description="Search trials by state.")
    phase: Literal["searching", "confirming"] | None = Field(
        description="A running study: searching (trials of the budget), or confirming (its "
        "best retrained at further seeds, docs/walkthrough.md); None once it stopped."
    )
    confirmation: ConfirmationCounts | None = Field(
        description="The confirmation runs by state, once the search has queued them."
    )
    directions: list[Literal["maximize", "minimize"]] = Field(
        description="One direction per objective value."
    )
    best_value: float | None = Field(
        description="Single objective: the best value so far (None before the first "
        "completed trial, and for several objectives)."
    )
    pareto_size: int | None = Field(
        description="Several objectives: the size of the Pareto front so far (None otherwise)."
    )
    progress: float = Field(
        ge=0,
        le=1,
        description="Fraction done: finished trials / n_trials, or elapsed / time_budget_s "
        "(the larger when both are set); 1 once completed.",
    )
    message: str | None = Field(
        description="Why the study stopped, when it did. On GET of a running study whose "
        'experiment no live worker has: "no live worker has experiment \'X\'" (with ": no '
        'worker is live" when none is); computed when read, never stored.'
    )
    optuna_study_name: str = Field(description="Name of the Optuna study in the database.")
    optuna_study_id: int | None = Field(description="Id of the Optuna study in the database.")
    dashboard_url: str | None = Field(
        description="Path of the study in optuna-dashboard on this server."
    )
    spec: dict[str, Any] = Field(description="The validated study spec (all defaults filled).")


class StudiesPublic(BaseModel):
    """One page of studies, newest first."""

    data: list[StudyPublic]
    count: int = Field(description="Number of studies matching the filter (all pages).")


class BestPublic(BaseModel):
    """The study's answer: exactly the record of `mtlsearch.search.answer.best_answer`.

    Single objective: the best configuration's fields at the top level (number, values,
    weights, weights_normalised, strategy, strategy_params, strategy_weights, config,
    val_metrics, test_metrics, delta_m, population) beside experiment, tasks, objective,
    directions and baselines. Once the study's confirmation has run, the best is the
    configuration with the highest mean over the confirmation seeds, its values and metrics
    are those means, and ``confirmation`` holds mean ± sd per configuration and for uniform
    weights, and the ``verdict`` in words. Several objectives: the same fields for each
    Pareto-optimal configuration under ``pareto``. Ready for `mtl_core.build_loss_from_best`.
    """

    model_config = {"extra": "allow"}

    experiment: str
    tasks: list[str]
    objective: str = Field(description="delta_m, weighted_mean or multi.")
    directions: list[str]
    baselines: dict[str, float] | None = None
    number: int | None = Field(None, description="Single objective: the best trial's number.")
    values: list[float] | None = None
    weights: dict[str, float] | None = Field(None, description="Raw loss weights per task.")
    weights_normalised: dict[str, float] | None = Field(
        None, description="Weights scaled to sum to the number of tasks."
    )
    strategy: str | None = None
    strategy_params: dict[str, Any] | None = None
    config: dict[str, Any] | None = Field(None, description="The full resolved trial config.")
    val_metrics: dict[str, float] | None = None
    test_metrics: dict[str, float] | None = None
    delta_m: float | None = None
    strategy_weights: dict[str, float] | None = Field(
        None,
        description="The strategy's own multipliers, mean over the last epoch (Σ = tasks; "
        "all 1 for fixed).",
    )
    effective_weights: dict[str, float] | None = Field(
        None,
        description="The weight each task's loss had: weights × strategy_weights, scaled to "
        "Σ = tasks. For a dynamic strategy it is not weights_normalised; "
        "build_loss_from_best(best, effective_weights=True) trains with it fixed.",
    )
    population: TrialPopulation | None = Field(
        None,
        description="The best trial's weight trajectory and lineage when it trained in a "
        "population (null otherwise): build_loss_from_best(best) follows the trajectory.",
    )
    pareto: list[dict[str, Any]] | None = Field(
        None, description="Several objectives: one record per Pareto-optimal trial."
    )
    confirmation: dict[str, Any] | None = Field(
        None,
        description="The confirmation at further seeds (null before it ran, or when the spec "
        "turned it off): seeds, runs, compute_s, per configuration and for uniform weights "
        "the objective and each task's metrics as {mean, sd, n, values}, and verdict: "
        "{judgement: better | within_noise | worse | unknown, difference, standard_error, "
        "unit, text}.",
    )


__all__ = [
    "BestPublic",
    "ConfirmationCounts",
    "StudiesPublic",
    "StudyCreate",
    "StudyPublic",
    "StudyStatusName",
    "TrialCounts",
]

"""Schemas of a study's trials."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

TrialStateName = Literal["running", "waiting", "complete", "pruned", "fail"]


class WeightsStep(BaseModel):
    """One step of a population member's trajectory: the fixed weights from an epoch on."""

    epoch: int = Field(
        ge=0,
        description="Epochs completed before these weights apply (0: from the start).",
    )
    weights: dict[str, float | None] = Field(
        description="The raw fixed loss weight of each task, as in config.weights (not "
        "normalised; null: not finite)."
    )


class LineageStep(BaseModel):
    """One exploit of a population member: whose training state it took, and when."""

    epoch: int = Field(ge=0, description="Epochs completed when the member took the state.")
    source: int | None = Field(
        description="The number of the trial whose model, optimizer and strategy state it "
        "took (GET /studies/{id}/trials/{source})."
    )


class TrialPopulation(BaseModel):
    """What population-based training did to one member: its weights and whose state it took.

    Under PBT the trials of one batched pass train as a population: every few epochs the worst
    members copy a better member's whole training state and perturb or resample their fixed
    loss weights, so a member's config.weights are only its last ones.
    `mtl_core.build_loss_from_best` replays the trajectory.
    """

    trajectory: list[WeightsStep] = Field(
        description="The fixed weights in force over training, by epoch (sorted; the first at "
        "epoch 0, then one per change)."
    )
    lineage: list[LineageStep] = Field(
        description="Each time the member took another trial's training state, in order "
        "(empty: it never did)."
    )
    epochs: int | None = Field(
        description="The trial's planned epochs (what trajectory epochs are out of)."
    )


class TrialPublic(BaseModel):
    """One Optuna trial of a study, with what the worker recorded about it."""

    number: int = Field(description="The trial's number in its study (0-based).")
    state: TrialStateName
    values: list[float] | None = Field(description="Objective values (complete trials).")
    params: dict[str, Any] = Field(description="The sampled parameters (Optuna names).")
    config: dict[str, Any] | None = Field(description="The full resolved trial config.")
    val_metrics: dict[str, float | None] | None = Field(
        description="Validation metric per task, after the last epoch that ran (null: not finite)."
    )
    test_metrics: dict[str, float | None] | None = Field(
        description="Test metric per task (null: not finite, e.g. a diverged trial's)."
    )
    weights_normalised: dict[str, float] | None = Field(
        description="The searched loss weights, scaled to sum to the number of tasks."
    )
    strategy_weights: dict[str, float | None] | None = Field(
        description="The strategy's own weights λ_t, applied on top of config.weights: their "
        "mean over the last epoch, summing to the number of tasks (1 for every task under "
        "`fixed`). Task t's loss weighed config.weights[t] × λ_t, its effective weight "
        "(`mtl_core.production.effective_loss_weights`)."
    )
    weights_trajectory: list[dict[str, float | None]] | None = Field(
        description="strategy_weights for each epoch that ran, first to last (null for trials "
        "recorded before it was kept)."
    )
    epochs_run: int | None = Field(description="Epochs the trial trained.")
    seed: int | None = Field(
        description="The training seed (also in config.seed; config.data_seed orders the data)."
    )
    num_slots: int | None = Field(
        description="K of the batched pass the trial trained in: with config it determines the "
        "run (`mtlsearch train --from-trial`). Null for trials recorded before it was kept."
    )
    population: TrialPopulation | None = Field(
        description="For a trial trained as a member of a population (population-based "
        "training of the fixed weights): its weight trajectory and lineage; null otherwise.",
    )
    fail_reason: str | None = Field(description="Why the trial failed or was pruned.")
    datetime_start: datetime | None = Field(description="UTC.")
    datetime_complete: datetime | None = Field(description="UTC.")
    duration_s: float | None = Field(description="Seconds from start to completion.")


class TrialsPublic(BaseModel):
    """One page of trials, by number."""

    data: list[TrialPublic]
    count: int = Field(description="Number of trials matching the filter (all pages).")


__all__ = [
    "LineageStep",
    "TrialPopulation",
    "TrialPublic",
    "TrialStateName",
    "TrialsPublic",
    "WeightsStep",
]

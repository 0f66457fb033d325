"""Schemas of a study's trials."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

TrialStateName = Literal["running", "waiting", "complete", "pruned", "fail"]


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
    fail_reason: str | None = Field(description="Why the trial failed or was pruned.")
    datetime_start: datetime | None = Field(description="UTC.")
    datetime_complete: datetime | None = Field(description="UTC.")
    duration_s: float | None = Field(description="Seconds from start to completion.")


class TrialsPublic(BaseModel):
    """One page of trials, by number."""

    data: list[TrialPublic]
    count: int = Field(description="Number of trials matching the filter (all pages).")


__all__ = ["TrialPublic", "TrialStateName", "TrialsPublic"]

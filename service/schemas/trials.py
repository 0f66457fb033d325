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
    val_metrics: dict[str, float] | None = Field(description="Validation metric per task.")
    test_metrics: dict[str, float] | None = Field(description="Test metric per task.")
    weights_normalised: dict[str, float] | None = Field(
        description="Loss weights scaled to sum to the number of tasks."
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

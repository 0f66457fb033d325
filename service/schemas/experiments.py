"""Schemas of the experiments resource."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TaskPublic(BaseModel):
    """One task of an experiment."""

    name: str
    loss: str = Field(description="Registered loss, e.g. 'cross_entropy'.")
    metric: str = Field(description="Main metric, e.g. 'accuracy'.")
    higher_is_better: bool = Field(description="Direction of the main metric.")
    output_dim: int | None = None
    extra_metrics: list[str] = Field(default_factory=list)


class ExperimentPublic(BaseModel):
    """An experiment this server accepts in a study spec (by name only)."""

    name: str
    description: str
    tasks: list[TaskPublic]
    defaults: dict[str, Any] = Field(description="Training defaults (epochs, lr, ...).")


class ExperimentsPublic(BaseModel):
    """Every registered experiment, by name."""

    data: list[ExperimentPublic]
    count: int


__all__ = ["ExperimentPublic", "ExperimentsPublic", "TaskPublic"]

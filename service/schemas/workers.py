"""Schemas of the workers resource."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class WorkerPublic(BaseModel):
    """A worker process and what it last reported."""

    id: str
    hostname: str
    pid: int
    device: str = Field(description="Where it trains, e.g. 'cuda:0' or 'cpu'.")
    experiments: list[str] = Field(
        description="The experiments it can run: its registry when it registered, plugins "
        "included, sorted, less those it cannot serve. Empty for a worker that registered "
        "before workers reported them."
    )
    unavailable: dict[str, str] = Field(
        default_factory=dict,
        description="Experiments it has but cannot serve, each with why (a data set missing "
        "or corrupt on its machine, found at its start or by a trial): it takes none of "
        "their studies.",
    )
    batch_size: int | Literal["auto"] | None = Field(
        description="Its --batch: trials trained together (1: one by one), or 'auto' (as many "
        "as fit the device); null if it did not say."
    )
    status: Literal["idle", "busy", "stopped"]
    live: bool = Field(description="Not stopped and heart-beat within Settings.stale_after_s.")
    started_at: datetime
    last_heartbeat: datetime
    current_study_id: str | None
    current_trial_number: int | None
    trials_done: int


class WorkersPublic(BaseModel):
    """Every worker that ever registered, oldest first."""

    data: list[WorkerPublic]
    count: int
    live: int = Field(description="How many are live.")


__all__ = ["WorkerPublic", "WorkersPublic"]

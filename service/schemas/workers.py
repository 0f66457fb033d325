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
    device: str = Field(description="e.g. 'cuda:0' or 'cpu'.")
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

"""The workers resource (read-only: workers register and heart-beat themselves)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.schemas.workers import WorkerPublic, WorkersPublic
from storage import WorkerRepository


def list_workers(session: Session, stale_after_s: float) -> WorkersPublic:
    """Every worker; live if it heart-beat within `stale_after_s` seconds and is not stopped."""
    infos = WorkerRepository(session).list(live_within_s=stale_after_s)
    # WorkerInfo and WorkerPublic carry the same fields (the status is a str enum).
    data = [WorkerPublic.model_validate(w, from_attributes=True) for w in infos]
    return WorkersPublic(data=data, count=len(data), live=sum(w.live for w in data))


__all__ = ["list_workers"]

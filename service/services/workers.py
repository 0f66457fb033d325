"""The workers resource (read-only: workers register and heart-beat themselves)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.schemas.workers import WorkerPublic, WorkersPublic
from storage import WorkerRepository


def list_workers(session: Session, stale_after_s: float) -> WorkersPublic:
    """Every worker; live if it heart-beat within `stale_after_s` seconds and is not stopped."""
    infos = WorkerRepository(session).list(live_within_s=stale_after_s)
    data = [
        WorkerPublic(
            id=w.id,
            hostname=w.hostname,
            pid=w.pid,
            device=w.device,
            status=w.status.value,
            live=w.live,
            started_at=w.started_at,
            last_heartbeat=w.last_heartbeat,
            current_study_id=w.current_study_id,
            current_trial_number=w.current_trial_number,
            trials_done=w.trials_done,
        )
        for w in infos
    ]
    return WorkersPublic(data=data, count=len(data), live=sum(w.live for w in data))


__all__ = ["list_workers"]

"""The workers resource (read-only: workers register and heart-beat themselves)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from service.schemas.workers import WorkerPublic, WorkersPublic
from storage import WorkerRepository


def live_experiments(session: Session, stale_after_s: float) -> frozenset[str] | None:
    """What the live workers can run between them; None when no worker is live at all.

    Live is the rule `list_workers` shows: not stopped, heart-beat within `stale_after_s`.
    """
    live = [w for w in WorkerRepository(session).list(live_within_s=stale_after_s) if w.live]
    if not live:
        return None
    return frozenset(name for w in live for name in w.experiments)


def unserved_message(experiment: str, served: frozenset[str] | None) -> str | None:
    """The status message of a running study that no live worker can serve; else None."""
    if served is None:
        return f"no live worker has experiment {experiment!r}: no worker is live"
    if experiment not in served:
        return f"no live worker has experiment {experiment!r}"
    return None


def list_workers(session: Session, stale_after_s: float) -> WorkersPublic:
    """Every worker; live if it heart-beat within `stale_after_s` seconds and is not stopped."""
    infos = WorkerRepository(session).list(live_within_s=stale_after_s)
    # WorkerInfo and WorkerPublic carry the same fields (the status is a str enum).
    data = [WorkerPublic.model_validate(w, from_attributes=True) for w in infos]
    return WorkersPublic(data=data, count=len(data), live=sum(w.live for w in data))


__all__ = ["list_workers", "live_experiments", "unserved_message"]

"""Route of ``/api/v1/workers``."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import SessionDep, SettingsDep
from service.schemas.common import ERROR_RESPONSES
from service.schemas.workers import WorkersPublic
from service.services.workers import list_workers

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=WorkersPublic, summary="List workers", responses=ERROR_RESPONSES)
def get_workers(session: SessionDep, settings: SettingsDep) -> WorkersPublic:
    """Every registered worker: host, pid, device, status, whether it is live, its current
    study and trial, and how many trials it finished."""
    return list_workers(session, settings.stale_after_s)


__all__ = ["router"]

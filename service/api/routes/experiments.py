"""Route of ``/api/v1/experiments``."""

from __future__ import annotations

from fastapi import APIRouter

from service.schemas.experiments import ExperimentsPublic
from service.services.experiments import list_experiment_infos

router = APIRouter(prefix="/experiments", tags=["experiments"])


@router.get("", response_model=ExperimentsPublic, summary="List experiments")
def list_experiments() -> ExperimentsPublic:
    """The experiments a study may name (built-ins, entry points, the server's allowed
    modules), with their tasks (loss, metric, direction) and training defaults."""
    return list_experiment_infos()


__all__ = ["router"]

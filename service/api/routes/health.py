"""Route of ``/healthz``."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.deps import DatabaseDep
from service.schemas.common import ERROR_RESPONSES, HealthPublic
from service.services.health import check_health

router = APIRouter(tags=["health"])


@router.get(
    "/healthz",
    response_model=HealthPublic,
    summary="Health",
    responses={503: ERROR_RESPONSES[503]},
)
def healthz(database: DatabaseDep) -> HealthPublic:
    """200 when the database answers; 503 otherwise."""
    return check_health(database)


__all__ = ["router"]

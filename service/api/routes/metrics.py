"""Route of ``/metrics`` (Prometheus text format)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.schemas.common import ERROR_RESPONSES
from service.services.metrics import render

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    response_model=None,
    summary="Prometheus metrics",
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."},
        503: ERROR_RESPONSES[503],
    },
)
def metrics(request: Request) -> Response:
    """Trials per study and state, trial durations, live workers and queue depth, read from
    the database at scrape time."""
    return Response(render(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


__all__ = ["router"]

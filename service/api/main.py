"""The ``/api/v1`` router: every resource's router under one prefix."""

from __future__ import annotations

from fastapi import APIRouter

from service.api.routes import experiments, studies, workers

API_PREFIX = "/api/v1"

api_router = APIRouter(prefix=API_PREFIX)
api_router.include_router(studies.router)
api_router.include_router(experiments.router)
api_router.include_router(workers.router)

__all__ = ["API_PREFIX", "api_router"]

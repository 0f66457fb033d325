"""The ``/api/v1`` router: every resource's router under one prefix."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from service.api.routes import experiments, studies, workers

API_PREFIX = "/api/v1"

api_router = APIRouter(prefix=API_PREFIX)
api_router.include_router(studies.router)
api_router.include_router(experiments.router)
api_router.include_router(workers.router)


# Last: an unknown path under the API prefix is our JSON 404, not the dashboard's HTML page
# (the dashboard is the fallback app for every path our routes do not match).
@api_router.api_route(
    "/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False
)
async def unknown_api_path(path: str, request: Request) -> None:
    raise HTTPException(404, f"no route {request.method} {API_PREFIX}/{path}; see /docs")


__all__ = ["API_PREFIX", "api_router"]

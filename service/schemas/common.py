"""Schemas shared by every resource: error bodies and paging."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorPublic(BaseModel):
    """Every error answer: one line naming the problem."""

    detail: str = Field(description="One line naming the problem (the field, the id, ...).")


class ValidationErrorPublic(BaseModel):
    """A 422 from request validation: FastAPI's error list plus one readable line."""

    detail: list[dict[str, Any]] = Field(
        description="FastAPI's validation errors (type, loc, msg, input, ctx)."
    )
    message: str = Field(description="The first error as one line: 'field.path: what is wrong'.")


class HealthPublic(BaseModel):
    """The answer of ``GET /healthz``."""

    status: str = Field(description="'ok' when the database answered.")
    database: str = Field(description="Backend of the database: 'sqlite' or 'postgresql'.")
    version: str = Field(description="mtlsearch version of the server.")


#: OpenAPI descriptions of the error answers the routes share.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorPublic, "description": "No such study (the id is named)."},
    503: {"model": ErrorPublic, "description": "The database is unreachable or failed."},
}
MUTATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "model": ErrorPublic,
        "description": "Missing or wrong bearer token (only when the server has a token).",
    },
    **ERROR_RESPONSES,
}

__all__ = [
    "ERROR_RESPONSES",
    "MUTATION_RESPONSES",
    "ErrorPublic",
    "HealthPublic",
    "ValidationErrorPublic",
]

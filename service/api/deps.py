"""Dependencies shared by the routes, as `Annotated` aliases, and the bearer-token guard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from mtlsearch.settings import Settings
from service.errors import AuthenticationError
from service.middleware import bearer_error
from service.services.orphans import OrphanCleaner
from storage import Database


def get_settings(request: Request) -> Settings:
    """The `Settings` the app was created with."""
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    """The app's `Database` (one engine for our tables and Optuna's)."""
    database: Database = request.app.state.database
    return database


def get_orphans(request: Request) -> OrphanCleaner:
    """The app's `OrphanCleaner` (Optuna studies of failed creates)."""
    orphans: OrphanCleaner = request.app.state.orphans
    return orphans


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
OrphansDep = Annotated[OrphanCleaner, Depends(get_orphans)]


def get_session(database: DatabaseDep) -> Iterator[Session]:
    """A session for the request: committed when the route returns, rolled back on error."""
    with database.session() as session:
        yield session


# scope="function": the session commits before the response is sent, not after.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(
    auto_error=False,
    description="Needed on every call that is not GET, HEAD or OPTIONS when the server has "
    "MTLSEARCH_API_TOKEN set.",
)


def require_token(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse a mutating call without ``Authorization: Bearer <token>`` when a token is set.

    `service.middleware.TokenGuard` refuses such a call before its body is read; this
    dependency declares the bearer scheme in OpenAPI and checks again (same `bearer_error`).

    Raises:
        AuthenticationError: the header is missing, not a bearer token, or the wrong token.
    """
    expected = settings.api_token
    if not expected:
        return
    error = bearer_error(credentials.credentials if credentials else None, expected)
    if error is not None:
        raise AuthenticationError(error)


TokenDep = Depends(require_token)

__all__ = [
    "DatabaseDep",
    "OrphansDep",
    "SessionDep",
    "SettingsDep",
    "TokenDep",
    "get_database",
    "get_orphans",
    "get_session",
    "get_settings",
    "require_token",
]

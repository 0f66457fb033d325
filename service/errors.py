"""Domain errors of the service and their one translation into HTTP answers.

Routes never build error responses: services and repositories raise the errors below (or
storage's, or the spec's `SpecError`), and `domain_error_handler` turns each into a status
and a ``{"detail": "<one line>"}`` body. A database failure is 503 however it arrives: as
storage's `StorageError` (``DatabaseUnavailableError`` while the database cannot be reached),
or raw from SQLAlchemy or Optuna's storage, then described the same way (database named,
password hidden, no SQL, no traceback). FastAPI's own request validation stays 422; its
handler keeps FastAPI's error list (without each error's ``input``, which would echo the whole
body) and adds one readable ``message`` line.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import optuna
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from mtlsearch.search.spec import SpecError
from storage.errors import NotFoundError, StorageError, StudyExistsError, describe_error

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of the errors the service layer raises on purpose; the message is one line."""


class ConflictError(ServiceError):
    """The request conflicts with the resource's state (e.g. cancelling a finished study)."""


class AuthenticationError(ServiceError):
    """A mutating call without the right bearer token."""


#: Database failures that reached the handler unwrapped (e.g. from a call into Optuna's storage
#: that no service wrapped): described as storage's own (`describe_error`) and answered 503.
RAW_DATABASE_ERRORS: tuple[type[Exception], ...] = (
    SQLAlchemyError,
    optuna.exceptions.StorageInternalError,
)

#: Checked in order: the first class that matches decides (NotFoundError is a StorageError).
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (AuthenticationError, 401),
    (NotFoundError, 404),
    (StudyExistsError, 409),
    (ConflictError, 409),
    (SpecError, 422),
    (StorageError, 503),
    *((cls, 503) for cls in RAW_DATABASE_ERRORS),
)
DOMAIN_ERRORS: tuple[type[Exception], ...] = tuple(cls for cls, _ in _STATUS)


def status_for(exc: Exception) -> int:
    """The HTTP status of a domain error (500 for anything else)."""
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def _one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "error"


def _described(request: Request, exc: Exception) -> Exception:
    """A raw database error as storage would have described it (database named, password
    hidden, the driver's first line); any other error as it is."""
    if not isinstance(exc, RAW_DATABASE_ERRORS):
        return exc
    database = getattr(request.app.state, "database", None)
    shown = database.display_url if database is not None else "the database"
    return describe_error(shown, exc)


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """The one handler: domain error → status and ``{"detail": ...}``."""
    status = status_for(exc)
    detail = _one_line(str(_described(request, exc)))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if status >= 500:
        logger.warning("%s %s → %d: %s", request.method, request.url.path, status, detail)
    else:
        logger.info("%s %s → %d: %s", request.method, request.url.path, status, detail)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def describe_errors(errors: Sequence[Any]) -> str:
    """One line for FastAPI's validation errors: the first error's field path and message."""
    if not errors:
        return "invalid request"
    err = errors[0]
    if err.get("type") == "json_invalid":
        reason = (err.get("ctx") or {}).get("error") or err.get("msg", "")
        loc = err.get("loc") or ()
        position = f" at position {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
        return f"the request body is not valid JSON: {reason}{position}"
    loc = [str(part) for part in err.get("loc") or ()]
    if loc and loc[0] == "body":
        loc = loc[1:]
    path = ".".join(loc)
    message = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if err.get("type") == "missing" and not path:
        return "the request body is missing (send the JSON document)"
    # Spec validators raise at the model's root with the path leading their message already.
    return f"{path}: {message}" if path else message


#: Longest ``message`` and ``msg`` a 422 answer carries (a validator may quote its input).
MAX_MESSAGE_CHARS = 500


def _json_safe(value: Any) -> Any:
    """`value` as plain JSON: non-finite floats and other objects become strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return _truncate(str(value))


def _truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def public_errors(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """FastAPI's errors without ``input`` (it echoes the whole body, NaN included) and with
    JSON-safe ``ctx``."""
    public = []
    for err in errors:
        item: dict[str, Any] = {
            "type": str(err.get("type", "")),
            "loc": _json_safe(list(err.get("loc") or ())),
            "msg": _truncate(str(err.get("msg", ""))),
        }
        if err.get("ctx"):
            item["ctx"] = _json_safe(err["ctx"])
        public.append(item)
    return public


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 with its error list (less each ``input``) and a readable ``message``."""
    try:
        errors = list(exc.errors()) if isinstance(exc, RequestValidationError) else []
        message = _truncate(describe_errors(errors))
        body = {"detail": public_errors(errors), "message": message}
    except Exception:  # never a 500 from the error handler itself
        logger.exception("could not describe a validation error")
        message = "invalid request"
        body = {"detail": [], "message": message}
    logger.info("%s %s → 422: %s", request.method, request.url.path, message)
    return JSONResponse(body, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Register the domain handler (for every domain error class) and the validation one."""
    for cls in DOMAIN_ERRORS:
        app.add_exception_handler(cls, domain_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)


__all__ = [
    "DOMAIN_ERRORS",
    "RAW_DATABASE_ERRORS",
    "AuthenticationError",
    "ConflictError",
    "ServiceError",
    "describe_errors",
    "domain_error_handler",
    "install_error_handlers",
    "public_errors",
    "status_for",
    "validation_error_handler",
]

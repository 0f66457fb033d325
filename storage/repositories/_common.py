"""Helpers shared by the repositories."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Executable
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from storage.models import Base

E = TypeVar("E", bound=StrEnum)


def require_json(field: str, value: Any) -> None:
    """Refuse a value that cannot be stored in a JSON column, naming the field."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field} must be JSON-serialisable (finite numbers), {exc}") from None


def parse_enum(enum: type[E], value: E | str, what: str) -> E:
    """`value` as a member of `enum`; a `ValueError` naming `what` and the valid values else."""
    try:
        return enum(value)
    except ValueError:
        valid = ", ".join(member.value for member in enum)
        raise ValueError(f"{what} must be one of {valid}, got {value!r}") from None


def rowcount(session: Session, statement: Executable) -> int:
    """Execute an UPDATE or DELETE and return how many rows it changed."""
    result = cast(CursorResult[Any], session.execute(statement))
    return result.rowcount


def upsert(
    session: Session,
    model: type[Base],
    values: Mapping[str, Any],
    keys: Sequence[str],
) -> None:
    """INSERT a row, or UPDATE its non-key columns if one with the same `keys` exists.

    One statement (``ON CONFLICT ... DO UPDATE``) on both backends, so two writers racing on
    the same key never get an integrity error.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: statement.excluded[name] for name in values if name not in keys},
    )
    session.execute(statement)

"""Artifacts: JSON results attached to a study, one per (study, kind), e.g. the best weights."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage.errors import NotFoundError
from storage.models import ArtifactRecord, StudyRecord, utcnow
from storage.repositories._common import require_json, rowcount, upsert


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """One stored artifact."""

    study_id: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime


def _check_kind(kind: str) -> None:
    if not kind or len(kind) > 64:
        raise ValueError(f"artifact kind must be 1..64 characters, got {kind!r}")


class ArtifactRepository:
    """Reads and writes ``mtl_artifacts`` inside the caller's session (the caller commits).

    Args:
        session: from `Database.session()`.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def put(self, study_id: str, kind: str, payload: Mapping[str, Any]) -> ArtifactInfo:
        """Store `payload` as the study's artifact `kind`, replacing any earlier one.

        Raises:
            NotFoundError: the study does not exist.
            ValueError: the payload is not JSON-serialisable.
        """
        _check_kind(kind)
        payload = dict(payload)
        require_json("payload", payload)
        if self._session.get(StudyRecord, study_id) is None:
            raise NotFoundError(f"no study with id {study_id!r}")
        now = utcnow()
        upsert(
            self._session,
            ArtifactRecord,
            {"study_id": study_id, "kind": kind, "payload": payload, "created_at": now},
            keys=("study_id", "kind"),
        )
        return ArtifactInfo(study_id=study_id, kind=kind, payload=payload, created_at=now)

    def get(self, study_id: str, kind: str) -> ArtifactInfo | None:
        """The study's artifact `kind`, or None if none was put."""
        record = self._session.scalar(
            select(ArtifactRecord)
            .where(ArtifactRecord.study_id == study_id, ArtifactRecord.kind == kind)
            .execution_options(populate_existing=True)
        )
        if record is None:
            return None
        return ArtifactInfo(
            study_id=record.study_id,
            kind=record.kind,
            payload=dict(record.payload),
            created_at=record.created_at,
        )

    def delete(self, study_id: str, kind: str) -> bool:
        """Remove the study's artifact `kind`; True if there was one."""
        statement = (
            delete(ArtifactRecord)
            .where(ArtifactRecord.study_id == study_id, ArtifactRecord.kind == kind)
            .execution_options(synchronize_session=False)
        )
        return rowcount(self._session, statement) == 1


__all__ = ["ArtifactInfo", "ArtifactRepository"]

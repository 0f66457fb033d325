"""Studies: the spec a user submitted, its status, and the trial budget shared by workers."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from storage.errors import NotFoundError, StudyExistsError
from storage.models import (
    NAME_LENGTH,
    OPTUNA_NAME_LENGTH,
    ArtifactRecord,
    StudyRecord,
    StudyStatus,
    TrialRecord,
    TrialState,
    utcnow,
)
from storage.repositories._common import parse_enum, require_json, rowcount
from storage.repositories.trials import TrialRepository

MAX_PAGE = 1000


@dataclass(frozen=True, slots=True)
class StudyInfo:
    """A study as stored (a snapshot; it does not follow later changes)."""

    id: str
    name: str
    experiment: str
    spec: dict[str, Any]
    status: StudyStatus
    optuna_study_name: str
    n_trials: int | None
    time_budget_s: float | None
    trials_reserved: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    last_served_at: datetime | None
    message: str | None
    #: When the search's budget was met and its best were queued for confirmation.
    confirmation_started_at: datetime | None = None

    @property
    def confirming(self) -> bool:
        """Running, its search done, its confirmation runs under way."""
        return self.status is StudyStatus.RUNNING and self.confirmation_started_at is not None


def _info(record: StudyRecord) -> StudyInfo:
    return StudyInfo(
        id=record.id,
        name=record.name,
        experiment=record.experiment,
        spec=dict(record.spec),
        status=StudyStatus(record.status),
        optuna_study_name=record.optuna_study_name,
        n_trials=record.n_trials,
        time_budget_s=record.time_budget_s,
        trials_reserved=record.trials_reserved,
        created_at=record.created_at,
        updated_at=record.updated_at,
        finished_at=record.finished_at,
        last_served_at=record.last_served_at,
        message=record.message,
        confirmation_started_at=record.confirmation_started_at,
    )


def _check_name(field: str, value: str, max_length: int) -> None:
    if not value or not value.strip():
        raise ValueError(f"{field} must not be empty, got {value!r}")
    if len(value) > max_length:
        raise ValueError(f"{field} must be at most {max_length} characters, got {len(value)}")


def _statuses(value: StudyStatus | str | Iterable[StudyStatus | str]) -> list[str]:
    values = [value] if isinstance(value, str) else list(value)
    return [_status(v).value for v in values]


def _status(value: StudyStatus | str) -> StudyStatus:
    return parse_enum(StudyStatus, value, "study status")


class StudyRepository:
    """Reads and writes ``mtl_studies`` inside the caller's session (the caller commits).

    Args:
        session: from `Database.session()`.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def create(
        self,
        *,
        name: str,
        experiment: str,
        spec: Mapping[str, Any],
        n_trials: int | None = None,
        time_budget_s: float | None = None,
        optuna_study_name: str | None = None,
    ) -> StudyInfo:
        """Add a running study with a new random id.

        Args:
            name: unique, user-visible name.
            experiment: the experiment the study trains.
            spec: the validated study spec (JSON-serialisable).
            n_trials: trial budget; None for no limit.
            time_budget_s: wall-clock budget in seconds; None for no limit.
            optuna_study_name: name of the Optuna study (default ``"<name>-<id>"``, unique
                even if a study of the same name is deleted and created again).

        Raises:
            StudyExistsError: the name (or Optuna study name) is taken; nothing is written.
            ValueError: an argument is out of range (named in the message).
        """
        _check_name("name", name, NAME_LENGTH)
        _check_name("experiment", experiment, NAME_LENGTH)
        if n_trials is not None and n_trials < 1:
            raise ValueError(f"n_trials must be >= 1 or None, got {n_trials=}")
        if time_budget_s is not None and not time_budget_s > 0:
            raise ValueError(f"time_budget_s must be > 0 or None, got {time_budget_s=}")
        spec = dict(spec)
        require_json("spec", spec)

        study_id = secrets.token_hex(6)
        optuna_name = optuna_study_name or f"{name}-{study_id}"
        _check_name("optuna_study_name", optuna_name, OPTUNA_NAME_LENGTH)
        if self.get_by_name(name) is not None:
            raise StudyExistsError(f"a study named {name!r} already exists")
        taken = self._session.scalar(
            select(StudyRecord.id).where(StudyRecord.optuna_study_name == optuna_name)
        )
        if taken is not None:
            raise StudyExistsError(
                f"study {taken} already uses the Optuna study name {optuna_name!r}"
            )

        now = utcnow()
        record = StudyRecord(
            id=study_id,
            name=name,
            experiment=experiment,
            spec=spec,
            status=StudyStatus.RUNNING.value,
            optuna_study_name=optuna_name,
            n_trials=n_trials,
            time_budget_s=time_budget_s,
            trials_reserved=0,
            created_at=now,
            updated_at=now,
        )
        # Flushed here so that losing a race to a concurrent create raises our error; the
        # caller's `Database.session()` then rolls the whole unit of work back. (No SAVEPOINT:
        # pysqlite would commit at its RELEASE.)
        self._session.add(record)
        try:
            self._session.flush()
        except IntegrityError:
            raise StudyExistsError(
                f"a study named {name!r} (or Optuna study {optuna_name!r}) already exists"
            ) from None
        return _info(record)

    def _record(self, study_id: str) -> StudyRecord:
        record = self._session.get(StudyRecord, study_id, populate_existing=True)
        if record is None:
            raise NotFoundError(f"no study with id {study_id!r}")
        return record

    def get(self, study_id: str) -> StudyInfo:
        """The study `study_id`.

        Raises:
            NotFoundError: naming the id.
        """
        return _info(self._record(study_id))

    def get_by_name(self, name: str) -> StudyInfo | None:
        """The study called `name`, or None."""
        record = self._session.scalar(
            select(StudyRecord)
            .where(StudyRecord.name == name)
            .execution_options(populate_existing=True)
        )
        return None if record is None else _info(record)

    def get_by_optuna_name(self, optuna_name: str) -> StudyInfo | None:
        """The study whose Optuna study is `optuna_name`, or None."""
        record = self._session.scalar(
            select(StudyRecord)
            .where(StudyRecord.optuna_study_name == optuna_name)
            .execution_options(populate_existing=True)
        )
        return None if record is None else _info(record)

    def list(
        self,
        offset: int = 0,
        limit: int = 50,
        status: StudyStatus | str | None = None,
    ) -> tuple[list[StudyInfo], int]:
        """One page of studies, newest first, and how many there are in all.

        Args:
            offset: rows to skip (>= 0).
            limit: page size (1..1000).
            status: only studies in this status.
        """
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset=}")
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be in 1..{MAX_PAGE}, got {limit=}")
        query = select(StudyRecord)
        count = select(func.count()).select_from(StudyRecord)
        if status is not None:
            value = _status(status).value
            query = query.where(StudyRecord.status == value)
            count = count.where(StudyRecord.status == value)
        records = self._session.scalars(
            query.order_by(StudyRecord.created_at.desc(), StudyRecord.id)
            .offset(offset)
            .limit(limit)
            .execution_options(populate_existing=True)
        ).all()
        return [_info(r) for r in records], int(self._session.scalar(count) or 0)

    def set_status(
        self,
        study_id: str,
        status: StudyStatus | str,
        message: str | None = None,
        *,
        expected: StudyStatus | str | Iterable[StudyStatus | str] | None = None,
    ) -> bool:
        """Move a study to `status` (stamping ``finished_at`` for a terminal one).

        Args:
            study_id: the study.
            status: the new status.
            message: why (shown to the user); None clears it.
            expected: change only if the current status is this one (or one of these), in the
                same statement; e.g. ``expected="running"`` so a cancel never overwrites
                ``completed``.

        Returns:
            True if the row changed, False if `expected` did not match.

        Raises:
            NotFoundError: naming the id.
        """
        new = _status(status)
        now = utcnow()
        statement = (
            update(StudyRecord)
            .where(StudyRecord.id == study_id)
            .values(
                status=new.value,
                message=message,
                updated_at=now,
                finished_at=now if new.is_terminal else None,
            )
            .execution_options(synchronize_session=False)
        )
        if expected is not None:
            statement = statement.where(StudyRecord.status.in_(_statuses(expected)))
        if rowcount(self._session, statement):
            return True
        self._record(study_id)  # raises NotFoundError if the study is gone
        return False

    def delete(self, study_id: str) -> None:
        """Delete a study, its artifacts and its trial rows (the caller deletes the Optuna study).

        Raises:
            NotFoundError: naming the id.
        """
        # Artifacts and trials go explicitly too: the FK cascades on PostgreSQL, but on SQLite
        # only on connections that enabled foreign keys.
        TrialRepository(self._session).delete_study(study_id)
        self._session.execute(
            delete(ArtifactRecord)
            .where(ArtifactRecord.study_id == study_id)
            .execution_options(synchronize_session=False)
        )
        statement = (
            delete(StudyRecord)
            .where(StudyRecord.id == study_id)
            .execution_options(synchronize_session=False)
        )
        if not rowcount(self._session, statement):
            raise NotFoundError(f"no study with id {study_id!r}")

    def pick_for_worker(self) -> StudyInfo | None:
        """The running study with work left (budget, or a queued retry) that was served least
        recently, stamped as served.

        Order: never served first, then oldest ``last_served_at``, then oldest study; so every
        running study gets its turn and none starves another. Two workers asking at once get
        different studies when there are several (``FOR UPDATE SKIP LOCKED`` on PostgreSQL;
        SQLite runs one writer at a time).

        Returns:
            The study, or None when no running study has work left.
        """
        # A queued retry holds a slot of its own: its study has work even when the budget is
        # all taken.
        queued_retry = exists().where(
            TrialRecord.study_id == StudyRecord.id, TrialRecord.state == TrialState.QUEUED.value
        )
        # Two workers asking at once get different studies when there are several; one
        # study alone (or all locked) is waited for: a locked study may be the only one with
        # work (its row is locked for a moment by a completion check).
        for skip_locked in (True, False):
            study_id = self._pick(queued_retry, skip_locked)
            if study_id is not None:
                return self.get(study_id)
        return None

    def _pick(self, queued_retry: Any, skip_locked: bool) -> str | None:
        candidate = (
            select(StudyRecord.id)
            .where(
                StudyRecord.status == StudyStatus.RUNNING.value,
                (StudyRecord.n_trials.is_(None))
                | (StudyRecord.trials_reserved < StudyRecord.n_trials)
                | queued_retry,
            )
            .order_by(
                StudyRecord.last_served_at.asc().nulls_first(),
                StudyRecord.created_at,
                StudyRecord.id,
            )
            .limit(1)
            .with_for_update(skip_locked=skip_locked)
            .scalar_subquery()
        )
        statement = (
            update(StudyRecord)
            .where(StudyRecord.id == candidate)
            .values(last_served_at=utcnow())
            .returning(StudyRecord.id)
            .execution_options(synchronize_session=False)
        )
        return self._session.execute(statement).scalar_one_or_none()


__all__ = ["StudyInfo", "StudyRepository"]

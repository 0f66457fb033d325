"""Trials: one row per budget slot, from its reservation to its outcome; budget rules in SQL.

A worker reserves a slot (`TrialRepository.reserve`), asks Optuna for the trial and records it
(`start`), and records the outcome (`finish`). Every transition is one conditional UPDATE, so
two processes racing on a row (a worker finishing, a peer failing it as lost) never both win.
The study's ``trials_reserved`` counter moves in the same transaction as the row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, exists, func, null, or_, select, update
from sqlalchemy.orm import Session

from storage.errors import NotFoundError, StorageError
from storage.models import (
    StudyRecord,
    StudyStatus,
    TrialRecord,
    TrialState,
    WorkerRecord,
    WorkerStatus,
    params_key,
    utcnow,
)
from storage.repositories._common import require_json, rowcount
from storage.repositories.artifacts import ArtifactRepository
from storage.repositories.trial_reads import ACTIVE, API_STATES, TrialReads, TrialRow

#: The reason stored on a trial whose worker stopped heart-beating.
LOST_REASON = "worker lost: no heartbeat within the grace period"
#: The artifact kind `TrialRepository.complete_if_done` stores the best record under.
BEST_ARTIFACT = "best"
_DONE = (TrialState.COMPLETE.value, TrialState.PRUNED.value)


class TrialStateError(StorageError):
    """A trial is not in the state an operation needs (e.g. started after it was failed)."""


@dataclass(frozen=True, slots=True)
class LostTrial:
    """A trial `TrialRepository.claim_lost` failed: tell Optuna FAIL, re-run it if `retry`."""

    row_id: int
    number: int | None
    optuna_trial_id: int | None
    params: dict[str, Any] | None
    retry: bool


def take_slot(session: Session, study_id: str) -> bool:
    """Take one slot of the study's trial budget, atomically across all workers.

    One conditional UPDATE: it succeeds only while the study is running and fewer than
    ``n_trials`` slots are taken, so many workers together start exactly ``n_trials``.
    """
    statement = (
        update(StudyRecord)
        .where(
            StudyRecord.id == study_id,
            StudyRecord.status == StudyStatus.RUNNING.value,
            (StudyRecord.n_trials.is_(None)) | (StudyRecord.trials_reserved < StudyRecord.n_trials),
        )
        .values(trials_reserved=StudyRecord.trials_reserved + 1)
        .execution_options(synchronize_session=False)
    )
    return rowcount(session, statement) == 1


def _release(study_id: Any) -> Any:
    """The UPDATE giving one slot of `study_id` back, never below 0."""
    return (
        update(StudyRecord)
        .where(StudyRecord.id == study_id, StudyRecord.trials_reserved > 0)
        .values(trials_reserved=StudyRecord.trials_reserved - 1)
        .execution_options(synchronize_session=False)
    )


class TrialRepository(TrialReads):
    """Reads and writes ``mtl_trials`` inside the caller's session (the caller commits).

    Args:
        session: from `Database.session()`.
    """

    def reserve(self, study_id: str, worker_id: str | None) -> int | None:
        """Take one slot of the study's budget and add a 'reserved' row for it.

        One conditional UPDATE takes the slot only while the study is running and fewer than
        ``n_trials`` are taken, so many workers together start exactly ``n_trials``.

        Returns:
            The new row's id; None when the budget is spent, the study is not running or gone.
        """
        ids = self.reserve_many(study_id, worker_id, 1)
        return ids[0] if ids else None

    def reserve_many(self, study_id: str, worker_id: str | None, n: int) -> list[int]:
        """`reserve` up to ``n`` slots in the caller's one transaction (as many as the budget
        has left); the new rows' ids, in order (empty when none is left)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n=}")
        taken = 0
        while taken < n and take_slot(self._session, study_id):
            taken += 1
        records = [
            TrialRecord(
                study_id=study_id,
                state=TrialState.RESERVED.value,
                worker_id=worker_id,
                retried=False,
                reserved_at=utcnow(),
            )
            for _ in range(taken)
        ]
        self._session.add_all(records)
        self._session.flush()
        return [record.id for record in records]

    def start(
        self,
        row_id: int,
        *,
        number: int,
        optuna_trial_id: int,
        params: dict[str, Any],
        config: dict[str, Any] | None,
        weights_normalised: dict[str, Any] | None,
        retry_of: int | None = None,
    ) -> None:
        """Record the Optuna trial a reserved slot became: reserved -> running.

        Raises:
            NotFoundError: no row `row_id`.
            TrialStateError: the row is no longer reserved (e.g. it was failed as lost).
        """
        for field, value in (("params", params), ("config", config)):
            require_json(field, value)
        require_json("weights_normalised", weights_normalised)
        statement = (
            update(TrialRecord)
            .where(TrialRecord.id == row_id, TrialRecord.state == TrialState.RESERVED.value)
            .values(
                state=TrialState.RUNNING.value,
                number=number,
                optuna_trial_id=optuna_trial_id,
                params=params,
                params_key=params_key(params),
                config=config,
                weights_normalised=weights_normalised,
                retry_of=retry_of,
                started_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
        if rowcount(self._session, statement):
            return
        state = self._session.scalar(select(TrialRecord.state).where(TrialRecord.id == row_id))
        if state is None:
            raise NotFoundError(f"no trial row with id {row_id}")
        raise TrialStateError(f"trial row {row_id} is {state}, not reserved; it cannot start")

    def finish(
        self,
        row_id: int,
        *,
        state: str,
        values: list[float] | None = None,
        reason: str | None = None,
        config: dict[str, Any] | None = None,
        weights_normalised: dict[str, Any] | None = None,
        val_metrics: dict[str, Any] | None = None,
        test_metrics: dict[str, Any] | None = None,
        strategy_weights: dict[str, Any] | None = None,
        epochs_run: int | None = None,
    ) -> bool:
        """Record a trial's outcome, if nobody finished it first (one conditional UPDATE).

        A 'fail' gives its budget slot back in the same transaction (the trial will be run
        again). Fields left None keep what `start` stored.

        Returns:
            True if this call finished the row; False if it was already finished (e.g. failed
            as lost by a peer) or does not exist.

        Raises:
            ValueError: `state` is not a finished state, or a value is not finite.
        """
        final = TrialState(state)
        if not final.is_finished:
            raise ValueError(f"finish needs complete, pruned or fail, got {state!r}")
        if values is not None:
            values = [float(v) for v in values]
            require_json("values", values)  # NaN and inf are no JSON (PostgreSQL refuses them)
        optional = {
            "config": config,
            "weights_normalised": weights_normalised,
            "val_metrics": val_metrics,
            "test_metrics": test_metrics,
            "strategy_weights": strategy_weights,
            "epochs_run": epochs_run,
        }
        changes: dict[str, Any] = {k: v for k, v in optional.items() if v is not None}
        for field, value in changes.items():
            require_json(field, value)
        first = values[0] if values else None
        statement = (
            update(TrialRecord)
            .where(TrialRecord.id == row_id, TrialRecord.state.in_(ACTIVE))
            .values(
                state=final.value,
                values=values,
                value=first,
                reason=reason,
                finished_at=utcnow(),
                **changes,
            )
            .returning(TrialRecord.study_id)
            .execution_options(synchronize_session=False)
        )
        study_id = self._session.execute(statement).scalar_one_or_none()
        if study_id is None:
            return False
        if final is TrialState.FAIL:
            self._session.execute(_release(study_id))
        return True

    def claim_lost(
        self,
        study_id: str,
        *,
        grace_s: float,
        now: datetime | None = None,
        alive: str | None = None,
    ) -> list[LostTrial]:
        """Fail the study's unfinished rows whose worker is dead, giving their slots back.

        A worker is dead when its ``mtl_workers`` row is missing, says 'stopped', or last beat
        more than `grace_s` ago; a row with no worker is lost once reserved that long. A
        running row that is no retry itself is marked ``retried`` (its retry is queued by the
        caller); each row is claimed by one conditional UPDATE, so of several callers only one
        gets it.

        ``alive``: the caller's own worker id; its rows are never claimed (it knows it is alive,
        however late its last beat landed).

        Returns:
            The rows this call claimed.
        """
        cutoff = (now or utcnow()) - timedelta(seconds=grace_s)
        live_worker = exists().where(
            WorkerRecord.id == TrialRecord.worker_id,
            WorkerRecord.status != WorkerStatus.STOPPED.value,
            WorkerRecord.last_heartbeat >= cutoff,
        )
        candidates = self._session.execute(
            select(
                TrialRecord.id,
                TrialRecord.state,
                TrialRecord.number,
                TrialRecord.optuna_trial_id,
                TrialRecord.params,
                TrialRecord.retry_of,
            )
            .where(
                TrialRecord.study_id == study_id,
                TrialRecord.state.in_(ACTIVE),
                or_(
                    and_(TrialRecord.worker_id.is_(None), TrialRecord.reserved_at < cutoff),
                    and_(TrialRecord.worker_id.is_not(None), ~live_worker),
                ),
                *([TrialRecord.worker_id.is_distinct_from(alive)] if alive else []),
            )
            .order_by(TrialRecord.id)
        ).all()
        claimed = []
        for row_id, state, number, optuna_trial_id, params, retry_of in candidates:
            retry = state == TrialState.RUNNING.value and retry_of is None
            statement = (
                update(TrialRecord)
                .where(TrialRecord.id == row_id, TrialRecord.state == state)
                .values(
                    state=TrialState.FAIL.value,
                    reason=LOST_REASON,
                    finished_at=utcnow(),
                    retried=retry,
                )
                .execution_options(synchronize_session=False)
            )
            if rowcount(self._session, statement):
                self._session.execute(_release(study_id))
                claimed.append(LostTrial(row_id, number, optuna_trial_id, params, retry))
        return claimed

    def complete_if_done(
        self,
        study_id: str,
        *,
        time_up: bool,
        best: Callable[[], dict[str, Any] | None] | None = None,
    ) -> bool:
        """Mark the study completed if nothing runs and its budget is met (or `time_up`).

        One conditional UPDATE, so of several workers seeing the end only one completes it.
        With `best`, its record (read it through this session) is stored as the study's
        ``best`` artifact in the same transaction.

        Returns:
            True if this call completed the study.
        """
        budget = self._session.scalar(
            select(StudyRecord.time_budget_s).where(StudyRecord.id == study_id)
        )
        time_message = (
            f"time budget of {budget:g} s reached" if budget is not None else "time budget reached"
        )
        done = (
            select(func.count())
            .select_from(TrialRecord)
            .where(TrialRecord.study_id == study_id, TrialRecord.state.in_(_DONE))
            .scalar_subquery()
        )
        budget_met = and_(StudyRecord.n_trials.is_not(None), done >= StudyRecord.n_trials)
        active = exists().where(TrialRecord.study_id == study_id, TrialRecord.state.in_(ACTIVE))
        where = [
            StudyRecord.id == study_id,
            StudyRecord.status == StudyStatus.RUNNING.value,
            ~active,
        ]
        if not time_up:
            where.append(budget_met)
        now = utcnow()
        statement = (
            update(StudyRecord)
            .where(*where)
            .values(
                status=StudyStatus.COMPLETED.value,
                finished_at=now,
                updated_at=now,
                message=case((budget_met, null()), else_=time_message),
            )
            .execution_options(synchronize_session=False)
        )
        if not rowcount(self._session, statement):
            return False
        if best is not None:
            record = best()
            if record is not None:
                ArtifactRepository(self._session).put(study_id, BEST_ARTIFACT, record)
        return True

    def delete_study(self, study_id: str) -> None:
        """Delete every row of a study (`StudyRepository.delete` calls it)."""
        self._session.execute(
            delete(TrialRecord)
            .where(TrialRecord.study_id == study_id)
            .execution_options(synchronize_session=False)
        )


__all__ = [
    "API_STATES",
    "BEST_ARTIFACT",
    "LOST_REASON",
    "LostTrial",
    "TrialRepository",
    "TrialRow",
    "TrialStateError",
    "take_slot",
]

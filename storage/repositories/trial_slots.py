"""Who holds a trial's budget slot: reservations, give-backs and the rows of dead workers.

`TrialSlots` is the half of `storage.repositories.trials.TrialRepository` that moves rows
between holders: a worker reserves slots (its study's queued retries first, then fresh ones),
gives back what it did not start, and a peer claims the rows of a worker that died. Each row
moves by one conditional UPDATE or DELETE, in the caller's transaction with the budget counter
(`storage.repositories.budget`), so of several processes racing for a row exactly one gets it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, insert, or_, select, update

from storage.models import (
    FailureKind,
    StudyRecord,
    StudyStatus,
    TrialKind,
    TrialRecord,
    TrialState,
    WorkerRecord,
    WorkerStatus,
    params_key,
    utcnow,
)
from storage.repositories._common import rowcount
from storage.repositories.budget import release_slots, take_slot
from storage.repositories.trial_reads import ACTIVE, TrialReads

#: The reason stored on a trial whose worker stopped heart-beating.
LOST_REASON = "worker lost: no heartbeat within the grace period"


@dataclass(frozen=True, slots=True)
class Reservation:
    """A row a worker holds to run: a fresh trial to ask, a lost trial's retry, or a
    confirmation run.

    For a retry, ``retry_of`` is the lost trial's number, ``params`` its params and
    ``source_trial_id`` its Optuna trial id (where its distributions are read). A confirmation
    run (``kind`` confirmation) carries the ``config`` it trains; it has no Optuna trial.
    """

    row_id: int
    retry_of: int | None = None
    params: dict[str, Any] | None = None
    source_trial_id: int | None = None
    kind: TrialKind = TrialKind.SEARCH
    config: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LostTrial:
    """A row `TrialRepository.claim_lost` took from a dead worker.

    ``number`` is None for a slot that never became a trial (given back, or a retry queued
    again); otherwise the trial was failed, and ``retry_row_id`` is the retry queued for it
    (None for a retry lost in its turn: it gets none).
    """

    row_id: int
    number: int | None
    optuna_trial_id: int | None
    retry_row_id: int | None


class TrialSlots(TrialReads):
    """Reservations and lost rows of ``mtl_trials``, inside the caller's session."""

    def reserve(self, study_id: str, worker_id: str | None) -> int | None:
        """`reserve_many` of one slot; its row id, None when the budget is spent, the study is
        not running or gone."""
        reserved = self.reserve_many(study_id, worker_id, 1)
        return reserved[0].row_id if reserved else None

    def reserve_many(self, study_id: str, worker_id: str | None, n: int) -> list[Reservation]:
        """Take up to ``n`` slots of a running study for ``worker_id``, in the caller's one
        transaction: its queued retries first (each taken by one conditional UPDATE, so of
        several workers one gets it), then fresh slots while the budget has any, each with a
        new 'reserved' row.

        Returns:
            The reservations, retries first (empty when nothing is left).
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n=}")
        retries = self._take_retries(study_id, worker_id, n)
        taken = 0
        while len(retries) + taken < n and take_slot(self._session, study_id):
            taken += 1
        records = [
            TrialRecord(
                study_id=study_id,
                state=TrialState.RESERVED.value,
                worker_id=worker_id,
                reserved_at=utcnow(),
            )
            for _ in range(taken)
        ]
        self._session.add_all(records)
        self._session.flush()
        return retries + [Reservation(record.id) for record in records]

    def _take_retries(self, study_id: str, worker_id: str | None, n: int) -> list[Reservation]:
        running = exists().where(
            StudyRecord.id == study_id, StudyRecord.status == StudyStatus.RUNNING.value
        )
        oldest = (
            select(TrialRecord.id)
            .where(TrialRecord.study_id == study_id, TrialRecord.state == TrialState.QUEUED.value)
            .order_by(TrialRecord.id)
            .limit(n)
        )
        taken = self._session.execute(
            update(TrialRecord)
            # Re-checked per row: a peer that took a row first leaves it 'reserved'.
            .where(
                TrialRecord.id.in_(oldest.scalar_subquery()),
                TrialRecord.state == TrialState.QUEUED.value,
                running,
            )
            .values(state=TrialState.RESERVED.value, worker_id=worker_id, reserved_at=utcnow())
            .returning(
                TrialRecord.id,
                TrialRecord.retry_of,
                TrialRecord.params,
                TrialRecord.kind,
                TrialRecord.config,
            )
            .execution_options(synchronize_session=False)
        ).all()
        if not taken:
            return []
        retried = [row.retry_of for row in taken if row.retry_of is not None]
        sources = dict(
            self._session.execute(
                select(TrialRecord.number, TrialRecord.optuna_trial_id).where(
                    TrialRecord.study_id == study_id, TrialRecord.number.in_(retried)
                )
            ).all()
        )
        return sorted(
            (
                Reservation(
                    row.id,
                    row.retry_of,
                    row.params,
                    sources.get(row.retry_of),
                    TrialKind(row.kind),
                    row.config,
                )
                for row in taken
            ),
            key=lambda reservation: reservation.row_id,
        )

    def give_back(self, row_ids: list[int]) -> int:
        """Give back reservations that never became trials: a fresh slot's row goes (its slot
        back to the budget), a retry or a confirmation run is queued again for any worker.
        Rows no longer reserved (claimed meanwhile) are left alone.

        Returns:
            How many rows this call gave back.
        """
        given = 0
        for row_id in row_ids:
            requeued = rowcount(
                self._session,
                update(TrialRecord)
                .where(
                    TrialRecord.id == row_id,
                    TrialRecord.state == TrialState.RESERVED.value,
                    TrialRecord.retry_of.is_not(None)
                    | (TrialRecord.kind == TrialKind.CONFIRMATION.value),
                )
                .values(state=TrialState.QUEUED.value, worker_id=None)
                .execution_options(synchronize_session=False),
            )
            if requeued:
                given += 1
                continue
            study_id = self._session.execute(
                delete(TrialRecord)
                .where(TrialRecord.id == row_id, TrialRecord.state == TrialState.RESERVED.value)
                .returning(TrialRecord.study_id)
                .execution_options(synchronize_session=False)
            ).scalar_one_or_none()
            if study_id is not None:
                self._session.execute(release_slots(study_id))
                given += 1
        return given

    def claim_lost(
        self,
        study_id: str,
        *,
        grace_s: float,
        now: datetime | None = None,
        alive: str | None = None,
    ) -> list[LostTrial]:
        """Take the study's reserved and running rows from dead workers, in this transaction.

        A worker is dead when its ``mtl_workers`` row is missing, says 'stopped', or last beat
        more than `grace_s` ago; a row with no worker is lost once reserved that long. Each
        row is taken by one conditional UPDATE or DELETE, so of several callers only one gets
        it, and then:

        * a running trial is failed with `LOST_REASON`; unless it is a retry itself, its retry
          is inserted ``queued`` with its params and takes over its budget slot (the unique
          ``(study_id, retry_of)`` makes a second retry impossible); otherwise its slot goes
          back (a confirmation run holds none and is not re-run: its config's mean is over
          the seeds that completed);
        * a reservation that never became a trial is given back (`give_back`'s rules).

        ``alive``: the caller's own worker id; its rows are never claimed (it knows it is alive,
        however late its last beat landed).

        Returns:
            The rows this call took, in id order.
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
                TrialRecord.kind,
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
        for row_id, state, number, optuna_trial_id, params, retry_of, kind in candidates:
            if state == TrialState.RESERVED.value:
                if self.give_back([row_id]):
                    claimed.append(LostTrial(row_id, None, None, None))
                continue
            lost = self._fail_running(row_id, LOST_REASON, FailureKind.LOST_WORKER)
            if not lost:
                continue  # its worker (or a peer) finished it first
            retry_row_id = self._retry_or_release(study_id, number, params, retry_of, kind)
            claimed.append(LostTrial(row_id, number, optuna_trial_id, retry_row_id))
        return claimed

    def hand_back(self, row_id: int, reason: str, failure_kind: FailureKind) -> bool:
        """A live worker cannot run the trial of ``row_id`` (its own setup failed: a data set
        missing on its machine): the row is ended as lost trials are, so that another worker
        runs it (a search trial: failed, and retried once; a confirmation run: queued again).

        Returns:
            True if this call ended the row (False: it was finished or taken meanwhile).
        """
        row = self._session.execute(
            select(
                TrialRecord.study_id,
                TrialRecord.number,
                TrialRecord.params,
                TrialRecord.retry_of,
                TrialRecord.kind,
            ).where(TrialRecord.id == row_id)
        ).first()
        if row is None:
            return False
        if row.kind == TrialKind.CONFIRMATION.value:
            return bool(
                rowcount(
                    self._session,
                    update(TrialRecord)
                    .where(TrialRecord.id == row_id, TrialRecord.state.in_(ACTIVE))
                    .values(state=TrialState.QUEUED.value, worker_id=None, started_at=None)
                    .execution_options(synchronize_session=False),
                )
            )
        if not self._fail_running(row_id, reason, failure_kind):
            return False
        self._retry_or_release(row.study_id, row.number, row.params, row.retry_of, row.kind)
        return True

    def _fail_running(self, row_id: int, reason: str, failure_kind: FailureKind) -> bool:
        return bool(
            rowcount(
                self._session,
                update(TrialRecord)
                .where(TrialRecord.id == row_id, TrialRecord.state == TrialState.RUNNING.value)
                .values(
                    state=TrialState.FAIL.value,
                    reason=reason,
                    failure_kind=failure_kind.value,
                    finished_at=utcnow(),
                )
                .execution_options(synchronize_session=False),
            )
        )

    def _retry_or_release(
        self,
        study_id: str,
        number: int | None,
        params: dict[str, Any] | None,
        retry_of: int | None,
        kind: str,
    ) -> int | None:
        """After a running row failed through no fault of its own: its queued retry (the
        slot moves to it), or, for a retry or a confirmation run, nothing more (a search
        retry's slot goes back). Returns the retry's row id."""
        if kind == TrialKind.CONFIRMATION.value:
            return None
        if retry_of is None and number is not None:
            return self._queue_retry(study_id, number, params)
        self._session.execute(release_slots(study_id))
        return None

    def _queue_retry(self, study_id: str, number: int, params: dict[str, Any] | None) -> int:
        """Insert the queued retry of lost trial ``number``; it keeps the lost trial's slot."""
        return int(
            self._session.execute(
                insert(TrialRecord)
                .values(
                    study_id=study_id,
                    state=TrialState.QUEUED.value,
                    params=params,
                    params_key=params_key(params) if params is not None else None,
                    retry_of=number,
                    reserved_at=utcnow(),
                )
                .returning(TrialRecord.id)
            ).scalar_one()
        )


__all__ = ["LOST_REASON", "LostTrial", "Reservation", "TrialSlots"]

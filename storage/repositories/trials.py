"""Trials: one row per budget slot, from its reservation to its outcome; budget rules in SQL.

A worker reserves slots (`TrialRepository.reserve_many`: a lost trial's queued retry first,
then fresh slots; `storage.repositories.trial_slots`), asks Optuna for the trials and records
them (`start`), and records each outcome (`finish`). Every transition is one conditional
UPDATE (or DELETE), so two processes racing on a row (a worker finishing, a peer claiming it as
lost) never both win. The study's ``trials_reserved`` counter moves in the same transaction as
the row (`storage.repositories.budget`).

The life of a row (docs/reliability.md draws it)::

    (slot taken) -> reserved -> running -> complete | pruned | fail
    running, its worker dead -> fail, and a new row 'queued' (its retry, once) in one transaction
    queued -> reserved (a worker takes the retry) -> running -> ...
    reserved, never started  -> deleted (slot back), or queued again if it is a retry
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import and_, case, delete, exists, func, null, select, update

from storage.errors import NotFoundError, StorageError
from storage.models import (
    FailureKind,
    StudyRecord,
    StudyStatus,
    TrialKind,
    TrialRecord,
    TrialState,
    params_key,
    utcnow,
)
from storage.repositories._common import require_json, rowcount
from storage.repositories.artifacts import ArtifactRepository
from storage.repositories.budget import release_slots
from storage.repositories.trial_reads import ACTIVE, API_STATES, UNFINISHED, TrialRow
from storage.repositories.trial_slots import LOST_REASON, LostTrial, Reservation, TrialSlots

#: The reason stored on a queued retry that the study's time budget left no time for.
TIME_UP_REASON = "not run: the study's time budget ran out before this retry was taken"
#: The artifact kind `TrialRepository.complete_if_done` stores the best record under.
BEST_ARTIFACT = "best"
_DONE = (TrialState.COMPLETE.value, TrialState.PRUNED.value)


class TrialStateError(StorageError):
    """A trial is not in the state an operation needs (e.g. started after it was failed)."""


class TrialRepository(TrialSlots):
    """Reads and writes ``mtl_trials`` inside the caller's session (the caller commits).

    Args:
        session: from `Database.session()`.
    """

    def start(
        self,
        row_id: int,
        *,
        number: int,
        optuna_trial_id: int,
        params: dict[str, Any],
        config: dict[str, Any] | None,
        weights_normalised: dict[str, Any] | None,
        seed: int | None = None,
    ) -> None:
        """Record the Optuna trial a reserved slot became: reserved -> running.

        Raises:
            NotFoundError: no row `row_id` (e.g. given back by a peer that saw this worker
                dead).
            TrialStateError: the row is no longer reserved (e.g. queued again as above).
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
                seed=seed,
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
        weights_trajectory: list[Any] | None = None,
        epochs_run: int | None = None,
        seed: int | None = None,
        num_slots: int | None = None,
        failure_kind: FailureKind | None = None,
    ) -> bool:
        """Record a trial's outcome, if nobody finished it first (one conditional UPDATE).

        A search trial's 'fail' gives its budget slot back in the same transaction (another
        trial will be asked in its place; a confirmation run holds no slot). Fields left None
        keep what `start` stored.

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
            "weights_trajectory": weights_trajectory,
            "epochs_run": epochs_run,
            "seed": seed,
            "num_slots": num_slots,
            "failure_kind": None if failure_kind is None else FailureKind(failure_kind).value,
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
            .returning(TrialRecord.study_id, TrialRecord.kind)
            .execution_options(synchronize_session=False)
        )
        finished = self._session.execute(statement).first()
        if finished is None:
            return False
        study_id, kind = finished
        if final is TrialState.FAIL and kind == TrialKind.SEARCH.value:
            self._session.execute(release_slots(study_id))
        return True

    def complete_if_done(
        self,
        study_id: str,
        *,
        time_up: bool,
        best: Callable[[], dict[str, Any] | None] | None = None,
    ) -> bool:
        """Mark the study completed if nothing runs and its budget is met (or `time_up`).

        One conditional UPDATE, so of several workers seeing the end only one completes it.
        The study's row is locked first: a reservation (which updates that row too) either
        committed before, and its row is seen, or waits and then finds the study ended; the
        check of the trial rows is a statement of its own, which sees every commit before it.
        With `time_up`, queued retries are failed first (no worker will take them any more).
        With `best`, its record (read it through this session) is stored as the study's
        ``best`` artifact in the same transaction.

        Returns:
            True if this call completed the study.
        """
        budget = self._session.scalar(
            select(StudyRecord.time_budget_s).where(StudyRecord.id == study_id).with_for_update()
        )
        if time_up:
            self._drop_queued(study_id, TIME_UP_REASON)
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
        unfinished = exists().where(
            TrialRecord.study_id == study_id, TrialRecord.state.in_(UNFINISHED)
        )
        where = [
            StudyRecord.id == study_id,
            StudyRecord.status == StudyStatus.RUNNING.value,
            ~unfinished,
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

    def _drop_queued(self, study_id: str, reason: str) -> None:
        """Fail the study's queued retries, their slots back (one conditional UPDATE)."""
        dropped = rowcount(
            self._session,
            update(TrialRecord)
            .where(TrialRecord.study_id == study_id, TrialRecord.state == TrialState.QUEUED.value)
            .values(state=TrialState.FAIL.value, reason=reason, finished_at=utcnow())
            .execution_options(synchronize_session=False),
        )
        if dropped:
            self._session.execute(release_slots(study_id, dropped))

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
    "TIME_UP_REASON",
    "LostTrial",
    "Reservation",
    "TrialRepository",
    "TrialRow",
    "TrialStateError",
]

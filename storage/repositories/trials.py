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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
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


class Completion(StrEnum):
    """What `TrialRepository.complete_if_done` did."""

    NOT_YET = "not_yet"
    #: The search was done: its confirmation runs were queued, the study runs on.
    CONFIRMING = "confirming"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """A confirmation run to queue: what it confirms (a search ``params_key`` or
    ``'uniform'``), its search params (None for uniform weights), the config and seed."""

    confirms: str
    params: dict[str, Any] | None
    config: dict[str, Any]
    seed: int


class TrialRepository(TrialSlots):
    """Reads and writes ``mtl_trials`` inside the caller's session (the caller commits).

    Args:
        session: from `Database.session()`.
    """

    def start(
        self,
        row_id: int,
        *,
        number: int | None,
        optuna_trial_id: int | None,
        params: dict[str, Any] | None,
        config: dict[str, Any] | None,
        weights_normalised: dict[str, Any] | None,
        seed: int | None = None,
    ) -> None:
        """Record the Optuna trial a reserved slot became: reserved -> running. A confirmation
        run has no Optuna trial (``number`` None) and keeps the params it was queued with.

        Raises:
            NotFoundError: no row `row_id` (e.g. given back by a peer that saw this worker
                dead).
            TrialStateError: the row is no longer reserved (e.g. queued again as above).
        """
        for field, value in (("params", params), ("config", config)):
            require_json(field, value)
        require_json("weights_normalised", weights_normalised)
        searched = {} if params is None else {"params": params, "params_key": params_key(params)}
        statement = (
            update(TrialRecord)
            .where(TrialRecord.id == row_id, TrialRecord.state == TrialState.RESERVED.value)
            .values(
                state=TrialState.RUNNING.value,
                number=number,
                optuna_trial_id=optuna_trial_id,
                config=config,
                weights_normalised=weights_normalised,
                seed=seed,
                started_at=utcnow(),
                **searched,
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
        population: dict[str, Any] | None = None,
    ) -> bool:
        """Record a trial's outcome, if nobody finished it first (one conditional UPDATE).

        A search trial's 'fail' gives its budget slot back in the same transaction (another
        trial will be asked in its place; a confirmation run holds no slot). Fields left None
        keep what `start` stored; ``population`` is a population member's trajectory of fixed
        weights and lineage (`mtl_core.results.TrialResult.population`).

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
            "population": population,
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
        confirm: Callable[[], Sequence[QueuedRun]] | None = None,
    ) -> Completion:
        """End the study's search, and the study, once their work is done.

        The search is done when its budget is met (or `time_up`) and no search trial is
        queued, reserved or running. Then, with `confirm` and no confirmation yet, the runs it
        returns (read the rows through this session) are queued as 'confirmation' rows and the
        study stays running (`Completion.CONFIRMING`); when it returns none, or without
        `confirm`, the study completes once no row of any kind is unfinished. Each step is a
        conditional UPDATE, so of several workers seeing the end only one takes it.

        The study's row is locked first: a reservation (which updates that row too) either
        committed before, and its row is seen, or waits and then finds the study ended; every
        check of the trial rows is a statement of its own, which sees every commit before it.
        With `time_up`, queued search retries are failed first (no worker takes them any more;
        confirmation runs still run). With `best`, its record is stored as the study's
        ``best`` artifact in the transaction that completes it.
        """
        if self._busy(study_id):
            return Completion.NOT_YET  # the common case, decided without locking anything
        study = self._session.execute(
            select(StudyRecord.time_budget_s, StudyRecord.confirmation_started_at)
            .where(StudyRecord.id == study_id, StudyRecord.status == StudyStatus.RUNNING.value)
            .with_for_update()
        ).first()
        if study is None:
            return Completion.NOT_YET
        if time_up:
            self._drop_queued(study_id, TIME_UP_REASON)
        if confirm is not None and study.confirmation_started_at is None:
            if not self._search_done(study_id, time_up):
                return Completion.NOT_YET
            runs = confirm()
            if runs:
                return self._start_confirmation(study_id, runs)
        budget = study.time_budget_s
        time_message = (
            f"time budget of {budget:g} s reached" if budget is not None else "time budget reached"
        )
        budget_met = and_(StudyRecord.n_trials.is_not(None), self._done() >= StudyRecord.n_trials)
        unfinished = exists().where(
            TrialRecord.study_id == study_id, TrialRecord.state.in_(UNFINISHED)
        )
        where = [
            StudyRecord.id == study_id,
            StudyRecord.status == StudyStatus.RUNNING.value,
            ~unfinished,
        ]
        if not time_up and study.confirmation_started_at is None:
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
            return Completion.NOT_YET
        if best is not None:
            record = best()
            if record is not None:
                ArtifactRepository(self._session).put(study_id, BEST_ARTIFACT, record)
        return Completion.COMPLETED

    def _busy(self, study_id: str) -> bool:
        """Whether a run of the study is reserved or running: it cannot be done yet."""
        return bool(
            self._session.scalar(
                select(
                    exists().where(TrialRecord.study_id == study_id, TrialRecord.state.in_(ACTIVE))
                )
            )
        )

    def _done(self) -> Any:
        """The number of the study's search trials that ran to an end (COMPLETE or PRUNED)."""
        return (
            select(func.count())
            .select_from(TrialRecord)
            .where(
                TrialRecord.study_id == StudyRecord.id,
                TrialRecord.kind == TrialKind.SEARCH.value,
                TrialRecord.state.in_(_DONE),
            )
            .scalar_subquery()
        )

    def _search_done(self, study_id: str, time_up: bool) -> bool:
        searching = self._session.scalar(
            select(func.count())
            .select_from(TrialRecord)
            .where(
                TrialRecord.study_id == study_id,
                TrialRecord.kind == TrialKind.SEARCH.value,
                TrialRecord.state.in_(UNFINISHED),
            )
        )
        if searching:
            return False
        if time_up:
            return True
        met = self._session.scalar(
            select(
                StudyRecord.n_trials.is_not(None) & (self._done() >= StudyRecord.n_trials)
            ).where(StudyRecord.id == study_id)
        )
        return bool(met)

    def _start_confirmation(self, study_id: str, runs: Sequence[QueuedRun]) -> Completion:
        started = rowcount(
            self._session,
            update(StudyRecord)
            .where(StudyRecord.id == study_id, StudyRecord.confirmation_started_at.is_(None))
            .values(confirmation_started_at=utcnow(), updated_at=utcnow())
            .execution_options(synchronize_session=False),
        )
        if not started:
            return Completion.NOT_YET
        for run in runs:
            require_json("config", run.config)
            self._session.add(
                TrialRecord(
                    study_id=study_id,
                    kind=TrialKind.CONFIRMATION.value,
                    state=TrialState.QUEUED.value,
                    confirms=run.confirms,
                    params=run.params,
                    params_key=params_key(run.params) if run.params is not None else None,
                    config=run.config,
                    seed=run.seed,
                    reserved_at=utcnow(),
                )
            )
        self._session.flush()
        return Completion.CONFIRMING

    def _drop_queued(self, study_id: str, reason: str) -> None:
        """Fail the study's queued search retries, their slots back (one conditional UPDATE)."""
        dropped = rowcount(
            self._session,
            update(TrialRecord)
            .where(
                TrialRecord.study_id == study_id,
                TrialRecord.kind == TrialKind.SEARCH.value,
                TrialRecord.state == TrialState.QUEUED.value,
            )
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
    "Completion",
    "LostTrial",
    "QueuedRun",
    "Reservation",
    "TrialRepository",
    "TrialRow",
    "TrialStateError",
]

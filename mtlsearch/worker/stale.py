"""Trials of dead workers: failed, re-run once, their budget slots accounted for; Optuna told.

A worker is alive while its ``mtl_workers`` row beats (`mtlsearch.worker.heartbeat`); one whose
row is older than ``Settings.stale_after_s``, or says stopped, is dead. Its unfinished trials are
found in our own ``mtl_trials`` table, so a worker killed between reserving a slot and asking,
or between ``ask`` and its first epoch, is covered like one killed mid-training.

The record is our table, and every once-only fact there is the database's to enforce
(docs/reliability.md lists them):

1. `storage.TrialRepository.claim_lost`, in one transaction per pass: each running row of a
   dead worker FAIL with `storage.repositories.trials.LOST_REASON` and, unless it is a retry
   itself, its retry inserted as a 'queued' row that takes over its budget slot (``retry_of``
   is unique per study: no interleaving of workers can queue two); each reservation that never
   became a trial given back. Each row moves by a conditional UPDATE or DELETE, so of several
   workers (or the trial's own, telling it late) exactly one wins it.
2. Optuna's tables only mirror it, idempotently: each failed trial gets its ``fail_reason``
   and ``study.tell(number, state=FAIL, skip_if_finished=True)``. The queued retry is taken by
   the next worker that reserves slots of the study (`mtlsearch.worker.asking`).

A process killed in step 2, or between any row write and its mirror, leaves an Optuna trial
RUNNING that its row does not back: `repair_optuna`, which every worker's maintenance runs,
tells Optuna what the row says. Every trial a worker creates names its row (the system
attribute `mtlsearch.worker.asking.ROW_ATTR`), so a trial whose row never recorded it (its
worker died between ``ask`` and recording the batch) is failed as soon as the row is no longer
reserved for it.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtlsearch.worker.asking import ROW_ATTR
from mtlsearch.worker.outcomes import tell_once
from storage import Database, TrialRepository, TrialRow
from storage import TrialState as RowState
from storage.models import utcnow
from storage.repositories.trials import LOST_REASON, LostTrial

logger = logging.getLogger(__name__)

#: ``fail_reason`` of a trial whose worker was lost (in our row and in Optuna's user attrs).
STALE_REASON = LOST_REASON
#: What our finished row states mean to Optuna.
_OPTUNA_STATES = {
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "fail": TrialState.FAIL,
}


def _fail_in_optuna(database: Database, study: optuna.Study, trial_id: int, number: int) -> None:
    """Mirror a lost trial's FAIL: its reason, then the tell (both no-ops once finished)."""
    storage = database.optuna_storage()
    # Its worker may tell it meanwhile: then it keeps that worker's outcome.
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        storage.set_trial_user_attr(trial_id, "fail_reason", STALE_REASON)
    tell_once(study, number, state=TrialState.FAIL)


def fail_lost_trials(
    database: Database,
    study: optuna.Study,
    study_id: str,
    grace_s: float,
    worker_id: str | None = None,
) -> list[LostTrial]:
    """Claim the study's rows of dead workers and mirror their failures into Optuna (see the
    module docstring); never the rows of ``worker_id``, the caller's own.

    Returns:
        The rows this call claimed, in order.
    """
    with database.session() as session:
        lost = TrialRepository(session).claim_lost(study_id, grace_s=grace_s, alive=worker_id)
    for trial in lost:
        if trial.number is None:
            logger.warning("study %s: a slot reserved by a lost worker was given back", study_id)
            continue
        if trial.optuna_trial_id is not None:
            _fail_in_optuna(database, study, trial.optuna_trial_id, trial.number)
        logger.warning(
            "study %s: trial %d lost with its worker: failed, %s",
            study_id,
            trial.number,
            "its retry queued" if trial.retry_row_id is not None else "its slot released",
        )
    return lost


def repair_optuna(database: Database, study: optuna.Study, study_id: str, grace_s: float) -> int:
    """Tell Optuna the outcome of trials RUNNING there that their row does not back (module
    docstring): the row's outcome once it finished more than ``grace_s`` ago, FAIL when the row
    will never record the trial; returns how many were told."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return 0
    row_ids = {t.number: t.system_attrs.get(ROW_ATTR) for t in running}
    with database.session() as session:
        repository = TrialRepository(session)
        by_id = repository.rows_by_id([i for i in row_ids.values() if isinstance(i, int)])
        untagged = [t.number for t in running if not isinstance(row_ids[t.number], int)]
        by_number = {r.number: r for r in repository.rows(study_id, numbers=untagged)}
    repaired = 0
    for trial in running:
        row_id = row_ids[trial.number]
        if isinstance(row_id, int):
            row = by_id.get(row_id)
            if row is not None and row.optuna_trial_id != trial._trial_id:
                if row.state is RowState.RESERVED:
                    continue  # its worker is between ask and recording it (or just died)
                row = None  # the row went on without this trial: it will never record it
        else:  # created before rows were named on trials, or a WAITING trial ask took
            row = by_number.get(trial.number)
            if row is None and not _started_long_ago(trial, grace_s):
                continue
        if row is None:
            _fail_in_optuna(database, study, trial._trial_id, trial.number)
        elif _finished_long_ago(row, grace_s):
            state = _OPTUNA_STATES[row.state.value]
            values = row.values if state is TrialState.COMPLETE else None
            tell_once(study, trial.number, values, state=state)
        else:
            continue
        repaired += 1
    if repaired:
        logger.warning("study %s: %d Optuna trial(s) told from our rows", study_id, repaired)
    return repaired


def _started_long_ago(trial: FrozenTrial, grace_s: float) -> bool:
    # Optuna stamps trials with the writer's naive local clock.
    started = trial.datetime_start
    return started is not None and datetime.now() - started > timedelta(seconds=grace_s)


def _finished_long_ago(row: TrialRow, grace_s: float) -> bool:
    return row.finished_at is not None and utcnow() - row.finished_at > timedelta(seconds=grace_s)


__all__ = ["STALE_REASON", "fail_lost_trials", "repair_optuna"]

"""Trials of dead workers: failed, re-queued once, their budget slots given back.

A worker is alive while its ``mtl_workers`` row beats (`mtlsearch.worker.heartbeat`); one whose
row is older than ``Settings.stale_after_s``, or says stopped, is dead. Its unfinished trials are
found in our own ``mtl_trials`` table, so a worker killed between reserving a slot and asking,
or between ``ask`` and its first epoch, is covered like one killed mid-training.

Per lost trial, two steps:

1. `storage.TrialRepository.claim_lost`: the row FAIL with `storage.repositories.trials.LOST_REASON`
   and its slot back, in one transaction; a conditional UPDATE, so of several workers (or the
   trial's own, telling it late) exactly one wins.
2. Optuna's public API mirrors it: for a first failure, ``study.add_trial`` of a WAITING copy
   with the same params (as Optuna's ``RetryHeartbeatStaleTrialCallback`` makes one), marked
   with `RETRY_OF_ATTR`, which the next ``ask`` of any worker takes first; then
   ``study.tell(number, state=FAIL, skip_if_finished=True)``.

A process killed anywhere in step 2 (or a teller killed between its row and its tell) leaves
an Optuna trial RUNNING whose row is finished: `repair_optuna`, which every worker's
maintenance runs, tells Optuna what the row says and queues the retry the row promised unless
it is queued already (the retry comes before the tell for that reason: a FAIL is never looked
at again). An
Optuna trial RUNNING with no row at all (a worker killed between ``ask`` and recording it) is
failed and re-queued the same way once it is older than the grace period.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

import optuna
from optuna.trial import FrozenTrial, TrialState

from storage import Database, TrialRepository, TrialRow
from storage.repositories.trials import LOST_REASON, LostTrial

logger = logging.getLogger(__name__)

#: ``fail_reason`` of a trial whose worker was lost (in our row and in Optuna's user attrs).
STALE_REASON = LOST_REASON
#: User attribute of a re-queued trial: the number of the trial it runs again.
RETRY_OF_ATTR = "retry_of"
#: What our finished row states mean to Optuna.
_OPTUNA_STATES = {
    "complete": TrialState.COMPLETE,
    "pruned": TrialState.PRUNED,
    "fail": TrialState.FAIL,
}


def requeue(database: Database, study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a WAITING copy of ``trial`` (same params) that the next ``ask`` takes first,
    unless its retry is queued already (a worker killed after queuing it, before telling the
    trial FAIL, leaves the repair to a peer, which must not queue a second one)."""
    # From the database, not the worker's snapshot: a peer may have queued it a moment ago.
    storage = database.optuna_storage()
    study_id = storage.get_study_id_from_name(study.study_name)
    trials = storage.get_all_trials(study_id, deepcopy=False)
    if any(t.user_attrs.get(RETRY_OF_ATTR) == trial.number for t in trials):
        return
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            user_attrs={RETRY_OF_ATTR: trial.number},
        )
    )


def _fail_in_optuna(
    database: Database, study: optuna.Study, trial: FrozenTrial, retry: bool
) -> None:
    # The retry first: killed between the two, the trial stays RUNNING in Optuna and a peer's
    # `repair_optuna` tells it from its row (and finds the retry queued). The other way round a
    # FAIL with its retry never queued would be left, as no pass looks at finished trials.
    if retry:
        requeue(database, study, trial)
    if trial.state is TrialState.RUNNING:
        storage = database.optuna_storage()
        # Its worker may tell it meanwhile: then it keeps that worker's outcome.
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            storage.set_trial_user_attr(trial._trial_id, "fail_reason", STALE_REASON)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)


def fail_lost_trials(
    database: Database,
    study: optuna.Study,
    study_id: str,
    grace_s: float,
    worker_id: str | None = None,
) -> list[LostTrial]:
    """Fail the study's trials whose worker is dead (see the module docstring); never those
    of ``worker_id``, the caller's own.

    Returns:
        The trials this call claimed, in order.
    """
    with database.session() as session:
        lost = TrialRepository(session).claim_lost(study_id, grace_s=grace_s, alive=worker_id)
    for trial in lost:
        if trial.optuna_trial_id is not None:
            frozen = database.optuna_storage().get_trial(trial.optuna_trial_id)
            _fail_in_optuna(database, study, frozen, trial.retry)
        logger.warning(
            "study %s: trial %s lost with its worker: failed%s, slot released",
            study_id,
            "(not asked yet)" if trial.number is None else trial.number,
            ", re-queued" if trial.retry else "",
        )
    return lost


def repair_optuna(database: Database, study: optuna.Study, study_id: str, grace_s: float) -> int:
    """Tell Optuna the outcome of trials RUNNING there whose row finished more than
    ``grace_s`` ago (or that have no row and started that long ago); returns how many."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return 0
    with database.session() as session:
        numbers = [trial.number for trial in running]
        rows = {row.number: row for row in TrialRepository(session).rows(study_id, numbers=numbers)}
    now = datetime.now()  # Optuna stamps trials with the writer's naive local clock
    repaired = 0
    for trial in running:
        row = rows.get(trial.number)
        if row is None:
            started = trial.datetime_start
            if started is None or now - started < timedelta(seconds=grace_s):
                continue
            # No row: its worker died between ask and recording it; its reservation is
            # reclaimed by `fail_lost_trials`, only Optuna's trial is left.
            retry = trial.user_attrs.get(RETRY_OF_ATTR) is None
            _fail_in_optuna(database, study, trial, retry)
            repaired += 1
            continue
        if not _finished_long_ago(row, grace_s):
            continue
        state = _OPTUNA_STATES[row.state.value]
        values = row.values if state is TrialState.COMPLETE else None
        if row.retried:  # the retry first, as in `_fail_in_optuna`
            requeue(database, study, trial)
        study.tell(trial.number, values, state=state, skip_if_finished=True)
        repaired += 1
    if repaired:
        logger.warning("study %s: %d Optuna trial(s) told from our rows", study_id, repaired)
    return repaired


def _finished_long_ago(row: TrialRow, grace_s: float) -> bool:
    from storage.models import utcnow

    return row.finished_at is not None and utcnow() - row.finished_at > timedelta(seconds=grace_s)


__all__ = ["RETRY_OF_ATTR", "STALE_REASON", "fail_lost_trials", "repair_optuna", "requeue"]

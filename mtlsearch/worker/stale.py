"""Fail the trials of dead workers, re-queue them once, and give their budget slots back.

A trial is *stale* when it is RUNNING and either its heartbeat is older than the storage's
grace period (``Settings.stale_after_s``), or it has no heartbeat row at all and started longer
ago than that: a worker killed between ``study.ask()`` and its first beat leaves such a trial,
which Optuna's own ``fail_stale_trials`` never fails (it only looks at trials with a heartbeat
row), so the study would never complete.

Each stale trial is handled in **one database transaction**, so a worker killed in the middle
loses nothing and repeats nothing:

1. a conditional ``UPDATE ... SET state = FAIL WHERE state = RUNNING``: exactly one process
   wins the trial (its own worker telling it, or another worker failing it); the others stop;
2. the winner's ``fail_reason`` (`STALE_REASON`), so a trial that completed meanwhile never
   carries the stale reason (a finished trial's attributes cannot be changed afterwards);
3. the budget slot back (``mtl_studies.trials_reserved - 1``, the row ``release_trial`` updates);
4. the WAITING retry with the same params (as ``RetryFailedTrialCallback(max_retry=1)`` makes
   it: ``failed_trial`` and ``retry_history`` system attributes), unless the trial was a retry
   already; the next ``study.ask()`` of any worker picks it up first.

Why not Optuna's public ``optuna.storages.fail_stale_trials`` with the retry callback: it fails
every stale trial first and calls the callback afterwards, one transaction each, and does not
say which trials it failed; a kill between the FAIL and the callback loses the retry, and the
budget slot (ours, not Optuna's) would need yet another transaction. It also misses trials
without a heartbeat row. The one transaction here needs Optuna's private ORM models (pinned by
``optuna<6``, as `storage.optuna_attrs` does).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from storage.models import StudyRecord
from storage.repositories._common import rowcount

logger = logging.getLogger(__name__)

#: ``fail_reason`` of a trial whose worker stopped beating.
STALE_REASON = (
    "worker lost: no heartbeat within the grace period; retried once with the same params"
)
#: Retries of one stale trial (``RetryFailedTrialCallback``'s ``max_retry``).
MAX_RETRY = 1


@dataclass(frozen=True)
class StaleTrial:
    """A stale trial that this process failed (and released, and re-queued if `retried`)."""

    trial_id: int
    number: int
    retried: bool


def _backend(storage: BaseStorage) -> RDBStorage | None:
    # `study._storage` is Optuna's write-through cache around the RDB storage.
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def grace_period_s(storage: RDBStorage) -> float:
    """The storage's grace period (Optuna's default: two heartbeat intervals)."""
    if storage.grace_period is not None:
        return float(storage.grace_period)
    assert storage.heartbeat_interval is not None
    return 2.0 * storage.heartbeat_interval


def stale_trial_ids(storage: RDBStorage, optuna_study_id: int) -> list[int]:
    """RUNNING trials of the study whose heartbeat is too old, or that never beat and started
    more than the grace period ago."""
    from optuna.storages._rdb import models

    grace = timedelta(seconds=grace_period_s(storage))
    trials, beats = models.TrialModel.__table__, models.TrialHeartbeatModel.__table__
    trial, beat = trials.c, beats.c
    with storage.engine.connect() as connection:
        # Heartbeats are stamped with the database's clock, ``datetime_start`` with the
        # writer's (Optuna's ``datetime.now()``): compare each with its own clock.
        db_now = connection.execute(sa.select(sa.func.now())).scalar_one().replace(tzinfo=None)
        rows = connection.execute(
            sa.select(trial.trial_id, trial.datetime_start, beat.heartbeat)
            .select_from(trials.outerjoin(beats, beat.trial_id == trial.trial_id))
            .where(trial.study_id == optuna_study_id, trial.state == TrialState.RUNNING)
            .order_by(trial.trial_id)
        ).all()
    py_now = datetime.now()
    stale = []
    for trial_id, started, heartbeat in rows:
        if heartbeat is not None:
            if db_now - heartbeat > grace:
                stale.append(trial_id)
        elif started is None or py_now - started > grace:
            stale.append(trial_id)
    return stale


def fail_stale_trial(
    storage: RDBStorage, optuna_study_id: int, trial_id: int, study_id: str | None
) -> StaleTrial | None:
    """Fail one stale trial, write its reason, release its slot of study ``study_id`` and
    re-queue it, all in one transaction; None if another process finished it first."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    frozen = storage.get_trial(trial_id)
    system_attrs: dict[str, Any] = {
        "failed_trial": frozen.number,
        "retry_history": [],
        **frozen.system_attrs,
    }
    system_attrs["retry_history"] = [*system_attrs["retry_history"], frozen.number]
    retry = len(system_attrs["retry_history"]) <= MAX_RETRY
    with _create_scoped_session(storage.scoped_session) as session:
        won = rowcount(
            session,
            sa.update(models.TrialModel)
            .where(
                models.TrialModel.trial_id == trial_id,
                models.TrialModel.state == TrialState.RUNNING,
            )
            .values(state=TrialState.FAIL, datetime_complete=datetime.now())
            .execution_options(synchronize_session=False),
        )
        if won != 1:
            return None
        # The winner's reason only (replacing one its worker may have written).
        attr = models.TrialUserAttributeModel
        session.execute(sa.delete(attr).where(attr.trial_id == trial_id, attr.key == "fail_reason"))
        session.add(attr(trial_id=trial_id, key="fail_reason", value_json=json.dumps(STALE_REASON)))
        if study_id is not None:
            session.execute(
                sa.update(StudyRecord)
                .where(StudyRecord.id == study_id, StudyRecord.trials_reserved > 0)
                .values(trials_reserved=StudyRecord.trials_reserved - 1)
                .execution_options(synchronize_session=False)
            )
        if retry:
            user_attrs = {k: v for k, v in frozen.user_attrs.items() if k != "fail_reason"}
            template = optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=frozen.params,
                distributions=frozen.distributions,
                user_attrs=user_attrs,
                system_attrs=system_attrs,
            )
            # Optuna's scoped session is thread-local: this runs in (and commits) the same
            # session and transaction as the updates above.
            storage._create_new_trial(optuna_study_id, template)
    return StaleTrial(trial_id=trial_id, number=frozen.number, retried=retry)


def fail_stale_trials(study: optuna.Study, study_id: str | None = None) -> list[StaleTrial]:
    """Fail the stale trials of ``study`` that no other process finished first, one
    transaction per trial (see the module docstring); ``study_id`` is the ``mtl_studies`` id
    whose budget slot each one gives back (None: no slot to give back).

    Returns:
        The trials this call failed, in order.
    """
    storage = _backend(study._storage)
    if storage is None or storage.heartbeat_interval is None:
        return []
    failed = []
    for trial_id in stale_trial_ids(storage, study._study_id):
        stale = fail_stale_trial(storage, study._study_id, trial_id, study_id)
        if stale is None:
            continue  # its own worker told it, or another worker failed it first
        failed.append(stale)
        logger.warning(
            "trial %d of study %r was stale (worker lost): failed%s, slot released",
            stale.number,
            study.study_name,
            ", re-queued" if stale.retried else "",
        )
    return failed


__all__ = [
    "MAX_RETRY",
    "STALE_REASON",
    "StaleTrial",
    "fail_stale_trial",
    "fail_stale_trials",
    "grace_period_s",
    "stale_trial_ids",
]

"""Fail the trials of dead workers, re-queue them once, and give their budget slots back.

Optuna's `optuna.storages.fail_stale_trials` fails every RUNNING trial whose heartbeat is older
than the storage's grace period and calls the storage's stale-trial callback on each (ours is
`~optuna.storages.RetryHeartbeatStaleTrialCallback` with ``max_retry=1``: a WAITING copy with
the same params, which the next ``study.ask()`` of any worker picks up first). It does not say
*which* trials this process failed, and the budget slot each of them holds must be given back
exactly once (`StudyRepository.release_trial`), or the study would end one trial short per
dead worker.

`fail_stale_trials` below is the same procedure that returns the trials this call failed. Only
one process can win the FAIL of a trial (``set_trial_state_values`` updates a RUNNING trial
only; the loser gets `~optuna.exceptions.UpdateFinishedTrialError`), so only the winner runs the
callback and releases the slot: no trial is retried twice and no slot released twice.
"""

from __future__ import annotations

import copy
import logging
import warnings

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

logger = logging.getLogger(__name__)

#: ``fail_reason`` of a trial whose worker stopped beating.
STALE_REASON = (
    "worker lost: no heartbeat within the grace period; retried once with the same params"
)


def fail_stale_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Fail the stale trials of ``study`` that no other process failed first.

    Each one gets the user attribute ``fail_reason`` (`STALE_REASON`) and goes through the
    storage's stale-trial callback (the re-queue).

    Returns:
        The trials this call failed (as they were when failed); release one budget slot each.
    """
    storage = study._storage
    if not isinstance(storage, BaseHeartbeat) or not is_heartbeat_enabled(storage):
        return []
    won: list[int] = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):
        try:
            # Written while the trial still runs (a finished trial's attributes are frozen).
            # A process that loses the FAIL below wrote the same text: harmless.
            storage.set_trial_user_attr(trial_id, "fail_reason", STALE_REASON)
            if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                won.append(trial_id)
        except UpdateFinishedTrialError:
            continue  # another worker failed it first (or its own worker finished it)
    callback = storage.get_heartbeat_stale_trial_callback()
    failed: list[FrozenTrial] = []
    for trial_id in won:
        trial = copy.deepcopy(storage.get_trial(trial_id))
        failed.append(trial)
        logger.warning(
            "trial %d of study %r was stale (worker lost); failed it",
            trial.number,
            study.study_name,
        )
        if callback is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                callback(study, copy.deepcopy(trial))
    return failed


__all__ = ["STALE_REASON", "fail_stale_trials"]

"""Asking a batch of trials of one study, in a few transactions per batch instead of four per trial.

`ask_batch` does, for up to n trials of one study (the room in the runner's queue):

1. one transaction reserves the budget slots: the study's queued retries first, then fresh
   slots with new ``mtl_trials`` rows (`storage.TrialRepository.reserve_many`);
2. each slot becomes an Optuna trial, created with its row's id as the system attribute
   `ROW_ATTR` in the trial's own INSERT (`storage.optuna_snapshot.SnapshotStorage.creating_from`):
   a fresh slot through ``study.ask()`` (the sampler reads the study once for the batch, and
   `BatchTPESampler` fits once for it: `BatchTPESampler.asking_batch`), a
   retry with the lost trial's params and distributions fixed, as Optuna's
   ``RetryHeartbeatStaleTrialCallback`` makes one; each config is then suggested
   (`mtlsearch.search.space`);
3. one read transaction finds the trials that repeat an earlier configuration (the study's
   rows, and the trials asked before them in this batch) and gives each repeat a seed of its
   own (`mtlsearch.search.repeats.distinct_seed`);
4. one transaction records every asked trial in its row, with its config and seed
   (reserved -> running).

Slots reserved and not asked (the worker stops, the study's time is up, ask fails) are given
back at once (`storage.TrialRepository.give_back`). A row a peer took from this worker
meanwhile (it looked dead) is not started, and its trial is failed in Optuna. A process killed
anywhere in between leaves rows a peer claims and Optuna trials that
`mtlsearch.worker.stale.repair_optuna` fails by their `ROW_ATTR`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtl_core.config import TrialConfig
from mtlsearch.search.batch_tpe import BatchTPESampler
from mtlsearch.search.repeats import distinct_seed
from mtlsearch.search.space import normalised_weights, suggest_trial_config
from mtlsearch.worker.outage import DatabaseOutage
from mtlsearch.worker.outcomes import tell_once
from storage import Database, NotFoundError, TrialRepository
from storage.models import TrialKind, params_key
from storage.repositories.trials import Reservation, TrialStateError

if TYPE_CHECKING:
    from mtlsearch.worker.studies import StudyContext

logger = logging.getLogger(__name__)

#: System attribute of every Optuna trial a worker creates: the id of its ``mtl_trials`` row.
ROW_ATTR = "mtlsearch:row_id"
#: User attribute of a retry (for the dashboard): the number of the lost trial it runs again.
RETRY_OF_ATTR = "retry_of"


@dataclass(eq=False)
class Asked:
    """One asked trial and its row; ``failure`` when its config could not be suggested. A
    confirmation run has no Optuna trial (``trial`` None): its config comes from its row."""

    row_id: int
    trial: optuna.Trial | None
    config: TrialConfig | None
    failure: Exception | None = None


class StudyGone(Exception):
    """The study's Optuna study was deleted (or renamed) underneath the worker."""


def ask_batch(
    database: Database,
    study: StudyContext,
    n: int,
    *,
    worker_id: str,
    device: str,
    go_on: Callable[[], bool],
    outage: DatabaseOutage | None = None,
    test_hook: str | None = None,
) -> list[Asked]:
    """Reserve up to ``n`` slots of ``study`` and ask a trial for each (module docstring).

    Args:
        go_on: checked before each ask; False ends the batch (the worker stops, or the
            study's time is up).
        outage: a batch that fails half-way (the database went away) waits through it to give
            its slots back; without one the give-back is tried once.
        test_hook: ``"exit-after-ask"`` kills the process after the first ask (chaos tests).

    Returns:
        The trials recorded in their rows, in order (an empty list: no budget left).

    Raises:
        StudyGone: the Optuna study is gone (the batch's rows are given back).
    """
    with database.session() as session:
        reservations = TrialRepository(session).reserve_many(study.id, worker_id, n)
    study.reserved_hint += sum(1 for r in reservations if r.retry_of is None)
    row_ids = [r.row_id for r in reservations]
    asked: list[Asked] = []
    try:
        with _one_fit(study.study.sampler):
            for reservation in reservations:
                if not go_on():
                    break
                if reservation.kind is TrialKind.CONFIRMATION:
                    asked.append(_confirmation(reservation, device))
                    continue
                try:
                    trial = new_trial(database, study, reservation)
                except KeyError:
                    raise StudyGone(study.id) from None
                if test_hook == "exit-after-ask":
                    os._exit(3)  # chaos test: die between ask() and recording the trial
                asked.append(_suggest(reservation.row_id, trial, study, device))
        unused = row_ids[len(asked) :]
        if unused:
            give_back(database, unused, "not asked: the worker stopped or the study's time is up")
        _distinct_seeds(database, study, asked)
        return _start_rows(database, study, asked)
    except BaseException as exc:
        _abandon(database, study, row_ids, asked, f"ask failed: {exc}", outage)
        raise


def _one_fit(sampler: optuna.samplers.BaseSampler) -> contextlib.AbstractContextManager[None]:
    """The batch's asks as one sampler fit, where the sampler can (`BatchTPESampler`)."""
    if isinstance(sampler, BatchTPESampler):
        return sampler.asking_batch()
    return contextlib.nullcontext()


def new_trial(database: Database, study: StudyContext, reservation: Reservation) -> optuna.Trial:
    """The Optuna trial of a reserved slot, created with its row id (module docstring, 2)."""
    row = {ROW_ATTR: reservation.row_id}
    if reservation.retry_of is None or reservation.source_trial_id is None:
        template = optuna.trial.create_trial(state=TrialState.RUNNING, system_attrs=row)
        with study.storage.creating_from(template):
            return study.study.ask()
    lost = database.optuna_storage().get_trial(reservation.source_trial_id)
    template = _retry_template(lost, reservation.retry_of, reservation.row_id)
    # Created directly, not through ask(): ask() would hand out a WAITING trial first, and
    # every parameter of a retry is fixed, so there is nothing to sample.
    trial_id = study.storage.create_new_trial(study.optuna_study_id, template)
    return optuna.Trial(study.study, trial_id)


def _confirmation(reservation: Reservation, device: str) -> Asked:
    """A confirmation run as asked: the config its row holds, on this worker's device."""
    try:
        config = TrialConfig.model_validate({**(reservation.config or {}), "device": device})
    except ValueError as exc:
        return Asked(reservation.row_id, None, None, exc)
    return Asked(reservation.row_id, None, config)


def _retry_template(lost: FrozenTrial, retry_of: int, row_id: int) -> FrozenTrial:
    """A RUNNING copy of ``lost`` with its params, distributions and system attributes, as
    Optuna's ``RetryHeartbeatStaleTrialCallback`` queues one (``fixed_params`` tells samplers
    such as the grid's that the point is given)."""
    return optuna.trial.create_trial(
        state=TrialState.RUNNING,
        params=lost.params,
        distributions=lost.distributions,
        user_attrs={RETRY_OF_ATTR: retry_of},
        system_attrs={**lost.system_attrs, "fixed_params": lost.params, ROW_ATTR: row_id},
    )


def give_back(database: Database, row_ids: list[int], reason: str) -> None:
    """Give back reserved slots that never became trials, in one transaction (a fresh slot's
    row goes, a retry is queued again: `storage.TrialRepository.give_back`)."""
    with database.session() as session:
        given = TrialRepository(session).give_back(row_ids)
    if given:
        logger.info("%d reserved slot(s) given back: %s", given, reason)


def _abandon(
    database: Database,
    study: StudyContext,
    row_ids: list[int],
    asked: list[Asked],
    reason: str,
    outage: DatabaseOutage | None,
) -> None:
    """A batch that cannot go on: every slot back, and its asked trials failed in Optuna (a
    reserved or running row of a live worker would keep the study from completing). A row
    started already (a commit whose answer the database never sent) is failed."""

    def undo() -> None:
        with database.session() as session:
            repository = TrialRepository(session)
            repository.give_back(row_ids)
            for item in asked:
                repository.finish(item.row_id, state="fail", reason=reason)

    if outage is None:
        undo()
    else:
        outage.call(f"giving back the slots of a batch of study {study.id}", undo)
    for item in asked:
        if item.trial is None:
            continue
        with contextlib.suppress(Exception):  # the Optuna study may be gone
            tell_once(study.study, item.trial, state=TrialState.FAIL)


def _suggest(row_id: int, trial: optuna.Trial, study: StudyContext, device: str) -> Asked:
    try:
        config = suggest_trial_config(trial, study.spec, study.experiment, device)
    except Exception as exc:
        return Asked(row_id, trial, None, exc)
    return Asked(row_id, trial, config)


def _distinct_seeds(database: Database, study: StudyContext, asked: list[Asked]) -> None:
    """Give each trial that repeats an earlier configuration a seed of its own: the earlier
    trial is a row of the study or one asked before it here (one read for the batch).
    Confirmation runs have their seeds already."""
    searched = [item for item in asked if item.config is not None and item.trial is not None]
    if not searched:
        return
    with database.session() as session:
        stored = TrialRepository(session).numbers_with_params(
            study.id, [item.trial.params for item in searched if item.trial is not None]
        )
    first_here: dict[str, int] = {}
    # Outside the read: a repeat writes its seed to Optuna (SQLite has one writer at a time).
    for item in searched:
        trial, config = item.trial, item.config
        assert trial is not None and config is not None  # what `searched` holds
        key = params_key(trial.params)
        here = first_here.setdefault(key, trial.number)
        earlier = [n for n in [*stored.get(key, []), here] if n < trial.number]
        item.config = distinct_seed(trial, config, min(earlier, default=None))


def _start_rows(database: Database, study: StudyContext, asked: list[Asked]) -> list[Asked]:
    """Record every asked trial in its row, in one transaction; a trial whose row a peer
    took meanwhile is failed in Optuna and left out."""
    names = study.experiment.task_names
    lost: list[Asked] = []
    with database.session() as session:
        repository = TrialRepository(session)
        for item in asked:
            trial, config = item.trial, item.config
            try:
                repository.start(
                    item.row_id,
                    number=trial.number if trial is not None else None,
                    optuna_trial_id=trial._trial_id if trial is not None else None,
                    params=dict(trial.params) if trial is not None else None,
                    config=config.model_dump(mode="json") if config is not None else None,
                    weights_normalised=(
                        normalised_weights(config.weights, names) if config is not None else None
                    ),
                    seed=config.seed if config is not None else None,
                )
            except (NotFoundError, TrialStateError) as exc:
                name = f"trial {trial.number}" if trial else f"confirmation run {item.row_id}"
                logger.warning("%s of study %s: %s", name, study.id, exc)
                lost.append(item)
    for item in lost:
        if item.trial is not None:
            tell_once(study.study, item.trial, state=TrialState.FAIL)
    return [item for item in asked if item not in lost]


__all__ = ["RETRY_OF_ATTR", "ROW_ATTR", "Asked", "StudyGone", "ask_batch", "give_back", "new_trial"]

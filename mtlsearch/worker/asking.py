"""Asking a batch of trials of one study, in a few transactions per batch instead of four per trial.

`ask_batch` does, for up to n trials of one study (the room in the runner's queue):

1. one transaction reserves the budget slots and adds their ``mtl_trials`` rows
   (`storage.TrialRepository.reserve_many`);
2. Optuna is asked and each trial's config suggested (`mtlsearch.search.space`); the sampler
   reads the study once for the batch (`storage.optuna_snapshot.SnapshotStorage`);
3. one read transaction finds the trials that repeat an earlier configuration (the study's
   rows, and the trials asked before them in this batch) and gives each repeat a seed of its
   own (`mtlsearch.search.repeats.distinct_seed`);
4. one transaction records every asked trial in its row (reserved -> running).

Rows reserved and not asked (the worker stops, the study's time is up, ask fails) are failed
at once, which gives their slots back. A row a peer failed as lost meanwhile (this worker
looked dead) is not started, and its trial is failed in Optuna.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from mtlsearch.search.repeats import distinct_seed
from mtlsearch.search.space import normalised_weights, suggest_trial_config
from mtlsearch.worker.stale import RETRY_OF_ATTR
from storage import Database, TrialRepository
from storage.repositories.trials import TrialStateError

if TYPE_CHECKING:
    from mtl_core.config import TrialConfig
    from mtlsearch.worker.studies import StudyContext

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class Asked:
    """One asked trial and its row; ``failure`` when its config could not be suggested."""

    row_id: int
    trial: optuna.Trial
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
    test_hook: str | None = None,
) -> list[Asked]:
    """Reserve up to ``n`` slots of ``study`` and ask a trial for each (module docstring).

    Args:
        go_on: checked before each ask; False ends the batch (the worker stops, or the
            study's time is up).
        test_hook: ``"exit-after-ask"`` kills the process after the first ask (chaos tests).

    Returns:
        The trials recorded in their rows, in order (an empty list: no budget left).

    Raises:
        StudyGone: the Optuna study is gone (the batch's rows are given back).
    """
    with database.session() as session:
        row_ids = TrialRepository(session).reserve_many(study.id, worker_id, n)
    study.reserved_hint += len(row_ids)
    asked: list[Asked] = []
    try:
        for row_id in row_ids:
            if not go_on():
                break
            try:
                trial = study.study.ask()
            except KeyError:
                raise StudyGone(study.id) from None
            if test_hook == "exit-after-ask":
                os._exit(3)  # chaos test: die between ask() and recording the trial
            asked.append(_suggest(row_id, trial, study, device))
    except BaseException as exc:
        _abandon(database, study, row_ids, asked, f"ask failed: {exc}")
        raise
    unused = row_ids[len(asked) :]
    if unused:
        give_back(database, unused, "not asked: the worker stopped or the study's time is up")
    _distinct_seeds(database, study, asked)
    return _start_rows(database, study, asked)


def give_back(database: Database, row_ids: list[int], reason: str) -> None:
    """Fail reserved rows that never became trials (their slots go back), in one transaction."""
    with database.session() as session:
        repository = TrialRepository(session)
        for row_id in row_ids:
            repository.finish(row_id, state="fail", reason=reason)


def _abandon(
    database: Database, study: StudyContext, row_ids: list[int], asked: list[Asked], reason: str
) -> None:
    """A batch that cannot go on: every row back, and its asked trials failed in Optuna (a
    running row of a live worker would keep the study from completing)."""
    give_back(database, row_ids, reason)
    for item in asked:
        with contextlib.suppress(Exception):  # the Optuna study may be gone
            study.study.tell(item.trial, state=TrialState.FAIL, skip_if_finished=True)


def _suggest(row_id: int, trial: optuna.Trial, study: StudyContext, device: str) -> Asked:
    try:
        config = suggest_trial_config(trial, study.spec, study.experiment, device)
    except Exception as exc:
        return Asked(row_id, trial, None, exc)
    return Asked(row_id, trial, config)


def _distinct_seeds(database: Database, study: StudyContext, asked: list[Asked]) -> None:
    """Give each trial that repeats an earlier configuration a seed of its own: the earlier
    trial is a row of the study (one read for the batch) or one asked before it here."""
    first_here: dict[str, int] = {}
    originals: list[int | None] = []
    with database.session() as session:
        repository = TrialRepository(session)
        for item in asked:
            if item.config is None:
                originals.append(None)
                continue
            number = item.trial.number
            stored = repository.first_with_params(study.id, item.trial.params, before=number)
            key = repr(sorted(item.trial.params.items()))
            here = first_here.setdefault(key, number)
            candidates = [n for n in (stored, here) if n is not None and n < number]
            originals.append(min(candidates, default=None))
    # Outside the read: a repeat writes its seed to Optuna (SQLite has one writer at a time).
    for item, original in zip(asked, originals, strict=True):
        if item.config is not None:
            item.config = distinct_seed(item.trial, item.config, original)


def _start_rows(database: Database, study: StudyContext, asked: list[Asked]) -> list[Asked]:
    """Record every asked trial in its row, in one transaction; a trial whose row a peer
    failed meanwhile is failed in Optuna and left out."""
    names = study.experiment.task_names
    lost: list[Asked] = []
    with database.session() as session:
        repository = TrialRepository(session)
        for item in asked:
            trial, config = item.trial, item.config
            retry_of = trial.user_attrs.get(RETRY_OF_ATTR)
            try:
                repository.start(
                    item.row_id,
                    number=trial.number,
                    optuna_trial_id=trial._trial_id,
                    params=dict(trial.params),
                    config=config.model_dump(mode="json") if config is not None else None,
                    weights_normalised=(
                        normalised_weights(config.weights, names) if config is not None else None
                    ),
                    retry_of=retry_of if isinstance(retry_of, int) else None,
                )
            except TrialStateError as exc:
                logger.warning("trial %d of study %s: %s", trial.number, study.id, exc)
                lost.append(item)
    for item in lost:
        study.study.tell(item.trial, state=TrialState.FAIL, skip_if_finished=True)
    return [item for item in asked if item not in lost]


__all__ = ["Asked", "StudyGone", "ask_batch", "give_back"]

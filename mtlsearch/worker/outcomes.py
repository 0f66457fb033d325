"""What a finished trial writes: its objective values, our row, Optuna's mirror, the study's end.

The teller (`mtlsearch.worker.teller`) calls these on its thread, in this order, for every job
that leaves training (`Teller.record_outcome`):

1. `settle`: the final outcome and objective values (a COMPLETE without finite values fails);
2. `write_row`: our ``mtl_trials`` row, the record the REST and ``best`` read, with what
   determines the run (seed, ``num_slots``) and the weights the strategy applied (a FAIL gives
   its budget slot back in the same transaction); False when a peer failed the row as lost
   first;
3. `mirror_to_optuna`: one user attribute for the dashboard, then Optuna's ``tell``;
4. `complete_if_done`: the study completed (with its ``best`` artifact) once its budget or time
   is used and no trial of any worker is reserved or running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from mtlsearch.search.best import best_record_from_rows
from mtlsearch.search.objective import objective_values
from mtlsearch.search.results import TrialOutcome
from mtlsearch.search.space import normalised_weights
from mtlsearch.worker.decisions import Outcome, checked_outcome
from mtlsearch.worker.outage import unreachable
from storage import Database, TrialRepository

if TYPE_CHECKING:
    from mtlsearch.worker.jobs import Job
    from mtlsearch.worker.studies import StudyContext

logger = logging.getLogger(__name__)

#: Our row state for each Optuna end state.
ROW_STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "fail",
}


def settle(job: Job, outcome: Outcome) -> tuple[Outcome, list[float] | None]:
    """The final outcome and objective values (a COMPLETE without finite values fails)."""
    if outcome.state is not TrialState.COMPLETE:
        return outcome, None
    assert outcome.result is not None
    context = job.study
    try:
        values = objective_values(
            outcome.result, context.spec, context.experiment, context.baselines
        )
        outcome = checked_outcome(outcome, values)
    except ValueError as exc:
        outcome, values = checked_outcome(outcome, None, str(exc)), None
    return outcome, values if outcome.state is TrialState.COMPLETE else None


def outcome_record(job: Job, outcome: Outcome) -> TrialOutcome:
    """What the trial recorded: its result, else the config it was asked with."""
    if outcome.result is not None:
        recorded = TrialOutcome.from_result(outcome.result)
        weights = outcome.result.config.weights
    elif job.config is not None:
        recorded = TrialOutcome(config=job.config.model_dump(mode="json"), seed=job.config.seed)
        weights = job.config.weights
    else:
        return TrialOutcome()
    names = job.study.experiment.task_names
    recorded = dataclasses.replace(recorded, weights_normalised=normalised_weights(weights, names))
    return recorded.json_safe()


def write_row(
    database: Database,
    job: Job,
    outcome: Outcome,
    values: list[float] | None,
    recorded: TrialOutcome,
) -> tuple[bool, Outcome, list[float] | None, TrialOutcome]:
    """Finish the job's row; returns whether this worker won it and what was written.

    A row that cannot be written as the outcome says (a value the database refuses) is
    failed instead: a running row would keep its study from ever completing. A database that
    cannot be reached is raised (the teller waits for it: `mtlsearch.worker.outage`).
    """
    try:
        with database.session() as session:
            won = TrialRepository(session).finish(
                job.row_id,
                state=ROW_STATES[outcome.state],
                values=values,
                reason=outcome.reason,
                config=recorded.config,
                weights_normalised=recorded.weights_normalised,
                val_metrics=recorded.val_metrics,
                test_metrics=recorded.test_metrics,
                strategy_weights=recorded.strategy_weights,
                weights_trajectory=recorded.weights_trajectory,
                epochs_run=recorded.epochs_run,
                seed=recorded.seed,
                num_slots=recorded.num_slots,
            )
        return won, outcome, values, recorded
    except Exception as exc:
        if unreachable(exc):
            raise
        logger.exception("could not record trial %d of study %s", job.trial.number, job.study.id)
        failed = Outcome(TrialState.FAIL, reason=f"could not record its outcome: {exc}")
        with database.session() as session:
            won = TrialRepository(session).finish(job.row_id, state="fail", reason=failed.reason)
        return won, failed, None, TrialOutcome()


def tell_once(
    study: optuna.Study,
    trial: optuna.Trial | int,
    values: list[float] | None = None,
    *,
    state: TrialState,
) -> None:
    """Optuna's ``tell`` as a mirror write: a trial finished already (by a peer, or from its
    row by `mtlsearch.worker.stale.repair_optuna`) keeps what it was told first.

    ``skip_if_finished`` alone is not enough: it reads this worker's snapshot of the study
    (`storage.optuna_snapshot`), which may not have seen the peer's tell yet.
    """
    with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
        study.tell(trial, values, state=state, skip_if_finished=True)


def mirror_to_optuna(
    job: Job, outcome: Outcome, values: list[float] | None, recorded: TrialOutcome
) -> None:
    """Tell Optuna, after one user attribute for the dashboard (each write is a round trip):
    why a trial failed, or its per-task validation metrics; the rest is in our row."""
    trial = job.trial
    try:
        if outcome.state is TrialState.FAIL and outcome.reason is not None:
            trial.set_user_attr("fail_reason", outcome.reason)
        elif recorded.val_metrics is not None:
            trial.set_user_attr("val_metrics", recorded.val_metrics)
        tell_once(job.study.study, trial, values, state=outcome.state)
    except optuna.exceptions.UpdateFinishedTrialError as exc:
        logger.warning("trial %d of study %s: %s", trial.number, job.study.id, exc)


def complete_if_done(database: Database, context: StudyContext) -> bool:
    """Mark the study completed (and store its ``best``) if its budget or time is used up and
    no trial of any worker is reserved or running; True if this call did it
    (`storage.TrialRepository.complete_if_done`: one conditional UPDATE)."""
    time_up = not context.time_left()

    def best(repository: TrialRepository) -> dict[str, object] | None:
        rows = repository.rows(context.id, states=("complete",))
        return best_record_from_rows(rows, context.spec, context.experiment, context.baselines)

    with database.session() as session:
        repository = TrialRepository(session)
        changed = repository.complete_if_done(
            context.id, time_up=time_up, best=lambda: best(repository)
        )
    if changed:
        logger.info("study %s completed", context.id)
    return changed


def log_outcome(job: Job, outcome: Outcome, values: list[float] | None) -> None:
    number, study_id = job.trial.number, job.study.id
    if outcome.state is TrialState.COMPLETE:
        shown = ", ".join(f"{v:.4g}" for v in values or [])
        logger.info("trial %d of study %s complete: %s", number, study_id, shown)
    elif outcome.state is TrialState.PRUNED:
        logger.info("trial %d of study %s pruned: %s", number, study_id, outcome.reason)
    else:
        logger.warning("trial %d of study %s failed: %s", number, study_id, outcome.reason)


__all__ = [
    "ROW_STATES",
    "complete_if_done",
    "log_outcome",
    "mirror_to_optuna",
    "outcome_record",
    "settle",
    "tell_once",
    "write_row",
]

"""What a finished trial writes: its objective values, our row, Optuna's mirror, the study's end.

The teller (`mtlsearch.worker.teller`) calls these on its thread, in this order, for every job
that leaves training (`Teller.record_outcome`):

1. `settle`: the final outcome and objective values (a COMPLETE without finite values fails);
2. `write_row`: our ``mtl_trials`` row, the record the REST and ``best`` read, with what
   determines the run (seed, ``num_slots``) and the weights the strategy applied (a FAIL gives
   its budget slot back in the same transaction); False when a peer failed the row as lost
   first;
3. `mirror_to_optuna`: one user attribute for the dashboard (two for a population member),
   then Optuna's ``tell``;
4. `complete_if_done`: once its budget or time is used and no search trial of any worker is
   unfinished, the study's best are queued for confirmation; once those have run, the study
   is completed (with its ``best`` artifact).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from mtlsearch.search.answer import best_answer
from mtlsearch.search.confirmation import plan
from mtlsearch.search.objective import objective_values
from mtlsearch.search.results import TrialOutcome
from mtlsearch.search.space import normalised_weights
from mtlsearch.worker.decisions import Outcome, checked_outcome
from mtlsearch.worker.outage import unreachable
from storage import Database, TrialRepository
from storage.models import FailureKind
from storage.repositories.trials import Completion

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
                failure_kind=outcome.failure_kind,
                population=recorded.population,
            )
        return won, outcome, values, recorded
    except Exception as exc:
        if unreachable(exc):
            raise
        logger.exception("could not record %s of study %s", job.label, job.study.id)
        failed = Outcome(
            TrialState.FAIL,
            reason=f"could not record its outcome: {exc}",
            failure_kind=FailureKind.ERROR,
        )
        with database.session() as session:
            won = TrialRepository(session).finish(
                job.row_id, state="fail", reason=failed.reason, failure_kind=FailureKind.ERROR
            )
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
    why a trial failed, or its per-task validation metrics; and a population member's
    ``population`` (its weights changed during training: the config alone misleads). The rest
    is in our row."""
    trial = job.trial
    if trial is None:
        return  # a confirmation run: our row is its only record
    try:
        if outcome.state is TrialState.FAIL and outcome.reason is not None:
            trial.set_user_attr("fail_reason", outcome.reason)
        elif recorded.val_metrics is not None:
            trial.set_user_attr("val_metrics", recorded.val_metrics)
        if recorded.population is not None:
            trial.set_user_attr("population", recorded.population)
        tell_once(job.study.study, trial, values, state=outcome.state)
    except optuna.exceptions.UpdateFinishedTrialError as exc:
        logger.warning("%s of study %s: %s", job.label, job.study.id, exc)


def complete_if_done(database: Database, context: StudyContext) -> Completion:
    """End the study's search or the study (`storage.TrialRepository.complete_if_done`, one
    conditional UPDATE each): once its budget or time is used and no search trial of any
    worker is unfinished, its best configurations are queued for confirmation at further
    seeds (`mtlsearch.search.confirmation.plan`; the spec may turn it off); once those have
    run too, it is completed with its ``best`` answer (`mtlsearch.search.answer`)."""
    time_up = not context.time_left()
    spec, experiment = context.spec, context.experiment
    answers: list[dict[str, Any] | None] = []

    def answer(repository: TrialRepository) -> dict[str, Any] | None:
        answers.append(
            best_answer(repository.rows(context.id), spec, experiment, context.baselines)
        )
        return answers[-1]

    with database.session() as session:
        repository = TrialRepository(session)
        done = repository.complete_if_done(
            context.id,
            time_up=time_up,
            best=lambda: answer(repository),
            confirm=lambda: plan(repository.rows(context.id, ("complete",)), spec, experiment),
        )
    if done is Completion.CONFIRMING:
        logger.info("study %s: search done, its best queued for confirmation", context.id)
    elif done is Completion.COMPLETED:
        logger.info("study %s completed", context.id)
        if answers and answers[-1] is not None:
            mirror_answer(context.study, answers[-1])
    return done


def mirror_answer(study: optuna.Study, record: Mapping[str, Any]) -> None:
    """The confirmed answer for the dashboard: a study user attribute ``confirmation`` with
    the verdict in words and the means ± sd of the best and of uniform weights (the full
    record is ``GET /best``'s)."""
    confirmation = record.get("confirmation")
    if not confirmation:
        return
    best = confirmation.get("configurations") or []
    uniform = confirmation.get("uniform") or {}
    summary = {
        "verdict": (confirmation.get("verdict") or {}).get("text"),
        "best_trial": record.get("number"),
        "best_objective": best[0]["objective"][0] if best else None,
        "uniform_objective": (uniform.get("objective") or [None])[0],
        "seeds": len(confirmation.get("seeds") or []),
    }
    try:
        study.set_user_attr("confirmation", summary)
    except optuna.exceptions.OptunaError as exc:  # the mirror only: the record is stored
        logger.warning("could not show the confirmation on the dashboard: %s", exc)


def log_outcome(job: Job, outcome: Outcome, values: list[float] | None) -> None:
    label, study_id = job.label, job.study.id
    if outcome.state is TrialState.COMPLETE:
        shown = ", ".join(f"{v:.4g}" for v in values or [])
        logger.info("%s of study %s complete: %s", label, study_id, shown)
    elif outcome.state is TrialState.PRUNED:
        logger.info("%s of study %s pruned: %s", label, study_id, outcome.reason)
    else:
        logger.warning("%s of study %s failed: %s", label, study_id, outcome.reason)


__all__ = [
    "ROW_STATES",
    "complete_if_done",
    "log_outcome",
    "mirror_answer",
    "mirror_to_optuna",
    "outcome_record",
    "settle",
    "tell_once",
    "write_row",
]

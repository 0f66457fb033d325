"""The teller thread: reports epochs, decides verdicts, and records every finished job, in order.

The teller is the one thread that writes a trial's progress and end to storage. Everything it
is handed (`Teller.asked`, `Teller.epoch`, `Teller.finished`, `Teller.check_completion`,
`Teller.fail_study`) goes into one first-in-first-out inbox and is done on its thread, in the
order it was handed; the caller goes on at once. `Teller.drain` waits until everything handed
before it is done.

Per epoch the runner hands it the reports of ALL its slots as one batch. For each trial the
teller reports the epoch's value to Optuna, reads the study's status (at most once per
`STATUS_CHECK_S` per study, also for the studies of jobs still waiting in the asker's queue,
and afresh for all of them once one is seen ended, so that a queued job of a cancelled study
is told without training) and decides the verdict
(`mtlsearch.worker.decisions.epoch_verdict`). Verdicts other than CONTINUE are posted on
`Teller.verdicts`, which the runner reads at every epoch boundary without waiting: a verdict
that arrives late is applied at the next epoch boundary (the trial trains one more epoch,
which is not reported; its outcome is still the verdict's).

State owned by this thread (others only read it): the verdicts taken, the studies seen ended
(`Teller.ended`), the asked-but-untold count per study, each study's failure streak and
status-check time (fields of `StudyContext`), and `Teller.trials_done`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from mtlsearch.search.objective import intermediate_value
from mtlsearch.search.results import TrialOutcome
from mtlsearch.worker import outcomes
from mtlsearch.worker.decisions import (
    GO_ON,
    Decision,
    EpochFacts,
    Outcome,
    Verdict,
    epoch_verdict,
    finished_outcome,
    is_healthy,
    next_streak,
)
from mtlsearch.worker.jobs import EpochItem
from mtlsearch.worker.outage import DatabaseOutage
from storage import Database, NotFoundError, StudyRepository, StudyStatus, TrialRepository
from storage.models import FailureKind
from storage.repositories.trials import Completion

if TYPE_CHECKING:
    from mtl_core.results import EpochReport, TrialResult
    from mtlsearch.worker.jobs import Job
    from mtlsearch.worker.studies import StudyContext

logger = logging.getLogger(__name__)

#: Least seconds between two reads of a study's status (for cancels) during training.
STATUS_CHECK_S = 1.0
#: Why a trial stops when Optuna says it finished meanwhile: a peer failed it as lost.
TAKEN_REASON = "taken by a peer: this worker looked lost (no heartbeat within the grace period)"


class Teller:
    """The worker's storage writer for trials in flight (see the module docstring).

    Until `start`, everything handed to it is done at once on the caller's thread.

    Args:
        database: the worker's database.
        max_consecutive_failures: rounds failed in a row after which a study is failed.
        outage: waits out a database that is away; every write of an outcome goes through it
            (default: one that waits until the worker's process ends).
        on_setup_failure: called with an experiment and the reason when one of its trials
            failed for this worker's own setup (its data): the worker stops serving it.
        on_verdict: where verdicts go (default: `verdicts`, which the runner reads); a
            training process of its own gets them sent (`TrainerProcess.post_verdict`).
    """

    def __init__(
        self,
        database: Database,
        max_consecutive_failures: int,
        outage: DatabaseOutage | None = None,
        on_setup_failure: Callable[[str, str], None] | None = None,
        on_verdict: Callable[[int, Decision], None] | None = None,
    ) -> None:
        self.database = database
        self.max_consecutive_failures = max_consecutive_failures
        self.outage = outage or DatabaseOutage(threading.Event())
        self.on_setup_failure = on_setup_failure
        #: Verdicts other than CONTINUE, as ``(Job.key, Decision)``: the runner's to read.
        self.verdicts: queue.SimpleQueue[tuple[int, Decision]] = queue.SimpleQueue()
        self._post_verdict = on_verdict or (lambda key, verdict: self.verdicts.put((key, verdict)))
        self.trials_done = 0
        self._inbox: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ended: dict[str, StudyStatus | str] = {}
        self._untold: Counter[str] = Counter()
        self._in_flight: dict[str, StudyContext] = {}
        self._decided: dict[int, Decision] = {}
        # The last round and the studies that had a trial training on healthy through it.
        self._round: tuple[int | None, set[str]] = (None, set())

    # --- life cycle ------------------------------------------------------------------------

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Do everything handed so far, then end the thread."""
        if self._thread is not None:
            self._inbox.put(None)
            self._thread.join()
            self._thread = None

    def drain(self) -> None:
        """Wait until everything handed before this call is done."""
        done = threading.Event()
        self._post(done.set)
        done.wait()

    def _post(self, task: Callable[[], None]) -> None:
        if self._thread is None:
            task()
        else:
            self._inbox.put(task)

    def _run(self) -> None:
        while (task := self._inbox.get()) is not None:
            try:
                task()
            except Exception:
                logger.exception("the teller could not finish a task; going on")

    # --- what other threads hand it --------------------------------------------------------

    def asked(self, job: Job) -> None:
        """A trial was asked: no completion of its study until it is told."""
        self._post(lambda: self._on_asked(job))

    def epoch(self, round_: int, reports: Sequence[tuple[Job, EpochReport]]) -> None:
        """The reports of one epoch of every live slot (one round of the failure streak)."""
        items = [EpochItem(job, report) for job, report in reports]
        self._post(lambda: self._on_epoch(round_, items))

    def finished(
        self,
        job: Job,
        result: TrialResult | None = None,
        *,
        forced: Outcome | None = None,
        diverged: str | None = None,
        round_: int | None = None,
    ) -> None:
        """A job left training: with ``forced`` that is its outcome; else it follows from the
        result and the verdicts taken on it (`mtlsearch.worker.decisions.finished_outcome`)."""
        self._post(lambda: self._on_finished(job, result, forced, diverged, round_))

    def check_completion(self, context: StudyContext) -> None:
        """Complete the study if it is done (`maybe_complete`)."""

        def complete() -> None:
            self.maybe_complete(context)

        self._post(complete)

    def fail_study(self, context: StudyContext, message: str) -> None:
        self._post(lambda: self._fail_study(context, message))

    def setup_failed(self, experiment: str, reason: str) -> None:
        """This worker cannot serve ``experiment`` (its data): it stops serving it."""
        callback = self.on_setup_failure
        if callback is not None:
            self._post(lambda: callback(experiment, reason))

    def study_gone(self, study_id: str) -> None:
        """Its Optuna study was deleted underneath the worker."""
        self._post(lambda: self._ended.__setitem__(study_id, "deleted"))

    def ended(self, study_id: str) -> StudyStatus | str | None:
        """The study's status once seen no longer running, else None (read from any thread)."""
        return self._ended.get(study_id)

    def untold(self) -> int:
        """Asked trials not told yet (exact after `drain`, when nothing else hands it jobs)."""
        return sum(self._untold.values())

    # --- on the teller's thread ------------------------------------------------------------

    def _on_asked(self, job: Job) -> None:
        # Its slot was just reserved, which only a running study allows: a study seen ended
        # before was resumed since.
        self._ended.pop(job.study.id, None)
        self._untold[job.study.id] += 1
        self._in_flight[job.study.id] = job.study

    def _on_epoch(self, round_: int, items: list[EpochItem]) -> None:
        # Every study in flight, reported or queued: a queued job's cancel is seen too. One
        # ended: read the others afresh (studies are often cancelled together).
        # The statuses are read once here for the whole batch: every study found ended is
        # known before any verdict of this batch is posted.
        in_flight, ended = list(self._in_flight.values()), len(self._ended)
        statuses = {context.id: self._status(context) for context in in_flight}
        if len(self._ended) > ended:
            statuses = {context.id: self._status(context, fresh=True) for context in in_flight}
        healthy: set[str] = set()
        for item in items:
            job = item.job
            decision = self._decided.get(job.key)
            if decision is None:
                try:
                    status = statuses.get(job.study.id) or self._status(job.study)
                    decision = self._verdict(job, item, status)
                except optuna.exceptions.UpdateFinishedTrialError:
                    # A peer took it (this worker looked lost): training it on is wasted.
                    decision = Decision(Verdict.STOP, TAKEN_REASON)
                except Exception as exc:
                    # Its epoch goes unreported (the pruner judges by the others); the trial
                    # trains on. An unreachable database is said once by the outage.
                    if not self.outage.noted(f"reporting {job.label}", exc):
                        logger.exception("could not report %s", job.label)
                    decision = GO_ON
                if decision.verdict is not Verdict.CONTINUE:
                    self._decided[job.key] = decision
                    self._post_verdict(job.key, decision)
            if is_healthy(decision):
                healthy.add(job.study.id)
        self._round = (round_, healthy)

    def _verdict(self, job: Job, item: EpochItem, status: StudyStatus | str) -> Decision:
        context, report, trial = job.study, item.report, job.trial
        value = intermediate_value(report, context.spec, context.experiment, context.baselines)
        # A confirmation run has no Optuna trial: nothing to report, no pruner to ask.
        reported = trial is not None and value is not None and math.isfinite(value)
        if reported:
            assert trial is not None and value is not None
            trial.report(value, report.epoch)
        facts = EpochFacts(
            study_status=status,
            # The runner stops trials itself at the epoch boundary when the worker stops: a
            # lagging teller would stop trials that have since finished.
            stopping=False,
            epoch=report.epoch,
            epochs=job.epochs,
            reported=reported,
            strategy=job.config.strategy,
            pruner=str(context.spec.pruner),
        )
        return epoch_verdict(facts, trial.should_prune if trial is not None else lambda: False)

    def _status(self, context: StudyContext, fresh: bool = False) -> StudyStatus | str:
        # Read at most once per STATUS_CHECK_S (unless ``fresh``): a cancel is seen after the
        # first epoch that ends a second or more later, and epochs of tiny models cost no
        # query each.
        ended = self._ended.get(context.id)
        if ended is not None:
            return ended
        now = time.monotonic()
        if not fresh and now - context.status_checked < STATUS_CHECK_S:
            return StudyStatus.RUNNING
        context.status_checked = now
        status: StudyStatus | str
        try:
            with self.database.session() as session:
                status = StudyRepository(session).get(context.id).status
        except NotFoundError:
            status = "deleted"
        except Exception as exc:
            if not self.outage.noted(f"reading the status of study {context.id}", exc):
                raise
            return StudyStatus.RUNNING  # unknown while the database is away: train on
        if status is not StudyStatus.RUNNING:
            self._ended[context.id] = status
        return status

    def _on_finished(
        self,
        job: Job,
        result: TrialResult | None,
        forced: Outcome | None,
        diverged: str | None,
        round_: int | None,
    ) -> None:
        decision = self._decided.pop(job.key, GO_ON)
        if forced is not None:
            outcome = forced
        else:
            assert result is not None
            last_round, healthy = self._round
            round_healthy = round_ == last_round and job.study.id in healthy
            outcome = finished_outcome(result, decision, diverged, round_healthy, round_)
        self.record_outcome(job, outcome)

    def record_outcome(self, job: Job, outcome: Outcome) -> None:
        """All the storage work of a finished job (`mtlsearch.worker.outcomes`, in its order),
        then the failure streak and the completion check.

        If a peer failed the row as lost first, it also told Optuna: nothing more is written.
        A worker killed between the row and the tell is repaired by a peer's maintenance
        (`mtlsearch.worker.stale.repair_optuna`).
        """
        context = job.study
        if outcome.failure_kind in (FailureKind.WORKER_SETUP, FailureKind.LOST_WORKER):
            self._hand_back(job, outcome)
            return
        outcome, values = outcomes.settle(job, outcome)
        recorded = outcomes.outcome_record(job, outcome)
        what = f"recording {job.label} of study {context.id}"
        try:
            won, outcome, values, recorded = self.outage.call(
                what, lambda: outcomes.write_row(self.database, job, outcome, values, recorded)
            )
        finally:
            self._end_trial(job)
        if not won:
            logger.warning(
                "%s of study %s was failed as lost by a peer meanwhile; its outcome is dropped",
                job.label,
                context.id,
            )
            return
        self.trials_done += 1
        self.outage.call(
            f"telling Optuna {job.label} of study {context.id}",
            lambda: outcomes.mirror_to_optuna(job, outcome, values, recorded),
        )
        outcomes.log_outcome(job, outcome, values)
        if job.trial is not None:  # a confirmation run that fails tells, and ends, no search
            context.streak, message = next_streak(
                context.streak, outcome, self.max_consecutive_failures
            )
            if message is not None:
                self._fail_study(context, message)
        # reserved_hint is the asker's (a stale read only delays this check to a later finish).
        n_trials = context.info.n_trials
        if outcome.state is not TrialState.FAIL and (
            n_trials is not None and context.reserved_hint >= n_trials
        ):
            self.maybe_complete(context)

    def _hand_back(self, job: Job, outcome: Outcome) -> None:
        """A trial this worker could not run for its own setup (the experiment's data missing
        here: ``worker_setup``, and this worker stops serving the experiment) or lost with its
        training process (``lost_worker``): another worker runs it
        (`storage.TrialRepository.hand_back`), nothing counts towards the study's streak."""
        context, reason = job.study, outcome.reason or "worker setup failed"
        kind = outcome.failure_kind or FailureKind.WORKER_SETUP

        def hand_back() -> bool:
            with self.database.session() as session:
                return TrialRepository(session).hand_back(
                    job.row_id, f"handed back: {reason}", kind
                )

        try:
            handed = self.outage.call(f"handing back {job.label}", hand_back)
        finally:
            self._end_trial(job)
        if handed:
            logger.warning("%s of study %s handed back: %s", job.label, context.id, reason)
            self.outage.call(
                f"telling Optuna {job.label} of study {context.id}",
                lambda: outcomes.mirror_to_optuna(job, outcome, None, TrialOutcome()),
            )
        setup_failed = outcome.failure_kind is FailureKind.WORKER_SETUP
        if setup_failed and self.on_setup_failure is not None:  # on this thread already
            self.on_setup_failure(context.experiment.name, reason)

    def _end_trial(self, job: Job) -> None:
        self._untold[job.study.id] -= 1
        if self._untold[job.study.id] <= 0:
            del self._untold[job.study.id]
            self._in_flight.pop(job.study.id, None)

    def _fail_study(self, context: StudyContext, message: str) -> None:
        def fail() -> bool:
            with self.database.session() as session:
                return StudyRepository(session).set_status(
                    context.id, StudyStatus.FAILED, message, expected=StudyStatus.RUNNING
                )

        changed = self.outage.call(f"failing study {context.id}", fail)
        if changed:
            self._ended[context.id] = StudyStatus.FAILED
            logger.error("study %s marked failed: %s", context.id, message)

    def maybe_complete(self, context: StudyContext) -> Completion:
        """Confirm or complete the study if it is done
        (`mtlsearch.worker.outcomes.complete_if_done`); what this call did."""
        done = self.outage.call(
            f"completing study {context.id}",
            lambda: outcomes.complete_if_done(self.database, context),
        )
        if done is Completion.COMPLETED:
            self._ended[context.id] = StudyStatus.COMPLETED
        return done

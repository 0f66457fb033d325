"""The worker loop: pick a study, reserve a budget slot, ask, train, report, tell; repeat.

One `Worker` per process and device (``mtlsearch worker``). The database is its only contact
with the rest of mtlsearch; see docs/walkthrough.md for running many of them.

Per trial (one by one) the storage work is: one transaction for pick + reserve, ``ask`` and
the parameter suggestions, one heartbeat row and one ``worker`` attribute, per epoch one
``report`` (plus the pruner's read of the study, served from Optuna's cache) and a read of the
study's status (cancel; at most one a second), then the result attributes and ``tell``. The
worker row is written by the heartbeat thread only, never per trial.

Overlap: only the per-epoch work stays on the training thread. `Worker.finish` (result
attributes, ``tell``, slot release, failure counting, completion check) runs on one background
*finisher* thread, in order, while the loop goes on; and with ``WorkerOptions.prefetch`` (the
default) the next job (maintenance, pick + reserve, ``ask``, suggestions) is prepared on a
*prefetch* thread while the current trial trains, one job ahead, so the next trial starts at
once. A prefetched trial holds its slot and its Optuna heartbeat while it waits; if the worker
stops, or its study is no longer running when its turn comes, it is told FAIL without training
and its slot is released. The sampler therefore asks one trial before the previous one is told
(TPE sees one finished trial fewer). Decisions that depend on pending tells (``max_trials``,
``idle_exit_s``, stopping, the return of `Worker.run`) wait for the finisher first, and a study
is never completed while this worker holds an untold trial of it. The batched runner asks its
own jobs and is not prefetched (its tells still run on the finisher).
``benchmarks/worker_overhead.py`` measures the cost left on the critical path.

Budget: ``StudyRepository.reserve_trial`` takes one of the study's ``n_trials`` slots before
each ``ask``; a trial that ends FAIL (its own failure, a cancel, a worker stop, or a stale trial
failed by `~mtlsearch.worker.stale.fail_stale_trials`) gives its slot back, so the study ends
with exactly ``n_trials`` COMPLETE + PRUNED trials. The worker that finds the budget met and
nothing running marks the study completed and stores its ``best`` artifact.

Fairness: every trial starts with ``StudyRepository.pick_for_worker``, the running study with
budget left served least recently, so concurrent studies take turns trial by trial.

Stopping (`Worker.request_stop`, SIGTERM/SIGINT in the CLI): the current epoch finishes; a
trial that still has epochs to go is told FAIL with reason ``worker stopped`` and its slot is
released (another worker runs a fresh trial in its place), a trial in its last epoch is let
finish and told normally. Then the worker row is marked stopped.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import warnings
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from mtlsearch.search.best import best_record
from mtlsearch.search.local import result_attrs
from mtlsearch.search.objective import intermediate_value, objective_values
from mtlsearch.search.optuna_factory import should_consider_pruning
from mtlsearch.search.repeats import distinct_seed
from mtlsearch.search.results import set_user_attrs
from mtlsearch.search.space import normalised_weights, suggest_trial_config
from mtlsearch.settings import Settings, get_settings
from mtlsearch.worker.heartbeat import Heartbeat
from mtlsearch.worker.runners import (
    CANCELLED_REASON,
    GO_ON,
    STOPPED_REASON,
    BatchedRunner,
    Decision,
    Job,
    OneByOneRunner,
    Outcome,
    TrialRunner,
    Verdict,
)
from mtlsearch.worker.stale import STALE_REASON, fail_stale_trials
from mtlsearch.worker.studies import (
    DataCache,
    StudyContext,
    load_or_train_baselines,
    load_study_context,
    planned_epochs,
)
from storage import (
    ArtifactRepository,
    Database,
    NotFoundError,
    StudyInfo,
    StudyRepository,
    StudyStatus,
    WorkerRepository,
    WorkerStatus,
)

if TYPE_CHECKING:
    from mtl_core.experiments import DataSplits
    from mtl_core.results import EpochReport

logger = logging.getLogger(__name__)

#: Trial user attribute naming the worker that trained it.
WORKER_ATTR = "worker"
#: Least seconds between two reads of a study's status (for cancels) during training.
STATUS_CHECK_S = 1.0


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs.

    Args:
        device: where it trains (``cpu``, ``cuda:0``, ...).
        batch: trials trained together: 1 (one by one), K, or ``"auto"``.
        max_trials: stop after starting this many trials (None: no limit).
        idle_exit_s: exit after this many seconds without work (None: wait forever).
        data_dir: the data sets (default ``Settings.data_dir``).
        heartbeat_s: seconds between heartbeats (default ``Settings.worker_heartbeat_s``).
        maintenance_s: seconds between passes over all running studies (stale trials,
            completion, time budgets); default: the heartbeat interval.
        max_consecutive_failures: a study whose trials fail this many times in a row on this
            worker, with no COMPLETE or PRUNED in between, is marked failed. Batched, one epoch
            of a batch counts once however many of its trials failed, and not at all when one
            of them trained on healthy (see `mtlsearch.worker.runners.BatchedRunner`).
        idle_sleep_s: first and longest sleep between two looks for work (doubling).
        worker_id: default ``<hostname>-<pid>-<6 hex>``.
        prefetch: prepare the next job (pick + reserve + ask + suggest) on a background thread
            while the current trial trains, one job ahead (one-by-one training only; the
            batched runner asks its own jobs).
    """

    device: str = "cpu"
    batch: int | str = 1
    max_trials: int | None = None
    idle_exit_s: float | None = None
    data_dir: Path | None = None
    heartbeat_s: float | None = None
    maintenance_s: float | None = None
    max_consecutive_failures: int = 5
    idle_sleep_s: tuple[float, float] = (0.2, 5.0)
    worker_id: str | None = None
    prefetch: bool = True

    def __post_init__(self) -> None:
        if self.batch != "auto" and (not isinstance(self.batch, int) or self.batch < 1):
            raise ValueError(f"batch must be an integer >= 1 or 'auto', got {self.batch!r}")
        if self.max_trials is not None and self.max_trials < 1:
            raise ValueError(f"max_trials must be >= 1, got {self.max_trials=}")
        if self.idle_exit_s is not None and self.idle_exit_s < 0:
            raise ValueError(f"idle_exit_s must be >= 0, got {self.idle_exit_s=}")
        for name in ("heartbeat_s", "maintenance_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if self.max_consecutive_failures < 1:
            raise ValueError(
                f"max_consecutive_failures must be >= 1, got {self.max_consecutive_failures=}"
            )
        low, high = self.idle_sleep_s
        if not 0 < low <= high:
            raise ValueError(f"idle_sleep_s must be 0 < first <= longest, got {self.idle_sleep_s}")


class Worker:
    """Trains the trials of the running studies of one database until stopped.

    Args:
        database: the process's `Database` (``storage.get_database(url)``).
        options: how to run.
        settings: heartbeat and data defaults (default: the process's `Settings`).
    """

    def __init__(
        self,
        database: Database,
        options: WorkerOptions | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.database = database
        self.options = options or WorkerOptions()
        self.settings = settings or get_settings()
        self.device = self.options.device
        data_dir = self.options.data_dir or self.settings.data_dir
        self.data = DataCache(data_dir)
        self.heartbeat_s = self.options.heartbeat_s or self.settings.worker_heartbeat_s
        self.maintenance_s = self.options.maintenance_s or self.heartbeat_s
        self.id = self.options.worker_id or ""
        self.trials_started = 0
        self.trials_done = 0
        self._stop = threading.Event()
        # Guards what the loop, the prefetch and the finisher threads share: the counters
        # above, `_contexts`, `_untold` and the StudyContext counters. Never held across I/O.
        self._lock = threading.RLock()
        self._contexts: dict[str, StudyContext] = {}
        #: Asked, not yet told trials of this worker, by study id (see `maybe_complete`).
        self._untold: Counter[str] = Counter()
        #: Studies seen (or made) no longer running: their status without a query.
        self._ended: dict[str, StudyStatus | str] = {}
        # study id -> ((reserved, in use), first seen): slots reserved by no trial
        self._orphan_slots: dict[str, tuple[tuple[int, int], float]] = {}
        self._finisher: ThreadPoolExecutor | None = None
        self._prefetcher: ThreadPoolExecutor | None = None
        self._ahead: Future[Job | None] | None = None
        self._heartbeat: Heartbeat | None = None
        self._last_maintenance = -math.inf
        self._test_hook = self.settings.test_hook
        self.runner: TrialRunner = (
            OneByOneRunner(self)
            if self.options.batch == 1
            else BatchedRunner(self, self.options.batch)
        )

    # --- life cycle ------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        """Finish the current epoch, then stop (safe from a signal handler or another thread)."""
        if not self._stop.is_set():
            logger.info("worker %s stopping after the current epoch", self.id or "(starting)")
        self._stop.set()

    def register(self) -> str:
        """Record this worker in ``mtl_workers`` and start its heartbeat; returns its id."""
        from mtl_core.experiments import list_experiments, load_plugins

        load_plugins(self.settings.allowed_experiment_modules)
        with self.database.session() as session:
            info = WorkerRepository(session).register(
                hostname=socket.gethostname(),
                pid=os.getpid(),
                device=self.device,
                worker_id=self.options.worker_id,
                # After load_plugins: the API matches studies against what it can really run.
                experiments=list_experiments(),
                batch_size=self.options.batch,
            )
        self.id = info.id
        self._heartbeat = Heartbeat(self.database, self.id, self.heartbeat_s)
        self._heartbeat.start()
        logger.info(
            "worker %s on %s (%s, batch %s)",
            self.id,
            self.device,
            self.database.display_url,
            self.options.batch,
        )
        return self.id

    def run(self) -> int:
        """Work until stopped, ``max_trials`` or ``idle_exit_s``; returns trials finished."""
        if self._heartbeat is None:
            self.register()
        self._finisher = ThreadPoolExecutor(1, thread_name_prefix=f"finisher-{self.id}")
        self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix=f"prefetch-{self.id}")
        try:
            self._loop()
        finally:
            try:
                self._drop_prefetched()
            finally:
                self.drain()
                self._finisher.shutdown(wait=True)
                self._prefetcher.shutdown(wait=True)
                self._finisher = self._prefetcher = None
                self._shutdown()
        return self.trials_done

    def drain(self) -> None:
        """Wait until every finish handed to the finisher thread has landed."""
        if self._finisher is not None:
            # One thread, first in first out: a no-op done means everything before it is.
            self._finisher.submit(lambda: None).result()

    def _shutdown(self) -> None:
        heartbeat = self._heartbeat
        if heartbeat is not None:
            heartbeat.stop()
            self._heartbeat = None
        try:
            with self.database.session() as session:
                WorkerRepository(session).heartbeat(
                    self.id, WorkerStatus.STOPPED, trials_done=self.trials_done
                )
        except Exception as exc:
            logger.warning("could not mark worker %s stopped: %s", self.id, exc)
        logger.info("worker %s stopped after %d trial(s)", self.id, self.trials_done)

    def _loop(self) -> None:
        low, high = self.options.idle_sleep_s
        sleep = low
        idle_since: float | None = None
        prefetch = self.options.prefetch and not isinstance(self.runner, BatchedRunner)
        while not self.stopping:
            job = self._take_prefetched()
            if job is None:
                # Pending tells release slots, count trials and complete studies: the
                # decisions below must see them.
                self.drain()
                if self._out_of_trials():
                    logger.info(
                        "worker %s reached --max-trials %s", self.id, self.options.max_trials
                    )
                    return
                self.maintain()
                job = self.next_job_any()
            if job is None:
                now = time.monotonic()
                if idle_since is None:
                    # Just out of work, with every tell of ours landed (drained above): the
                    # finish of a study's last trial may have seen another worker's trial still
                    # running, and that worker's local budget view may not know it took the last
                    # slot. Whoever goes idle last sees every trial told and completes the study.
                    self.maintain(force=True)
                idle_since = idle_since if idle_since is not None else now
                exit_after = self.options.idle_exit_s
                if exit_after is not None and now - idle_since >= exit_after:
                    logger.info("worker %s idle for %.0f s: exiting", self.id, now - idle_since)
                    return
                self._beat(WorkerStatus.IDLE)
                self._stop.wait(sleep)
                sleep = min(sleep * 2, high)
                continue
            idle_since, sleep = None, low
            if prefetch and not self.stopping:
                assert self._prefetcher is not None
                self._ahead = self._prefetcher.submit(self._prefetch)
            self._beat(WorkerStatus.BUSY, job)
            self.runner.run(job)

    def _prefetch(self) -> Job | None:
        # On the prefetch thread, while the loop trains: what the loop would do next.
        self.maintain()
        return self.next_job_any()

    def _take_prefetched(self) -> Job | None:
        """The prefetched job, if there is one and it may still train; else None.

        Raises what preparing it raised (as the loop did when it prepared jobs itself).
        """
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        job = ahead.result()
        if job is None:
            return None
        if self.stopping:
            self.finish(job, Outcome(TrialState.FAIL, reason=STOPPED_REASON))
            return None
        # Cancelled while it waited? (Rate-limited like the per-epoch check: a cancel seen
        # later stops it after its first epoch instead.)
        status = self._status(job.study)
        if status is not StudyStatus.RUNNING:
            reason = CANCELLED_REASON if status is StudyStatus.CANCELLED else f"study {status}"
            self.finish(job, Outcome(TrialState.FAIL, reason=reason))
            return None
        return job

    def _drop_prefetched(self) -> None:
        """Tell a prefetched job that will not train FAIL (worker stopped); frees its slot."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        try:
            job = ahead.result()
        except Exception as exc:
            logger.warning("preparing the next trial failed while stopping: %s", exc)
            return
        if job is not None:
            self.finish(job, Outcome(TrialState.FAIL, reason=STOPPED_REASON))

    def _out_of_trials(self) -> bool:
        limit = self.options.max_trials
        with self._lock:
            return limit is not None and self.trials_started >= limit

    def _beat(self, status: WorkerStatus, job: Job | None = None) -> None:
        if self._heartbeat is not None:
            with self._lock:
                done = self.trials_done
            self._heartbeat.set_state(
                status,
                job.study.id if job else None,
                job.trial.number if job else None,
                trials_done=done,
            )

    # --- studies ---------------------------------------------------------------------------

    def _context(self, info: StudyInfo) -> StudyContext | None:
        with self._lock:
            context = self._contexts.get(info.id)
        if context is None:
            context, why = load_study_context(self.database, info, self.id)
            if context is None:
                logger.info("%s", why)
                return None
            try:
                context.baselines = load_or_train_baselines(
                    self.database, context, device=self.device, data_dir=self.data.data_dir
                )
            except Exception as exc:
                # A data set missing on this machine is this worker's problem, not the study's.
                logger.error("cannot train the baselines of study %s: %s", info.id, exc)
                from mtl_core.errors import DataError

                if not isinstance(exc, DataError):
                    self._fail_study(context, f"single-task baselines failed: {exc}")
                return None
            with self._lock:
                self._contexts[info.id] = context
        with self._lock:
            context.info = info
            context.reserved_hint = info.trials_reserved
        return context

    def next_job_any(self) -> Job | None:
        """A job from the least recently served study that has one; None when there is none.

        Studies this worker cannot serve (unknown experiment, Optuna study not there yet) or
        whose time is up are passed over; each running study is looked at once at most.
        """
        seen: set[str] = set()
        while not self.stopping:
            with self.database.session() as session:
                info = StudyRepository(session).pick_for_worker()
            if info is None or info.id in seen:
                return None
            seen.add(info.id)
            context = self._context(info)
            if context is None:
                continue
            try:
                if not context.time_left():
                    self.maybe_complete(context)
                    continue
                job = self._ask(context)  # the loop beats when it starts training it
                if job is not None:
                    return job
                self.maybe_complete(context)
            except KeyError:  # the Optuna study is gone (see `_drop_study`)
                self._drop_study(context)
        return None

    def _drop_study(self, context: StudyContext) -> None:
        """Forget a study whose Optuna study was deleted or renamed underneath this worker."""
        logger.warning("study %s has no Optuna study any more: dropped", context.id)
        with self._lock:
            self._contexts.pop(context.id, None)
            self._ended[context.id] = "deleted"

    def next_job(self, study: StudyContext) -> Job | None:
        """Reserve one slot of ``study`` and ask a trial (re-queued ones come first)."""
        job = self._ask(study)
        if job is not None:  # asked by the batched runner for its batch: it trains now
            self._beat(WorkerStatus.BUSY, job)
        return job

    def _ask(self, study: StudyContext) -> Job | None:
        while not self.stopping and not self._out_of_trials() and study.time_left():
            with self.database.session() as session:
                if not StudyRepository(session).reserve_trial(study.id):
                    return None
            with self._lock:
                study.reserved_hint += 1
            try:
                with warnings.catch_warnings():
                    # "Heartbeat ... supposed to be used with Study.optimize": we beat ourselves.
                    warnings.simplefilter("ignore", UserWarning)
                    trial = study.study.ask()
            except KeyError:
                # Its Optuna study was deleted (or renamed) underneath us: not our failure.
                self._release(study)
                self._drop_study(study)
                return None
            except Exception:
                self._release(study)
                raise
            if self._test_hook == "exit-after-ask":
                os._exit(3)  # chaos test: die between ask() and the first trial heartbeat
            with self._lock:
                self.trials_started += 1
                self._untold[study.id] += 1
            assert self._heartbeat is not None
            self._heartbeat.add_trial(trial._trial_id)
            start_attrs: dict[str, object] = {WORKER_ATTR: self.id}
            if trial.user_attrs.get("fail_reason") == STALE_REASON:
                start_attrs["fail_reason"] = None  # inherited from the stale original
            set_user_attrs(trial, start_attrs)
            try:
                config = suggest_trial_config(trial, study.spec, study.experiment, self.device)
                config = distinct_seed(trial, config)
            except Exception as exc:
                placeholder = Job(study, trial, None, 0)  # type: ignore[arg-type]
                self.finish(
                    placeholder,
                    Outcome(TrialState.FAIL, reason=f"bad config: {exc}", counts_as_failure=True),
                )
                continue
            job = Job(study, trial, config, planned_epochs(study, config.epochs))
            logger.debug("trial %d of study %s: %s", trial.number, study.id, config)
            return job
        return None

    def data_for(self, job: Job) -> DataSplits:
        return self.data.get(job.study.experiment, job.config.max_train_samples, self.device)

    # --- per epoch and per trial -----------------------------------------------------------

    def on_epoch(self, job: Job, report: EpochReport) -> Decision:
        """Report the epoch's value, then decide: cancelled, stopping, pruned, or go on."""
        context = job.study
        value = intermediate_value(report, context.spec, context.experiment, context.baselines)
        reported = value is not None and math.isfinite(value)
        if reported:
            job.trial.report(value, report.epoch)  # type: ignore[arg-type]
        status = self._status(context)
        if status is not StudyStatus.RUNNING:
            reason = CANCELLED_REASON if status is StudyStatus.CANCELLED else f"study {status}"
            return Decision(Verdict.CANCEL, reason)
        if self.stopping and report.epoch < job.epochs:
            return Decision(Verdict.STOP, STOPPED_REASON)
        # After the last epoch the trial ends anyway: no pruner query.
        if (
            reported
            and report.epoch < job.epochs
            and should_consider_pruning(report.epoch, job.config.strategy)
            and job.trial.should_prune()
        ):
            pruner = context.spec.pruner
            return Decision(
                Verdict.PRUNE, f"pruned by the {pruner} pruner after epoch {report.epoch}"
            )
        return GO_ON

    def _status(self, context: StudyContext) -> StudyStatus | str:
        # Read at most once per STATUS_CHECK_S: a cancel is seen after the first epoch that
        # ends a second or more later, and epochs of tiny models cost no query each.
        with self._lock:
            ended = self._ended.get(context.id)
        if ended is not None:
            return ended
        now = time.monotonic()
        if now - context.status_checked < STATUS_CHECK_S:
            return StudyStatus.RUNNING
        context.status_checked = now
        status: StudyStatus | str
        try:
            with self.database.session() as session:
                status = StudyRepository(session).get(context.id).status
        except NotFoundError:
            status = "deleted"
        if status is not StudyStatus.RUNNING:
            # Final: a job of it prefetched meanwhile is then told at once, not trained.
            with self._lock:
                self._ended[context.id] = status
        return status

    def finish(self, job: Job, outcome: Outcome) -> None:
        """Record the job's attributes, tell Optuna, release a failed trial's slot.

        Inside `run` this is queued for the finisher thread and returns at once; `drain`
        waits for it. The trial keeps its Optuna heartbeat until it is told.
        """
        if self._finisher is None:
            self._finish_now(job, outcome)
        else:
            self._finisher.submit(self._finish_logged, job, outcome)

    def _finish_logged(self, job: Job, outcome: Outcome) -> None:
        try:
            self._finish_now(job, outcome)
        except Exception:
            # The slot was released (see _finish_now); the worker goes on.
            logger.exception(
                "could not record trial %d of study %s", job.trial.number, job.study.id
            )

    def _finish_now(self, job: Job, outcome: Outcome) -> None:
        context, trial = job.study, job.trial
        state, reason = outcome.state, outcome.reason
        values: list[float] | None = None
        try:
            attrs: dict[str, object] = {}
            if outcome.result is not None:
                attrs.update(result_attrs(outcome.result))
                weights = outcome.result.config.weights
            elif job.config is not None:
                attrs["config"] = job.config.model_dump(mode="json")
                weights = job.config.weights
            else:
                weights = None
            if weights is not None:
                names = context.experiment.task_names
                attrs["weights_normalised"] = normalised_weights(weights, names)
            if state is TrialState.COMPLETE:
                assert outcome.result is not None
                try:
                    values = objective_values(
                        outcome.result, context.spec, context.experiment, context.baselines
                    )
                except ValueError as exc:
                    state, reason = TrialState.FAIL, f"no objective value: {exc}"
                    outcome.counts_as_failure = True
                if values is not None and not all(math.isfinite(v) for v in values):
                    state, reason = TrialState.FAIL, f"objective value is not finite: {values}"
                    outcome.counts_as_failure = True
                    values = None
            if state is TrialState.FAIL:
                attrs["fail_reason"] = reason
            set_user_attrs(trial, attrs)
            told = context.study.tell(trial, values, state=state, skip_if_finished=True)
            if told.state is not state:
                raise optuna.exceptions.UpdateFinishedTrialError(f"it is {told.state.name}")
        except optuna.exceptions.UpdateFinishedTrialError as exc:
            # Failed as stale by another worker meanwhile, which released the slot.
            logger.warning(
                "trial %d of study %s was finished elsewhere: %s", trial.number, context.id, exc
            )
            self._end_trial(job)
            return
        except BaseException:
            self._end_trial(job)
            self._release(context)
            raise
        self._end_trial(job)
        with self._lock:
            self.trials_done += 1
        if state is TrialState.FAIL:
            self._release(context)
        self._log(job, state, reason, values)
        self._count_failures(context, state, outcome, reason)
        with self._lock:
            n_trials = context.info.n_trials
            near_end = n_trials is not None and context.reserved_hint >= n_trials
        if near_end and state is not TrialState.FAIL:
            self.maybe_complete(context)

    def _end_trial(self, job: Job) -> None:
        if self._heartbeat is not None:
            self._heartbeat.discard_trial(job.trial._trial_id)
        with self._lock:
            self._untold[job.study.id] -= 1
            if self._untold[job.study.id] <= 0:
                del self._untold[job.study.id]

    def _log(
        self, job: Job, state: TrialState, reason: str | None, values: list[float] | None
    ) -> None:
        number, study_id = job.trial.number, job.study.id
        if state is TrialState.COMPLETE:
            shown = ", ".join(f"{v:.4g}" for v in values or [])
            logger.info("trial %d of study %s complete: %s", number, study_id, shown)
        elif state is TrialState.PRUNED:
            logger.info("trial %d of study %s pruned: %s", number, study_id, reason)
        else:
            logger.warning("trial %d of study %s failed: %s", number, study_id, reason)

    def _count_failures(
        self, context: StudyContext, state: TrialState, outcome: Outcome, reason: str | None
    ) -> None:
        # The streak counts rounds: a trial one by one, an epoch of a batch (its failures share
        # `Outcome.failure_round` and count once). A COMPLETE or PRUNED trial resets it.
        with self._lock:
            if state is not TrialState.FAIL:
                context.consecutive_failures = 0
                context.failed_trials = 0
                context.failure_round = None
                return
            if not outcome.counts_as_failure:
                return
            context.failed_trials += 1
            context.last_failure = reason
            if outcome.failure_round is not None and outcome.failure_round is context.failure_round:
                return
            context.failure_round = outcome.failure_round
            context.consecutive_failures += 1
            failures, trials = context.consecutive_failures, context.failed_trials
        if failures >= self.options.max_consecutive_failures:
            rounds = "" if trials == failures else f" ({trials} trials in {failures} batch epochs)"
            self._fail_study(context, f"{failures} trials failed in a row{rounds}; last: {reason}")

    def _fail_study(self, context: StudyContext, message: str) -> None:
        with self.database.session() as session:
            changed = StudyRepository(session).set_status(
                context.id, StudyStatus.FAILED, message, expected=StudyStatus.RUNNING
            )
        if changed:
            with self._lock:
                self._ended[context.id] = StudyStatus.FAILED
            logger.error("study %s marked failed: %s", context.id, message)

    def _release(self, context: StudyContext) -> None:
        with self.database.session() as session:
            StudyRepository(session).release_trial(context.id)

    # --- completion and maintenance --------------------------------------------------------

    def maybe_complete(self, context: StudyContext) -> bool:
        """Mark the study completed (and store its ``best``) if its budget or time is used up
        and no trial runs or waits; True if this call did it.

        Never while this worker holds an asked, untold trial of it (a prefetched one, or one
        the finisher has not told yet): the finish of that trial checks again."""
        with self._lock:
            if self._untold[context.id] > 0:
                return False
        study = context.study
        if study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            return False
        message: str | None = None
        if context.info.n_trials is not None:
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if len(done) < context.info.n_trials:
                if context.time_left():
                    return False
                message = f"time budget of {context.info.time_budget_s:g} s reached"
        elif context.time_left():
            return False
        else:
            message = f"time budget of {context.info.time_budget_s:g} s reached"
        record = best_record(study, context.spec, context.experiment)
        with self.database.session() as session:
            changed = StudyRepository(session).set_status(
                context.id, StudyStatus.COMPLETED, message, expected=StudyStatus.RUNNING
            )
            if changed and record is not None:
                ArtifactRepository(session).put(context.id, "best", record)
        if changed:
            logger.info("study %s completed%s", context.id, f" ({message})" if message else "")
            with self._lock:
                self._contexts.pop(context.id, None)
                self._ended[context.id] = StudyStatus.COMPLETED
        return changed

    def maintain(self, force: bool = False) -> None:
        """Every ``maintenance_s``: fail stale trials of the running studies (re-queued once,
        slot released), and complete studies whose budget or time is used up."""
        now = time.monotonic()
        if not force and now - self._last_maintenance < self.maintenance_s:
            return
        self._last_maintenance = now
        with self.database.session() as session:
            running, _ = StudyRepository(session).list(limit=1000, status=StudyStatus.RUNNING)
        with self._lock:
            for stale_id in set(self._contexts) - {info.id for info in running}:
                del self._contexts[stale_id]  # cancelled, completed or deleted meanwhile
        for info in running:
            context = self._context(info)
            if context is None:
                continue
            try:
                # One transaction per trial: FAIL, reason, slot released, retry queued.
                fail_stale_trials(context.study, info.id)
            except KeyError:
                self._drop_study(context)
                continue
            budget_taken = info.n_trials is not None and info.trials_reserved >= info.n_trials
            if budget_taken:
                self._reclaim_orphan_slots(context, info)
            if budget_taken or not context.time_left():
                self.maybe_complete(context)

    def _reclaim_orphan_slots(self, context: StudyContext, info: StudyInfo) -> None:
        """Give back slots that no trial holds (a worker died between reserve and ``ask``).

        Slots in use are the COMPLETE, PRUNED and RUNNING trials (a FAIL gave its slot back, a
        WAITING retry takes one when asked). Reservations above that, unchanged for
        ``Settings.stale_after_s`` (a live worker asks within milliseconds of reserving), are
        reclaimed with a conditional update that loses no reservation taken meanwhile.
        """
        in_use = len(
            context.study.get_trials(
                deepcopy=False,
                states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING),
            )
        )
        seen = (info.trials_reserved, in_use)
        now = time.monotonic()
        with self._lock:
            if in_use >= info.trials_reserved:
                self._orphan_slots.pop(info.id, None)
                return
            first_seen, since = self._orphan_slots.setdefault(info.id, (seen, now))
            if first_seen != seen:
                self._orphan_slots[info.id] = (seen, now)
                return
            if now - since < self.settings.stale_after_s:
                return
            del self._orphan_slots[info.id]
        with self.database.session() as session:
            reclaimed = StudyRepository(session).reclaim_slots(info.id, *seen)
        if reclaimed:
            logger.warning(
                "study %s: %d reserved slot(s) held by no trial given back",
                info.id,
                seen[0] - seen[1],
            )


__all__ = ["WORKER_ATTR", "Worker", "WorkerOptions"]

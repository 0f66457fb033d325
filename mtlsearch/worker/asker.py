"""The asker thread: maintenance, then pick a study and ask as many of its trials as the queue
has room for (`mtlsearch.worker.asking.ask_batch`: slots, asks, configs, rows); repeat.

Its jobs go into the runner's bounded `~mtlsearch.worker.jobs.JobQueue` (capacity: the K of
the current run), so the worker stays one batch ahead of training and the training thread
never asks. It asks only for the room the queue has, so its puts never wait long. Each asked
trial is announced to the teller (`Teller.asked`) before it is queued. Concurrent studies take
turns batch by batch (trial by trial at K = 1).
A queued trial holds its budget slot (its running ``mtl_trials`` row) while it waits.

Owned by this thread: the loaded studies (`StudyContext`, except the fields the teller owns),
the maintenance clock and `Asker.trials_started`.

It ends (and puts None on the queue) when ``max_trials`` trials are started, when it has been
idle for ``idle_exit_s`` (idle: no work found, and every trial of this worker told, checked
with `Teller.drain`), or when the worker stops. A job it holds when the worker stops is told
FAIL ``worker stopped``.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from mtl_core.errors import DataError
from mtlsearch.worker.asking import Asked, StudyGone, ask_batch
from mtlsearch.worker.decisions import (
    Outcome,
    exit_reason,
    next_idle_sleep,
    stopped_outcome,
)
from mtlsearch.worker.jobs import Job
from mtlsearch.worker.outage import DatabaseOutage, unreachable
from mtlsearch.worker.stale import fail_lost_trials, repair_optuna
from mtlsearch.worker.studies import (
    StudyContext,
    load_or_train_baselines,
    load_study_context,
    planned_epochs,
)
from storage import (
    Database,
    StudyInfo,
    StudyRepository,
    StudyStatus,
    WorkerStatus,
)
from storage.models import FailureKind

if TYPE_CHECKING:
    from pathlib import Path

    from mtlsearch.worker.heartbeat import Heartbeat
    from mtlsearch.worker.jobs import JobQueue
    from mtlsearch.worker.loop import WorkerOptions
    from mtlsearch.worker.teller import Teller

logger = logging.getLogger(__name__)

#: Longest wait for room in the queue between two maintenance passes.
ROOM_WAIT_S = 0.5


class Asker:
    """Finds, reserves and asks the worker's trials (see the module docstring)."""

    def __init__(
        self,
        database: Database,
        options: WorkerOptions,
        *,
        jobs: JobQueue,
        teller: Teller,
        stop: threading.Event,
        outage: DatabaseOutage,
        unavailable: Mapping[str, str],
        worker_id: Callable[[], str],
        heartbeat: Callable[[], Heartbeat | None],
        maintenance_s: float,
        stale_after_s: float,
        data_dir: Path | str | None,
        test_hook: str | None = None,
    ) -> None:
        self.database = database
        self.options = options
        self.jobs = jobs
        self.teller = teller
        self.stop = stop
        self.outage = outage
        #: Experiments this worker cannot serve (the worker's, see `Worker.unavailable`).
        self.unavailable = unavailable
        self.worker_id = worker_id
        self.heartbeat = heartbeat
        self.maintenance_s = maintenance_s
        self.stale_after_s = stale_after_s
        self.data_dir = data_dir
        self.test_hook = test_hook
        self.trials_started = 0
        #: Set while the last look for work found none (the runner then starts what it has).
        self.starved = threading.Event()
        self.error: BaseException | None = None
        self._contexts: dict[str, StudyContext] = {}
        # study id -> ((reserved, in use), first seen): slots reserved by no trial
        self._last_maintenance = -math.inf
        self._thread: threading.Thread | None = None

    # --- the thread ------------------------------------------------------------------------

    def start(self, name: str) -> None:
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.error = exc  # `Worker.run` raises it once everything is told
        finally:
            self.starved.set()
            self._put(None)

    def _loop(self) -> None:
        low, high = self.options.idle_sleep_s
        sleep, idle_since = low, None
        while not self.stop.is_set():
            why = exit_reason(self.trials_started, self.options.max_trials, None, None)
            if why is not None:
                logger.info("worker %s %s", self.worker_id(), why)
                return
            try:
                self.maintain()
                if not self.jobs.wait_for_room(timeout=ROOM_WAIT_S):
                    continue  # a batch ahead already: ask no more until the runner takes one
                jobs = self.next_jobs(self.jobs.room())
            except Exception as exc:
                # The database is away: the runner trains what it holds, the teller waits to
                # record it, and this loop tries again (`mtlsearch.worker.outage`).
                if not self.outage.pause("looking for work", exc):
                    raise
                continue
            self.outage.answered()
            if jobs:
                self.starved.clear()
                sleep, idle_since = low, None
                for job in jobs:
                    self._put(job)
                continue
            self.starved.set()
            # Trials in flight may still fail and give their slot back: not idle until told.
            self.teller.drain()
            if self.teller.untold() == 0:
                now = time.monotonic()
                if idle_since is None:
                    # Just out of work, with every tell of ours landed: the finish of a study's
                    # last trial may have seen another worker's trial still running. Whoever
                    # goes idle last sees every trial told and completes the study.
                    try:
                        self.maintain(force=True)
                    except Exception as exc:
                        if not self.outage.pause("looking for work", exc):
                            raise
                        continue
                    self.teller.drain()
                    idle_since = now
                why = exit_reason(0, None, now - idle_since, self.options.idle_exit_s)
                if why is not None:
                    logger.info("worker %s %s: exiting", self.worker_id(), why)
                    return
                beat = self.heartbeat()
                if beat is not None:
                    beat.set_state(WorkerStatus.IDLE, trials_done=self.teller.trials_done)
            self.stop.wait(sleep)
            sleep = next_idle_sleep(sleep, high)

    def _put(self, job: Job | None) -> None:
        """Queue ``job``, waiting while the queue is full; told FAIL if the worker stops."""
        while True:
            try:
                self.jobs.put(job, timeout=0.1)
                return
            except queue.Full:
                if self.stop.is_set():
                    if job is not None:
                        self.tell_stopped(job)
                    return

    def tell_stopped(self, job: Job) -> None:
        self.teller.finished(job, forced=stopped_outcome())

    # --- maintenance -----------------------------------------------------------------------

    def maintain(self, force: bool = False) -> None:
        """Every ``maintenance_s``: fail stale trials of the running studies (re-queued once,
        slot released), and have the teller complete studies whose budget or time is used."""
        now = time.monotonic()
        if not force and now - self._last_maintenance < self.maintenance_s:
            return
        self._last_maintenance = now
        with self.database.session() as session:
            running, _ = StudyRepository(session).list(limit=1000, status=StudyStatus.RUNNING)
        for gone in set(self._contexts) - {info.id for info in running}:
            del self._contexts[gone]  # cancelled, completed or deleted meanwhile
        for info in running:
            context = self.context(info)
            if context is None:
                continue
            try:
                fail_lost_trials(
                    self.database, context.study, info.id, self.stale_after_s, self.worker_id()
                )
                repair_optuna(self.database, context.study, info.id, self.stale_after_s)
            except KeyError:
                self._drop_study(context)
                continue
            budget_taken = info.n_trials is not None and info.trials_reserved >= info.n_trials
            if budget_taken or not context.time_left():
                self.teller.check_completion(context)

    # --- studies and asks ------------------------------------------------------------------

    def context(self, info: StudyInfo) -> StudyContext | None:
        """The loaded study of ``info`` (loaded once, baselines trained if needed); None when
        this worker cannot serve it."""
        if info.experiment in self.unavailable:
            self._contexts.pop(info.id, None)
            logger.debug("study %s: experiment %r not served here", info.id, info.experiment)
            return None
        context = self._contexts.get(info.id)
        if context is None:
            context, why = load_study_context(self.database, info, self.worker_id())
            if context is None:
                logger.info("%s", why)
                return None
            try:
                context.baselines = load_or_train_baselines(
                    self.database, context, device=self.options.device, data_dir=self.data_dir
                )
            except Exception as exc:
                # A data set missing on this machine, or a database that is away, is this
                # worker's problem, not the study's.
                if unreachable(exc):
                    raise
                logger.error("cannot train the baselines of study %s: %s", info.id, exc)
                if isinstance(exc, DataError):
                    self.teller.setup_failed(info.experiment, str(exc))
                else:
                    self.teller.fail_study(context, f"single-task baselines failed: {exc}")
                self.teller.drain()  # the next pick must not serve it again
                return None
            self._contexts[info.id] = context
        context.info = info
        context.reserved_hint = info.trials_reserved
        return context

    def next_jobs(self, n: int = 1) -> list[Job]:
        """Up to ``n`` jobs of the least recently served study that has any; [] when none.

        Studies this worker cannot serve (unknown experiment, Optuna study not there yet) or
        whose time is up are passed over; each running study is looked at once at most.
        """
        seen: set[str] = set()
        while not self.stop.is_set():
            with self.database.session() as session:
                info = StudyRepository(session).pick_for_worker()
            if info is None or info.id in seen:
                return []
            seen.add(info.id)
            context = self.context(info)
            if context is None:
                continue
            try:
                if context.time_left():
                    jobs = self._ask(context, n)
                    if jobs:
                        return jobs
                self.teller.check_completion(context)
            except StudyGone:
                self._drop_study(context)
        return []

    def _drop_study(self, context: StudyContext) -> None:
        """Forget a study whose Optuna study was deleted or renamed underneath this worker."""
        logger.warning("study %s has no Optuna study any more: dropped", context.id)
        self._contexts.pop(context.id, None)
        self.teller.study_gone(context.id)

    def _ask(self, study: StudyContext, n: int) -> list[Job]:
        """Ask up to ``n`` trials of ``study`` (`mtlsearch.worker.asking.ask_batch`; queued
        retries come first). A trial whose config cannot be built is told FAIL at once (its
        slot goes back); a batch of nothing else is followed by another, so a study of bad
        configs reaches its failure streak instead of looking idle."""
        while not self.stop.is_set():
            if self.options.max_trials is not None:
                n = min(n, self.options.max_trials - self.trials_started)
            if n < 1:
                return []
            asked = ask_batch(
                self.database,
                study,
                n,
                worker_id=self.worker_id(),
                device=self.options.device,
                go_on=lambda: not self.stop.is_set() and study.time_left(),
                outage=self.outage,
                test_hook=self.test_hook,
            )
            if not asked:
                return []
            self.trials_started += len(asked)
            jobs = [job for item in asked if (job := self._job(study, item)) is not None]
            if jobs:
                return jobs
            # Let the teller count these failures first: a study its streak has failed takes
            # no more asks (the next reservation finds it ended).
            self.teller.drain()
        return []

    def _job(self, study: StudyContext, item: Asked) -> Job | None:
        """The job of an asked trial, announced to the teller; None (and told FAIL) when its
        config could not be built."""
        config = item.config
        epochs = planned_epochs(study, config.epochs) if config is not None else 0
        job = Job(study, item.trial, config, epochs, item.row_id)  # type: ignore[arg-type]
        self.teller.asked(job)
        if item.failure is not None:
            reason = f"bad config: {item.failure}"
            failure = Outcome(
                TrialState.FAIL,
                reason=reason,
                counts_as_failure=True,
                failure_kind=FailureKind.BAD_CONFIG,
            )
            self.teller.finished(job, forced=failure)
            return None
        logger.debug("%s of study %s: %s", job.label, study.id, config)
        return job

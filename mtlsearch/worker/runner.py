"""The slot runner: the worker's training thread, one `mtl_core.batched.BatchedRun` for any K.

`SlotRunner.run` takes jobs from the asker's bounded queue (`JobQueue`) and trains them in a
`BatchedRun` of K slots (K = 1 included: the run then calls the model directly). After each
epoch it hands the reports of all slots to the teller as one batch (`Teller.epoch`), applies
the verdicts the teller has posted so far (`Teller.verdicts`; one that arrives later is
applied at the next epoch boundary), ends the slots that finished and hands them to the teller
(`Teller.finished`), then refills free slots from the queue without waiting: an empty queue
leaves the slot free for this epoch. Only when it trains nothing at all does it wait on the
queue (looking at the stop event every `WAIT_S`; the back-off between looks for work in the
database is the asker's). It never touches the database.

* Jobs that cannot join the current run (`can_batch_together` / `batchable`: another
  architecture, a strategy without a batched form) wait and then start a run of their own
  (K = 1 when not `batchable`); while one waits, no more jobs are taken from the queue. A run
  has as many slots as the jobs it starts with, at most K: free slots are computed (masked),
  so a run the queue could not fill never pays for K.
* Out of memory, the run starts again at K/2 with the same trials (their epochs so far are
  lost; Optuna keeps the values they reported and ignores the repeats), down to K = 1; a trial
  out of memory alone fails as a resource failure, which does not count towards its study's
  failure streak. ``--batch auto`` sizes K once per kind of trial (`mtlsearch.worker.sizing`).
* Each epoch is one round of the failure streak: the failed trials of a study in it count
  once together, and not at all when another trial of that study trained on healthy through
  it (see `mtlsearch.worker.decisions.next_streak`).
* Stopping (the worker's stop event): the current epoch finishes; trials with epochs left
  end FAIL ``worker stopped``, trials in their last epoch finish normally; nothing is
  refilled, and jobs waiting for a run of their own are told FAIL ``worker stopped``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import torch

import mtl_core.batched as batched
from mtl_core.errors import ConfigError, DataError
from mtlsearch.worker.decisions import (
    STOPPED_REASON,
    Decision,
    Outcome,
    Verdict,
    ended_outcome,
    failure_of,
    stopped_outcome,
)
from mtlsearch.worker.jobs import TrainingJob
from mtlsearch.worker.populations import same_population, start_population
from mtlsearch.worker.sizing import BatchSizer

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event as ProcessEvent

    from mtl_core.experiments import DataSplits
    from mtl_core.results import EpochReport, TrialResult
    from storage import StudyStatus

logger = logging.getLogger(__name__)

#: Seconds between two looks at the stop event while the runner waits on an empty queue.
WAIT_S = 0.1

JobT = TypeVar("JobT", bound=TrainingJob)
JobT_co = TypeVar("JobT_co", bound=TrainingJob, covariant=True)
JobT_contra = TypeVar("JobT_contra", bound=TrainingJob, contravariant=True)


class JobSource(Protocol[JobT_co]):
    """Where the runner takes jobs: the asker's `mtlsearch.worker.jobs.JobQueue`, or its link
    in a training process (`mtlsearch.worker.trainer_link`). None: the asker has finished."""

    def get(self, block: bool = True, timeout: float | None = None) -> JobT_co | None: ...

    def get_nowait(self) -> JobT_co | None: ...

    def resize(self, maxsize: int) -> None: ...


class VerdictSource(Protocol):
    def get_nowait(self) -> tuple[int, Decision]: ...


class Reports(Protocol[JobT_contra]):
    """Where the runner sends what happens to its jobs: the `mtlsearch.worker.teller.Teller`,
    or its link in a training process."""

    @property
    def verdicts(self) -> VerdictSource: ...

    def epoch(self, round_: int, reports: Sequence[tuple[JobT_contra, EpochReport]]) -> None: ...

    def finished(
        self,
        job: JobT_contra,
        result: TrialResult | None = None,
        *,
        forced: Outcome | None = None,
        diverged: str | None = None,
        round_: int | None = None,
    ) -> None: ...

    def ended(self, study_id: str) -> StudyStatus | str | None: ...


def startable(teller: Reports[JobT], job: JobT) -> bool:
    """False (and the job told) when its study ended while the job waited: what the runner
    checks before it starts a job, and the training process's bridge before it hands one out
    (in the training process the check is the bridge's, `TrainerLink.ended` says nothing)."""
    status = teller.ended(job.study.id)
    if status is None:
        return True
    teller.finished(job, forced=ended_outcome(status))
    return False


class SlotRunner(Generic[JobT]):
    """Trains every job of a worker, K at a time (see the module docstring).

    Args:
        jobs: the asker's queue.
        teller: where reports and finished jobs go.
        data_for: a job's prepared data on the device (cached across runs).
        device: where it trains.
        k: slots per run, or ``"auto"`` (`mtlsearch.worker.sizing.BatchSizer`).
        stop: set when the worker is to stop.
        starved: whether the asker's last look for work found none (a run then starts with
            the jobs it has instead of waiting for K).
        on_start: called with each job as it starts training (the worker's heartbeat state).
    """

    def __init__(
        self,
        jobs: JobSource[JobT],
        teller: Reports[JobT],
        data_for: Callable[[JobT], DataSplits | None],
        device: str,
        k: int | str,
        stop: threading.Event | ProcessEvent,
        starved: Callable[[], bool],
        on_start: Callable[[JobT], None] = lambda job: None,
    ) -> None:
        self.jobs = jobs
        self.teller = teller
        self.data_for = data_for
        self.device = device
        self.sizer = BatchSizer(k, device, data_for)
        self.stop = stop
        self.starved = starved
        self.on_start = on_start
        self._alone: deque[JobT] = deque()  # jobs waiting for a run of their own
        self._verdicts: dict[int, Decision] = {}
        self._rounds = 0
        self._asker_done = False

    # --- taking jobs -----------------------------------------------------------------------

    def run(self) -> None:
        """Train until the asker has finished and every job is done, or the worker stops."""
        try:
            while (first := self._next_job()) is not None:
                k = self.sizer.k_for(first)
                self.jobs.resize(k)
                self._warm_data(first)
                jobs = self._gather(first, k)
                if self.stop.is_set():  # stopped while gathering: none of them trains
                    for job in jobs:
                        self._tell_stopped(job)
                    return
                self._train(jobs, k)
        finally:
            while self._alone:
                self._tell_stopped(self._alone.popleft())

    def _warm_data(self, job: JobT) -> None:
        """Load the job's data while the asker fills the rest of the batch (a failure is
        raised again, and handled, where the run is built)."""
        try:
            self.data_for(job)
        except Exception:
            logger.debug("data of %s not loaded yet", job.label, exc_info=True)

    def _next_job(self) -> JobT | None:
        """The next job to start a run with: waits on the queue while there is none."""
        while not self.stop.is_set():
            if self._alone:
                return self._alone.popleft()
            if self._asker_done:
                return None
            try:
                job = self.jobs.get(timeout=WAIT_S)
            except queue.Empty:
                continue
            if job is None:
                self._asker_done = True
            elif self._startable(job):
                return job
        return None

    def _gather(self, first: JobT, k: int) -> list[JobT]:
        """``first`` and up to K-1 more jobs that can train with it, to start a run with all
        its slots busy; waits on the queue while the asker is still finding work."""
        jobs = [first]
        if k == 1:
            return jobs
        while len(jobs) < k and not (self._alone or self._asker_done or self.stop.is_set()):
            try:
                job = self.jobs.get(timeout=WAIT_S)
            except queue.Empty:
                if self.starved():
                    break
                continue
            if job is None:
                self._asker_done = True
            elif not self._startable(job):
                continue
            elif same_population(first, job) and batched.can_batch_together(
                [first.config, job.config]
            ):
                jobs.append(job)
            else:
                self._alone.append(job)
        return jobs

    def _take_now(self) -> JobT | None:
        """A job for a free slot, without waiting (None: the slot stays free this epoch)."""
        while not (self._alone or self._asker_done or self.stop.is_set()):
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return None
            if job is None:
                self._asker_done = True
            elif self._startable(job):
                return job
        return None

    def _startable(self, job: JobT) -> bool:
        return startable(self.teller, job)

    def _tell_stopped(self, job: JobT, result: Any = None) -> None:
        self.teller.finished(job, forced=stopped_outcome(result))

    def _next_round(self) -> int:
        self._rounds += 1
        return self._rounds

    # --- training --------------------------------------------------------------------------

    def _train(self, jobs: list[JobT], k: int) -> None:
        """Train ``jobs`` (and refills) in runs of K slots, halving K on an out-of-memory."""
        waiting = list(jobs)  # not in a run yet: these fill the slots before the queue does
        retry: list[JobT]
        try:
            while waiting:
                first, waiting[:] = waiting[:k], waiting[k:]
                error: BaseException | None = None
                try:
                    # A run computes all its slots, free ones too (masked): a run the queue
                    # could not fill (a few jobs of another strategy, a study's last trials)
                    # gets only as many slots as it has jobs, so it never pays for K.
                    run = batched.BatchedRun(
                        [j.config for j in first],
                        None,
                        num_slots=len(first),
                        data=self.data_for(first[0]),
                        tags=first,
                    )
                except torch.cuda.OutOfMemoryError as exc:
                    retry, error = first, exc
                except Exception as exc:
                    if isinstance(exc, DataError):  # this machine's data: no trial can run
                        for job in first:
                            self._fail(job, failure_of(exc, self._next_round()), exc)
                        continue
                    if len(first) > 1:
                        logger.warning("cannot batch these trials (%s); each runs alone", exc)
                        self._alone.extend(first)
                        continue
                    self._fail(first[0], failure_of(exc, self._next_round()), exc)
                    continue
                else:
                    for job in first:
                        self.on_start(job)
                    retry, error = self._drive(run, waiting)
                    del run
                if not retry:
                    continue
                assert error is not None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if k == 1:
                    (job,) = retry
                    self._fail(job, self.sizer.out_of_memory(error, job), None)
                    continue
                k //= 2
                logger.warning(
                    "out of memory with K=%d on %s; trials %s start again at K=%d",
                    2 * k,
                    self.device,
                    [j.label for j in retry],
                    k,
                )
                self.sizer.fits_at_most(retry[0], k)
                waiting[:0] = retry
        except BaseException:
            for job in waiting:
                self._tell_stopped(job)
            raise

    def _fail(self, job: JobT, outcome: Outcome, exc: BaseException | None) -> None:
        # The teller logs the failure in one line; the traceback is for debugging.
        if exc is not None and not isinstance(exc, ConfigError | DataError):
            logger.debug("%s of study %s failed", job.label, job.study.id, exc_info=exc)
        self.teller.finished(job, forced=outcome)

    def _drive(
        self, run: batched.BatchedRun, waiting: list[JobT]
    ) -> tuple[list[JobT], BaseException | None]:
        """Run to the end, refilling free slots from ``waiting`` first, then from the queue.

        Returns the live jobs and the error when it ran out of memory (to start again with a
        smaller K), else ``([], None)``.
        """
        population = start_population(run)
        try:
            while run.occupied():
                reports = run.run_epoch()
                round_ = self._next_round()
                self.teller.epoch(round_, [(item.tag, item.report) for item in reports])
                if population is not None:
                    population.after_epoch(reports)
                self._end_slots(run, round_)
                # A population starts and ends together: its free slots wait for the next one.
                if population is None and not self.stop.is_set():
                    self._refill(run, waiting)
        except torch.cuda.OutOfMemoryError as exc:
            return [slot.tag for slot in run.slots if slot is not None], exc
        except BaseException as exc:
            failure = failure_of(exc, self._next_round()) if isinstance(exc, Exception) else None
            for slot in run.slots:
                if slot is not None:
                    self.teller.finished(
                        slot.tag,
                        forced=failure or stopped_outcome(),
                    )
            if failure is None:
                raise
            logger.error("batch of %d slot(s) failed: %s", run.num_slots, failure.reason)
        return [], None

    def _end_slots(self, run: batched.BatchedRun, round_: int) -> None:
        """After an epoch: apply the verdicts in so far, stop what the worker's stop ends,
        finish the trials done, and hand every ended job to the teller."""
        while True:
            try:
                key, decision = self.teller.verdicts.get_nowait()
            except queue.Empty:
                break
            self._verdicts[key] = decision
        stopping = self.stop.is_set()
        judged: list[batched.FinishedTrial] = []
        stopped: list[batched.FinishedTrial] = []
        for index in run.occupied():
            slot = run.slots[index]
            assert slot is not None
            verdict = self._verdicts.get(slot.tag.key)
            if verdict is not None and verdict.verdict is not Verdict.CONTINUE:
                judged.append(run.stop(index, verdict.reason))
            elif stopping and slot.epoch < slot.config.epochs:
                stopped.append(run.stop(index, STOPPED_REASON))
        run.finish_completed()
        for done in [*judged, *run.pop_finished()]:
            result, reason = done.result, done.result.stop_reason
            diverged = None
            if reason and reason.startswith(batched.DIVERGED):
                diverged = reason[len(batched.DIVERGED) :]
            self._verdicts.pop(done.tag.key, None)
            self.teller.finished(done.tag, result, diverged=diverged, round_=round_)
        for done in stopped:
            self._verdicts.pop(done.tag.key, None)
            self._tell_stopped(done.tag, done.result)
        # A verdict that came after its trial ended has nothing left to stop.
        live = {slot.tag.key for slot in run.slots if slot is not None}
        for key in [key for key in self._verdicts if key not in live]:
            del self._verdicts[key]

    def _refill(self, run: batched.BatchedRun, waiting: list[JobT]) -> None:
        for index in run.free_slots():
            new = waiting.pop(0) if waiting else self._take_now()
            if new is None:
                return
            if new.population is not None:
                self._alone.append(new)  # a population member starts a run with its own
                continue
            try:
                run.refill(index, new.config, new)
            except ConfigError:
                self._alone.append(new)  # another architecture, strategy, ...: its own run
            except BaseException:
                waiting.insert(0, new)  # not in the run: retried or told stopped
                raise
            else:
                self.on_start(new)


__all__ = ["SlotRunner"]

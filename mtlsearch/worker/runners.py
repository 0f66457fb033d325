"""How a worker trains the trials it asked: one by one, or K at a time in one batched pass.

The loop (`mtlsearch.worker.loop.Worker`) hands a runner its first `Job`; the runner trains it
(and, batched, more jobs of the same study that it asks through the host), asks the host what
to do after every epoch (`TrialHost.on_epoch`: go on, prune, the study was cancelled, the
worker is stopping), and hands every job back finished (`TrialHost.finish`, which the worker
queues for its finisher thread, so the runner goes on at once). A runner never touches the
database itself, so the loop does not care which one runs.
"""

from __future__ import annotations

import abc
import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import optuna
import torch
from optuna.trial import TrialState

from mtl_core.config import TrialConfig
from mtl_core.errors import ConfigError, DataError, TrainingDiverged, TrialStopped

if TYPE_CHECKING:
    from mtl_core.experiments import DataSplits
    from mtl_core.results import EpochReport, TrialResult
    from mtlsearch.worker.studies import StudyContext

logger = logging.getLogger(__name__)

#: ``fail_reason`` of a trial stopped because its study was cancelled.
CANCELLED_REASON = "study cancelled"
#: ``fail_reason`` of a trial stopped because its worker was asked to stop.
STOPPED_REASON = "worker stopped"
#: Largest K that ``--batch auto`` picks on a CPU (the memory estimate alone allows far more).
AUTO_MAX_CPU = 32
#: Largest K that ``--batch auto`` picks on a GPU.
AUTO_MAX_GPU = 512


@dataclass
class Job:
    """One asked trial: its study, the Optuna trial and the config to train."""

    study: StudyContext
    trial: optuna.Trial
    config: TrialConfig
    epochs: int


class Verdict(enum.Enum):
    """What the host says after an epoch."""

    CONTINUE = "continue"
    PRUNE = "prune"
    CANCEL = "cancel"
    STOP = "stop"


@dataclass(frozen=True)
class Decision:
    """A verdict and, unless CONTINUE, the reason to record."""

    verdict: Verdict
    reason: str = ""


GO_ON = Decision(Verdict.CONTINUE)


@dataclass
class Outcome:
    """How a job ended.

    Args:
        state: COMPLETE, PRUNED or FAIL.
        result: the training result (absent when training raised).
        reason: why a FAIL or PRUNED happened (``fail_reason`` / ``stop_reason``).
        counts_as_failure: the trial itself failed (diverged, bad config, crash), as opposed to
            being stopped from outside (cancel, worker stop); only these count towards failing
            a study whose trials keep failing.
    """

    state: TrialState
    result: TrialResult | None = None
    reason: str | None = None
    counts_as_failure: bool = False


class TrialHost(Protocol):
    """What a runner needs from the worker loop."""

    device: str

    def data_for(self, job: Job) -> DataSplits:
        """The job's prepared data, on the device (cached across trials)."""

    def next_job(self, study: StudyContext) -> Job | None:
        """Reserve a slot of ``study`` and ask a trial; None when none is to be had."""

    def on_epoch(self, job: Job, report: EpochReport) -> Decision:
        """Report an epoch (pruning) and say whether the job goes on."""

    def finish(self, job: Job, outcome: Outcome) -> None:
        """Record and tell a finished job, and release its slot if it failed."""


class TrialRunner(abc.ABC):
    """Trains the jobs a worker asks; every job it starts it hands back to `TrialHost.finish`."""

    @abc.abstractmethod
    def run(self, first: Job) -> None:
        """Train ``first`` (and maybe more jobs of its study) to the end."""


def failure_of(exc: BaseException) -> Outcome:
    """The FAIL outcome of an exception raised by training."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        reason = f"CUDA out of memory: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    elif isinstance(exc, TrainingDiverged | ConfigError | DataError):
        reason = str(exc)
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return Outcome(TrialState.FAIL, reason=reason, counts_as_failure=True)


def outcome_of(result: TrialResult, decision: Decision) -> Outcome:
    """The outcome of a training that returned, given the last decision taken on it."""
    if decision.verdict is Verdict.CONTINUE:
        return Outcome(TrialState.COMPLETE, result)
    if decision.verdict is Verdict.PRUNE:
        return Outcome(TrialState.PRUNED, result, decision.reason)
    return Outcome(TrialState.FAIL, result, decision.reason)


class OneByOneRunner(TrialRunner):
    """Trains one job at a time with `mtl_core.trainer.train_trial` (data kept on the device)."""

    def __init__(self, host: TrialHost) -> None:
        self.host = host

    def run(self, first: Job) -> None:
        self.train(first)

    def train(self, job: Job) -> None:
        """Train one job and hand it back finished, whatever happens."""
        from mtl_core.trainer import train_trial

        last = GO_ON

        def on_epoch(report: EpochReport) -> None:
            nonlocal last
            last = self.host.on_epoch(job, report)
            if last.verdict is not Verdict.CONTINUE:
                raise TrialStopped(last.reason)

        try:
            data = self.host.data_for(job)
            result = train_trial(job.config, None, on_epoch=on_epoch, data=data)
        except Exception as exc:
            outcome = failure_of(exc)
            logger.log(
                logging.WARNING if outcome.reason else logging.ERROR,
                "trial %d of study %s failed: %s",
                job.trial.number,
                job.study.id,
                outcome.reason,
                exc_info=not isinstance(exc, TrainingDiverged | ConfigError | DataError),
            )
        except BaseException:
            # KeyboardInterrupt and the like: leave nothing RUNNING behind, then go.
            self.host.finish(job, Outcome(TrialState.FAIL, reason=STOPPED_REASON))
            raise
        else:
            outcome = outcome_of(result, last)
        self.host.finish(job, outcome)


class BatchedRunner(TrialRunner):
    """Trains up to K jobs of one study together (`mtl_core.batched.BatchedRun`).

    The first job's study is asked for up to K-1 more jobs; those that `can_batch_together`
    train in one pass, where a pruned, diverged or finished trial frees its slot and the slot
    is refilled with a new job of the same study (until the budget is spent or the worker
    stops). Jobs that cannot join the batch (a strategy without a batched form, another
    architecture or epoch count) train one by one afterwards.

    The worker's prefetch (``WorkerOptions.prefetch``) is not used with this runner: a batch
    asks its own jobs (the first K, then refills on the training thread), and one job prepared
    ahead would only hold a slot the batch can fill itself. Its finished jobs still go to the
    worker's finisher thread.

    Args:
        host: the worker loop.
        k: trials per batch, or ``"auto"`` (`mtl_core.batched.auto_batch_size`, capped at
            `AUTO_MAX_CPU` on a CPU and `AUTO_MAX_GPU` on a GPU).
    """

    def __init__(self, host: TrialHost, k: int | str) -> None:
        if k != "auto" and (not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be an integer >= 1 or 'auto', got {k=}")
        self.host = host
        self.k = k
        self.single = OneByOneRunner(host)
        self._auto: dict[tuple[str, int | None], int] = {}

    def slots_for(self, job: Job) -> int:
        """K for this job's study (auto: measured once per experiment and data size)."""
        if isinstance(self.k, int):
            return self.k
        key = (job.study.experiment.name, job.config.max_train_samples)
        if key not in self._auto:
            from mtl_core.batched import auto_batch_size

            cap = AUTO_MAX_CPU if self.host.device == "cpu" else AUTO_MAX_GPU
            k = auto_batch_size(
                job.study.experiment,
                job.config,
                self.host.device,
                data=self.host.data_for(job),
                max_k=cap,
            )
            self._auto[key] = k
            logger.info("batch size for %s: K=%d", job.study.experiment.name, k)
        return self._auto[key]

    def run(self, first: Job) -> None:
        from mtl_core.batched import batchable

        try:
            k = self.slots_for(first)
        except Exception as exc:
            logger.warning("cannot size the batch (%s); training one by one", exc)
            k = 1
        if k == 1 or not batchable(first.config):
            self.single.train(first)
            return
        jobs = [first]
        while len(jobs) < k:
            job = self.host.next_job(first.study)
            if job is None:
                break
            jobs.append(job)
        self._run_batch(jobs, k)

    def _run_batch(self, jobs: list[Job], k: int) -> None:
        from mtl_core.batched import BatchedRun, can_batch_together

        together = [j for j in jobs if can_batch_together([jobs[0].config, j.config])]
        alone = [j for j in jobs if j not in together]
        if len(together) > 1 and not can_batch_together([j.config for j in together]):
            alone, together = [*together[1:], *alone], together[:1]
        if len(together) > 1:
            try:
                run = BatchedRun(
                    [j.config for j in together],
                    None,
                    num_slots=k,
                    data=self.host.data_for(together[0]),
                    tags=together,
                )
            except Exception as exc:
                logger.warning("cannot batch these trials (%s); training one by one", exc)
                alone = [*together, *alone]
            else:
                alone += self._drive(run, together[0].study)
        else:
            alone = [*together, *alone]
        for index, job in enumerate(alone):
            try:
                self.single.train(job)
            except BaseException:
                for waiting in alone[index + 1 :]:
                    self.host.finish(waiting, Outcome(TrialState.FAIL, reason=STOPPED_REASON))
                raise

    def _drive(self, run: object, study: StudyContext) -> list[Job]:
        """Run the batch to its end; return asked jobs that could not join it."""
        from mtl_core.batched import DIVERGED, BatchedRun

        assert isinstance(run, BatchedRun)
        decisions: dict[int, Decision] = {}
        leftovers: list[Job] = []
        try:
            while run.occupied():
                reports = run.run_epoch()
                finished = []
                for item in reports:
                    job: Job = item.tag
                    decision = self.host.on_epoch(job, item.report)
                    if decision.verdict is not Verdict.CONTINUE:
                        decisions[id(job)] = decision
                        finished.append(run.stop(item.slot, decision.reason))
                run.finish_completed()
                finished += run.pop_finished()
                for done in finished:
                    job = done.tag
                    result = done.result
                    if result.stop_reason and result.stop_reason.startswith(DIVERGED):
                        reason = result.stop_reason[len(DIVERGED) :]
                        outcome = Outcome(TrialState.FAIL, result, reason, counts_as_failure=True)
                    else:
                        outcome = outcome_of(result, decisions.pop(id(job), GO_ON))
                    self.host.finish(job, outcome)
                for slot in run.free_slots():
                    new = self.host.next_job(study)
                    if new is None:
                        break
                    try:
                        run.refill(slot, new.config, new)
                    except ConfigError:
                        leftovers.append(new)
        except BaseException as exc:
            failure = failure_of(exc) if isinstance(exc, Exception) else None
            for index in run.occupied():
                live = run.slots[index]
                assert live is not None
                self.host.finish(
                    live.tag, failure or Outcome(TrialState.FAIL, reason=STOPPED_REASON)
                )
            if failure is None:
                raise
            logger.error("batch of study %s failed: %s", study.id, failure.reason)
        return leftovers


__all__ = [
    "CANCELLED_REASON",
    "STOPPED_REASON",
    "BatchedRunner",
    "Decision",
    "Job",
    "OneByOneRunner",
    "Outcome",
    "TrialHost",
    "TrialRunner",
    "Verdict",
]

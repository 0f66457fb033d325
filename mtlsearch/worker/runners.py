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
import json
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
        counts_as_failure: the failure counts towards the study's failure streak (see
            `mtlsearch.worker.loop.Worker`): the trial itself failed (diverged, bad config,
            crash) and, in a batch, no other trial of its epoch trained on healthy. Not for a
            trial stopped from outside (cancel, worker stop) nor out of memory at K=1.
        failure_round: the round the failure belongs to (one epoch of one batch); failures of
            one round count once. None: the trial is a round of its own.
    """

    state: TrialState
    result: TrialResult | None = None
    reason: str | None = None
    counts_as_failure: bool = False
    failure_round: object | None = None


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


def out_of_memory(exc: BaseException, job: Job, device: str) -> Outcome:
    """The FAIL outcome of a trial that ran out of memory alone (K=1): a resource failure.

    It says nothing about the study's search space, so it does not count towards its streak.
    """
    from mtl_core.trainer import resolve_config

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    batch_size = resolve_config(job.config, job.study.experiment).batch_size
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no details"
    reason = f"out of memory on {device} training 1 trial (K=1, batch_size {batch_size}): {first}"
    return Outcome(TrialState.FAIL, reason=reason, counts_as_failure=False)


def failure_of(exc: BaseException) -> Outcome:
    """The FAIL outcome of an exception raised by training (not an out-of-memory)."""
    if isinstance(exc, TrainingDiverged | ConfigError | DataError):
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
        except torch.cuda.OutOfMemoryError as exc:
            outcome = out_of_memory(exc, job, self.host.device)
            logger.warning(
                "trial %d of study %s failed: %s", job.trial.number, job.study.id, outcome.reason
            )
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

    Out of memory, the batch starts again at K/2 with the same trials (their epochs so far are
    lost; Optuna keeps the values they reported and ignores the repeats), down to K=1; a trial
    out of memory alone fails as a resource failure, which does not count towards its study's
    failure streak.

    Each epoch of a batch is one round of its study's failure streak: its failed trials count
    once together, and not at all when another trial of the batch trained on healthy through
    that epoch (the study can train; those trials' configs were the trouble). Trials that train
    on do not reset the streak: only a COMPLETE or PRUNED trial does, as one by one.

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
        self._auto: dict[tuple[object, ...], int] = {}

    def auto_key(self, job: Job) -> tuple[object, ...]:
        """What the memory of one trial depends on: experiment, architecture and its params,
        batch size, data size and device."""
        from mtl_core.trainer import resolve_config

        resolved = resolve_config(job.config, job.study.experiment)
        return (
            job.study.experiment.name,
            resolved.architecture,
            json.dumps(resolved.architecture_params, sort_keys=True, default=str),
            resolved.batch_size,
            resolved.max_train_samples,
            self.host.device,
        )

    def slots_for(self, job: Job) -> int:
        """K for this job's study (auto: estimated once per `auto_key`)."""
        if isinstance(self.k, int):
            return self.k
        key = self.auto_key(job)
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
            logger.info("batch size for %s: K=%d", key, k)
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
        from mtl_core.batched import can_batch_together

        together = [j for j in jobs if can_batch_together([jobs[0].config, j.config])]
        alone = [j for j in jobs if j not in together]
        if len(together) > 1 and not can_batch_together([j.config for j in together]):
            alone, together = [*together[1:], *alone], together[:1]
        if len(together) > 1:
            alone += self._train_together(together, k)
        else:
            alone = [*together, *alone]
        for index, job in enumerate(alone):
            try:
                self.single.train(job)
            except BaseException:
                for waiting in alone[index + 1 :]:
                    self.host.finish(waiting, Outcome(TrialState.FAIL, reason=STOPPED_REASON))
                raise

    def _train_together(self, jobs: list[Job], k: int) -> list[Job]:
        """Train ``jobs`` in batches of K, halving K on an out-of-memory; return the jobs to
        train one by one."""
        from mtl_core.batched import BatchedRun

        study = jobs[0].study
        waiting = list(jobs)  # not in a batch yet: these fill the slots before new asks do
        leftovers: list[Job] = []
        retry: list[Job]
        error: BaseException | None
        try:
            while waiting:
                first, waiting[:] = waiting[:k], waiting[k:]
                try:
                    run = BatchedRun(
                        [j.config for j in first],
                        None,
                        num_slots=k,
                        data=self.host.data_for(first[0]),
                        tags=first,
                    )
                except torch.cuda.OutOfMemoryError as exc:
                    retry, error = first, exc
                except Exception as exc:
                    logger.warning("cannot batch these trials (%s); training one by one", exc)
                    return [*leftovers, *first, *waiting]
                else:
                    retry, error = self._drive(run, study, waiting, leftovers)
                    del run
                if not retry:
                    continue
                assert error is not None
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if k == 1:
                    (job,) = retry
                    outcome = out_of_memory(error, job, self.host.device)
                    logger.warning(
                        "trial %d of study %s failed: %s",
                        job.trial.number,
                        study.id,
                        outcome.reason,
                    )
                    self.host.finish(job, outcome)
                    continue
                k //= 2
                logger.warning(
                    "out of memory with K=%d on %s; trials %s start again at K=%d",
                    2 * k,
                    self.host.device,
                    [j.trial.number for j in retry],
                    k,
                )
                if self.k == "auto":
                    # The estimate was too high for this study's trials: keep the K that fits.
                    key = self.auto_key(retry[0])
                    self._auto[key] = min(self._auto.get(key, k), k)
                waiting[:0] = retry
        except BaseException:
            for job in waiting:
                self.host.finish(job, Outcome(TrialState.FAIL, reason=STOPPED_REASON))
            raise
        return leftovers

    def _drive(
        self, run: object, study: StudyContext, waiting: list[Job], leftovers: list[Job]
    ) -> tuple[list[Job], BaseException | None]:
        """Run the batch to its end, refilling free slots from ``waiting`` first, then with new
        asks; jobs that could not join it go to ``leftovers``.

        Returns the live jobs and the error when it ran out of memory (to start again with a
        smaller K), else ``([], None)``.
        """
        from mtl_core.batched import DIVERGED, BatchedRun

        assert isinstance(run, BatchedRun)
        decisions: dict[int, Decision] = {}
        try:
            while run.occupied():
                reports = run.run_epoch()
                # One round of the failure streak (see the class docstring).
                round_ = object()
                finished = []
                healthy = False
                for item in reports:
                    job: Job = item.tag
                    decision = self.host.on_epoch(job, item.report)
                    healthy = healthy or decision.verdict in (Verdict.CONTINUE, Verdict.PRUNE)
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
                        outcome = Outcome(TrialState.FAIL, result, reason, not healthy)
                    else:
                        outcome = outcome_of(result, decisions.pop(id(job), GO_ON))
                    outcome.failure_round = round_
                    self.host.finish(job, outcome)
                for slot in run.free_slots():
                    new = waiting.pop(0) if waiting else self.host.next_job(study)
                    if new is None:
                        break
                    try:
                        run.refill(slot, new.config, new)
                    except ConfigError:
                        leftovers.append(new)
                    except BaseException:
                        waiting.insert(0, new)  # not in the batch: retried or told stopped
                        raise
        except torch.cuda.OutOfMemoryError as exc:
            live = [run.slots[index] for index in run.occupied()]
            return [slot.tag for slot in live if slot is not None], exc
        except BaseException as exc:
            failure = failure_of(exc) if isinstance(exc, Exception) else None
            if failure is not None:
                failure.failure_round = object()  # one crash of the batch: counts once
            for index in run.occupied():
                live_slot = run.slots[index]
                assert live_slot is not None
                self.host.finish(
                    live_slot.tag, failure or Outcome(TrialState.FAIL, reason=STOPPED_REASON)
                )
            if failure is None:
                raise
            logger.error("batch of study %s failed: %s", study.id, failure.reason)
        return [], None


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
